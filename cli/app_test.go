// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), &out, &errb, []string{"resilire", "version"}); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "resilire ") {
		t.Fatalf("version output %q", out.String())
	}
}

func TestUnknownCommandFails(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), &out, &errb, []string{"resilire", "nope"}); code == 0 {
		t.Fatal("unknown command exited 0")
	}
}
