// SPDX-License-Identifier: Apache-2.0

package xenrig

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Xen driver's own real-hypervisor tests, run in a dom0 of the rig
// against the test guest as a PVH domU: open it, checkpoint it for ten
// epochs by cooperative suspend and fast resume, destroy it, restore it
// with xl from the driver's image, and require that the restored guest
// runs. Here the rig also requires that it still serves its clients: the
// kv service answers over the LAN after the restore.
func TestXenDriverOnRealXen(t *testing.T) {
	Require(t)
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "xen.test")
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-tags", "xen", "-o", bin, "./checkpointer/xen/")
	cmd.Dir = moduleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build xen.test: %v: %s", err, out)
	}
	r := New(t, ctx, Options{Hosts: 1, Files: map[string]string{"xen.test": bin}})
	h := r.Hosts[0]
	if err := r.StartGuest(ctx, h); err != nil {
		t.Fatal(err)
	}
	out, err := h.Run(ctx, 5*time.Minute, "cd /tmp && RESILIRE_TEST_PRIVILEGED=1 RESILIRE_XEN_DOMAIN="+GuestName+
		" RESILIRE_XEN_RESTORE_CFG=/etc/resilire/"+GuestName+".cfg /share/xen.test -test.v -test.count=1 -test.run 'TestReal|TestOpen'")
	t.Logf("in dom0:\n%s", out)
	if err != nil {
		t.Logf("guest console:\n%s", Console(ctx, h))
		t.Fatal(err)
	}
	for _, want := range []string{"--- PASS: TestRealDomain", "--- PASS: TestRealSaveRestore"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dom0 run lacks %q", want)
		}
	}
	if err := r.WaitGuest(ctx, time.Minute); err != nil {
		t.Fatalf("restored guest: %v", err)
	}
}
