// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDomainFlagErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "none.json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "qemu"}, "needs --qemu-config"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "qemu", "--qemu-config", bad}, "--qemu-config " + bad},
		{[]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "qemu", "--qemu-config", missing}, "--qemu-config"},
		{[]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "hyperv"}, "want sim, qemu or xen"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "xen"}, "xen"},
	} {
		var out, errb bytes.Buffer
		args := append(append([]string{"resilire"}, tc.args...), "--metrics-addr", "")
		if Run(context.Background(), &out, &errb, args) == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit 0 or error without %q: %q", tc.args, tc.want, errb.String())
		}
	}
}
