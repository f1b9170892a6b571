// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommitWithoutHolderFails(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"resilire", "dataplane", "commit", "--vm", "rnb-none", "--socket-dir", dir},
		{"resilire", "dataplane", "dump", "--vm", "rnb-none", "--socket-dir", dir, "--pcap", filepath.Join(dir, "x.pcap")},
	} {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), &out, &errb, args); code == 0 {
			t.Fatalf("%v exited 0", args[2])
		}
		if !strings.Contains(errb.String(), "no holder at") {
			t.Fatalf("%v: stderr %q does not say there is no holder", args[2], errb.String())
		}
	}
}

func TestHoldNeedsVM(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), &out, &errb, []string{"resilire", "dataplane", "hold"}); code == 0 {
		t.Fatal("hold without --vm exited 0")
	}
}
