// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestTraceRecordAndInfo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sleep")
	var out, errb bytes.Buffer
	args := []string{"resilire", "trace", "record", "--out", dir, "--interval", "25ms", "--epochs", "3", "--", "sleep", "10"}
	if code := Run(context.Background(), &out, &errb, args); code != 0 {
		t.Fatalf("record: exit %d, stderr %q", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "sleep: 3 epochs every 25 ms") {
		t.Fatalf("record output %q", out.String())
	}
	out.Reset()
	if code := Run(context.Background(), &out, &errb, []string{"resilire", "trace", "info", dir}); code != 0 {
		t.Fatalf("info: exit %d, stderr %q", code, errb.String())
	}
	if !strings.Contains(out.String(), "3 epochs") {
		t.Fatalf("info output %q", out.String())
	}
}

func TestTraceRecordNeedsABound(t *testing.T) {
	var out, errb bytes.Buffer
	args := []string{"resilire", "trace", "record", "--out", t.TempDir(), "--", "true"}
	if code := Run(context.Background(), &out, &errb, args); code == 0 || !strings.Contains(errb.String(), "epochs or a duration") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}
