// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/resilire/resilire/testenv"
)

func TestDataplaneBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"dataplane", "attach", "--vm", "x", "--port", "p", "--path", "bogus"},
		{"dataplane", "attach", "--vm", "x", "--port", "p", "--attach", "bogus"},
		{"dataplane", "status"},
	} {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), &out, &errb, append([]string{"resilire"}, args...)); code == 0 {
			t.Errorf("%v exited 0", args)
		}
	}
}

// TestDataplaneCommands attaches, reads status and detaches through the CLI
// on a real bridge port.
func TestDataplaneCommands(t *testing.T) {
	testenv.RequirePrivileged(t)
	rig := testenv.NewBridgeRig(t, "rdp")
	root := testenv.PinRoot(t, "rdp")
	vm := testenv.UniqueName("rdp")
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		var code int
		err := rig.Host.Do(func() error {
			code = Run(context.Background(), &out, &errb, append([]string{"resilire", "dataplane", "--pin-root", root}, args...))
			return nil
		})
		if err != nil || code != 0 {
			t.Fatalf("%v: exit %d, err %v, stderr %s", args, code, err, errb.String())
		}
		return out.String()
	}
	if out := run("probe"); !regexp.MustCompile(`(?m)^auto picks\s+path (ring|redirect), attach (tcx|clsact), input log (kern-ctx|portable)$`).MatchString(out) {
		t.Errorf("probe printed %q", out)
	}
	if out := run("attach", "--vm", vm, "--port", rig.Port, "--input-log"); !strings.Contains(out, "attached vm "+vm) {
		t.Errorf("attach printed %q", out)
	}
	status := run("status", "--vm", vm)
	t.Logf("status:\n%s", status)
	for _, re := range []string{`(?m)^mode\s+buffer$`, `(?m)^epoch\s+1$`, `(?m)^port\s+` + rig.Port + `$`, `(?m)^captured\s+\d+$`, `(?m)^input log\s+true$`, `(?m)^input log kind\s+(kern-ctx|portable)$`} {
		if !regexp.MustCompile(re).MatchString(status) {
			t.Errorf("status lacks %s:\n%s", re, status)
		}
	}
	run("detach", "--vm", vm)
	var out, errb bytes.Buffer
	if code := Run(context.Background(), &out, &errb, []string{"resilire", "dataplane", "--pin-root", root, "status", "--vm", vm}); code == 0 ||
		!strings.Contains(errb.String(), "not attached") {
		t.Errorf("status after detach: exit %d, stderr %q", code, errb.String())
	}
}
