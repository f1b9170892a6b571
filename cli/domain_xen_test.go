// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"testing"
)

// The data plane's port of a guest protect creates is its config's fixed
// vifname=, found whatever the spacing and the vif's other keys.
func TestXenVifName(t *testing.T) {
	for i, tc := range []struct{ cfg, want string }{
		{"vif = [ 'bridge=xenbr0,vifname=rsl-guest,mac=00:16:3e:00:00:50' ]\n", "rsl-guest"},
		{"name = \"g\"\n  vif=['mac=00:16:3e:00:00:01, vifname=vm1.0']\n", "vm1.0"},
		{"vif = [ 'bridge=xenbr0' ]\n# vifname=commented\n", ""},
		{"extra = \"vifname=x\"\nvif = [ 'bridge=xenbr0' ]\n", ""},
	} {
		got, err := xenVifName("g.cfg", []byte(tc.cfg))
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("case %d: %q, %v; want %q", i, got, err, tc.want)
		}
	}
}
