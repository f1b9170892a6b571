// SPDX-License-Identifier: Apache-2.0

//go:build xen

package xen

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/resilire/resilire/testenv"
)

// TestOpenOutsideDom0 runs the real cgo code where there is no hypervisor:
// libxc must fail to open, and the error must say why.
func TestOpenOutsideDom0(t *testing.T) {
	if _, err := os.Stat("/dev/xen/privcmd"); err == nil {
		t.Skip("running in a xen dom0; TestRealDomain covers it")
	}
	x, err := Open()
	if err == nil {
		x.Close()
		t.Fatal("libxc opened without /dev/xen/privcmd")
	}
	if !errors.Is(err, ErrNoXen) {
		t.Fatalf("err %v, want ErrNoXen", err)
	}
	t.Log(err)
}

// TestRealDomain drives a running PVH guest named by RESILIRE_XEN_DOMAIN
// through one epoch on a real dom0 (the Vagrant rig). The guest is paused
// for a moment and resumed; its log-dirty mode is switched off at the end.
func TestRealDomain(t *testing.T) {
	vm := os.Getenv("RESILIRE_XEN_DOMAIN")
	if vm == "" {
		t.Skip("RESILIRE_XEN_DOMAIN not set (only meaningful in a xen dom0)")
	}
	testenv.RequirePrivileged(t)
	ctx := context.Background()
	d, err := OpenDomain(ctx, vm, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	t.Logf("domain %d: %d pages in %d extents", d.DomID(), d.Layout().Pages(), len(d.Layout().Extents()))
	if err := d.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	all := make([]uint64, d.Layout().Pages())
	for i := range all {
		all[i] = uint64(i)
	}
	mem := make([]byte, d.MemorySize())
	if err := d.ReadPages(all, mem); err != nil {
		t.Fatal(err)
	}
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	dirty, err := d.HarvestDirty(ctx, nil)
	if err == nil {
		buf := make([]byte, len(dirty)*4096)
		if err = d.ReadPages(dirty, buf); err == nil {
			for i, p := range dirty {
				copy(mem[p*4096:], buf[i*4096:(i+1)*4096])
			}
		}
	}
	var state []byte
	if err == nil {
		state, err = d.SaveState(ctx)
	}
	if rerr := d.Resume(ctx); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	st, err := DecodeState(state)
	if err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	if err := WriteXLImage(&img, mem, st, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d dirty pages, hvm context %d bytes, image %d bytes", len(dirty), len(st.HVMContext), img.Len())
}

// TestRealSaveRestore is destructive and for the rig only: it checkpoints
// the running guest RESILIRE_XEN_DOMAIN through the driver, destroys it, and
// restores it with `xl restore` from the image the standby writes, using the
// xl config in RESILIRE_XEN_RESTORE_CFG. It proves on a real dom0 that xl
// accepts the image and the guest runs again.
func TestRealSaveRestore(t *testing.T) {
	vm, cfg := os.Getenv("RESILIRE_XEN_DOMAIN"), os.Getenv("RESILIRE_XEN_RESTORE_CFG")
	if vm == "" || cfg == "" {
		t.Skip("RESILIRE_XEN_DOMAIN and RESILIRE_XEN_RESTORE_CFG not set (destructive; rig only)")
	}
	testenv.RequirePrivileged(t)
	ctx := context.Background()
	d, err := OpenDomain(ctx, vm, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := NewReplica(d.MemorySize())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	all := make([]uint64, d.Layout().Pages())
	for i := range all {
		all[i] = uint64(i)
	}
	// Stop-and-copy: paused for the whole copy, so the image is consistent
	// without log-dirty rounds.
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	err = d.ReadPages(all, r.Memory())
	var state []byte
	if err == nil {
		state, err = d.SaveState(ctx)
	}
	if err != nil {
		t.Fatal(errors.Join(err, d.Resume(ctx))) // leave the guest running
	}
	if out, err := exec.Command("xl", "destroy", strconv.Itoa(int(d.DomID()))).CombinedOutput(); err != nil {
		t.Fatalf("xl destroy: %v: %s", err, out)
	}
	opts := DefaultStandbyOptions(vm)
	opts.Command[2] = cfg
	s, err := NewStandby(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Activate(ctx, state); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("xl", "list", vm).CombinedOutput()
	if err != nil {
		t.Fatalf("restored guest not listed: %v: %s", err, out)
	}
	t.Logf("restored:\n%s", out)
}
