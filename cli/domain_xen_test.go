// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// The data plane's port of a guest protect creates is its config's fixed
// vifname=, found whatever the spacing and the vif's other keys.
func TestXenVifName(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct{ cfg, want string }{
		{"vif = [ 'bridge=xenbr0,vifname=rsl-guest,mac=00:16:3e:00:00:50' ]\n", "rsl-guest"},
		{"name = \"g\"\n  vif=['mac=00:16:3e:00:00:01, vifname=vm1.0']\n", "vm1.0"},
		{"vif = [ 'bridge=xenbr0' ]\n# vifname=commented\n", ""},
		{"extra = \"vifname=x\"\nvif = [ 'bridge=xenbr0' ]\n", ""},
	} {
		p := filepath.Join(dir, "g.cfg")
		if err := os.WriteFile(p, []byte(tc.cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := xenVifName(p)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("case %d: %q, %v; want %q", i, got, err, tc.want)
		}
	}
}
