// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// The shipped binary links no test rig and no benchmark-only code: only
// _test.go files and testenv/ import testenv/, and the baseline codecs are
// for `make bench-codec` (testenv/benchcodec).
func TestBinaryLinksNoTestRig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/resilire/resilire").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if bad := forbiddenDeps(strings.Fields(string(out))); len(bad) > 0 {
		t.Fatalf("the resilire binary links %v", bad)
	}
}

// forbiddenDeps returns the packages of deps that the binary must not link.
func forbiddenDeps(deps []string) []string {
	var bad []string
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/resilire/resilire/testenv") || strings.HasSuffix(d, "/fgbi/baseline") {
			bad = append(bad, d)
		}
	}
	return bad
}

func TestForbiddenDepsCatchesRigs(t *testing.T) {
	got := forbiddenDeps([]string{"github.com/resilire/resilire/cli", "github.com/resilire/resilire/testenv/kvload",
		"github.com/resilire/resilire/checkpointer/fgbi/baseline", "github.com/resilire/resilire/checkpointer/trace"})
	if len(got) != 2 {
		t.Fatalf("forbiddenDeps = %v, want the kvload rig and the baselines", got)
	}
}
