// SPDX-License-Identifier: Apache-2.0

//go:build xen

package xen

import (
	"bytes"
	"context"
	"errors"
	"os"
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
