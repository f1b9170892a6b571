// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest"
)

// requireExact skips, naming the missing feature, only when the kernel
// lacks exact tracking (a probe proves it: Linux < 6.7); anything else that
// keeps it from working here (ptrace refused) fails the test.
func requireExact(t *testing.T, cfg qemu.Config) {
	t.Helper()
	testenv.RequireFeature(t, "exact dirty tracking (PAGEMAP_SCAN, userfaultfd write-protect async)", qemu.ProbeExactKernel())
	if info := qemu.ProbeTracking(cfg); info.Mechanism != qemu.TrackUffd {
		t.Fatalf("exact dirty tracking unavailable on a kernel that has it: %s", info.Reason)
	}
}

// TestExactTrackingEveryEpoch checkpoints a real guest with exact dirty
// tracking while three writers change its RAM: the guest CPU (DIRTY n,
// TCG stores), virtio-net receive DMA (kv requests from the client
// namespace: QEMU's device model copies each frame into guest RAM) and
// QEMU's own writes (ring indices, used-ring updates, device emulation),
// all of which go through QEMU's one mapping of the RAM file. At every
// epoch, while the guest is paused, the replica built only from harvested
// pages must equal the primary's RAM byte for byte. The negative control
// then writes a page through the file behind the tracker's back (pwrite,
// a writer it cannot see): the same comparison must catch it.
func TestExactTrackingEveryEpoch(t *testing.T) {
	testenv.RequirePrivileged(t)
	if testing.Short() {
		t.Skip("boots a VM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rig, cfg, vm, _ := bootPrimary(t, ctx)
	requireExact(t, cfg)
	pte0 := vmPTE(t, vm.Pid())
	dom, err := qemu.NewDomain(vm, qemu.DomainOptions{Tracking: qemu.TrackUffd})
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Close()
	if err := dom.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("qemu page tables (VmPTE): %s before tracking, %s after write-protecting %d MiB", pte0, vmPTE(t, vm.Pid()), dom.MemorySize()>>20)
	if got := dom.DirtyTracking().Mechanism; got != qemu.TrackUffd {
		t.Fatalf("mechanism %q, want %q", got, qemu.TrackUffd)
	}
	replica := make([]byte, dom.MemorySize())
	all := make([]uint64, dom.MemorySize()/qemu.PageSize)
	for i := range all {
		all[i] = uint64(i)
	}
	// Initial copy while the guest runs (as pre-copy does): exact tracking
	// reports every page written after EnableDirtyLog, copied or not.
	if err := dom.ReadPages(all, replica); err != nil {
		t.Fatal(err)
	}
	cl, err := dialGuest(ctx, rig)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Dirty(200); err != nil { // guest CPU: 200 pages per 10 ms
		t.Fatal(err)
	}
	full := make([]byte, dom.MemorySize())
	check := func(ck *checkpoint) error {
		ck.apply(replica)
		if err := dom.ReadPages(all, full); err != nil {
			return err
		}
		if !bytes.Equal(full, replica) {
			return fmt.Errorf("replica differs from the primary's RAM in %d pages", diffPages(full, replica))
		}
		return nil
	}
	const epochs = 40
	total := 0
	for e := 0; e < epochs; e++ {
		for j := 0; j < 3; j++ { // virtio-net receive DMA and QEMU's device writes
			if _, err := cl.Set(fmt.Sprintf("k%d-%d", e, j), strings.Repeat("v", 1000)); err != nil {
				t.Fatal(err)
			}
		}
		ck, err := takeCheckpoint(ctx, dom, check)
		if err != nil {
			t.Fatalf("epoch %d: %v", e, err)
		}
		total += len(ck.pfns)
		time.Sleep(20 * time.Millisecond)
	}
	if total < epochs*50 {
		t.Fatalf("only %d dirty pages in %d epochs: the workload did not run", total, epochs)
	}
	t.Logf("%d epochs, %d dirty pages, replica equal to the primary at every epoch", epochs, total)

	// A second agent on the same QEMU cannot register the RAM again
	// (EBUSY): auto falls back to hashing and says why.
	dom2, err := qemu.NewDomain(vm, qemu.DomainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tr := dom2.DirtyTracking(); tr.Mechanism != qemu.TrackHash || !strings.Contains(tr.Reason, "already tracked") {
		t.Errorf("second domain: %+v", tr)
	}
	dom2.Close()

	// The registration vanishes (QEMU re-mapped its RAM): the next harvest
	// injects again and sends every page once; exact again afterwards.
	qemu.DropRegistration(dom)
	for e := 0; e < 3; e++ {
		ck, err := takeCheckpoint(ctx, dom, check)
		if err != nil {
			t.Fatalf("after re-registration, epoch %d: %v", e, err)
		}
		if n := uint64(len(ck.pfns)); (e == 0) != (n == dom.MemorySize()/qemu.PageSize) {
			t.Fatalf("after re-registration, epoch %d: %d pages", e, n)
		}
	}

	// Negative control: a write the tracker cannot see must be caught.
	f, err := os.OpenFile(cfg.MemPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const planted = 1234
	if err := dom.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, 64), planted*qemu.PageSize); err != nil {
		t.Fatal(err)
	}
	if err := dom.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = takeCheckpoint(ctx, dom, check)
	if err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("a pwrite() behind the tracker went unnoticed: %v", err)
	}
	t.Logf("negative control caught: %v", err)
	if err := dom.Resume(ctx); err != nil { // the failed check left it paused
		t.Fatal(err)
	}

	// An agent restart: the old agent's fd is gone (and with it the
	// registration); a new one injects again and starts from a fresh
	// baseline, exact from there on.
	dom.Close()
	dom3, err := qemu.NewDomain(vm, qemu.DomainOptions{Tracking: qemu.TrackUffd})
	if err != nil {
		t.Fatalf("restarted agent: %v", err)
	}
	defer dom3.Close()
	dom = dom3
	if err := dom.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dom.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dom.ReadPages(all, replica); err != nil {
		t.Fatal(err)
	}
	if _, err := dom.SaveState(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dom.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	for e := 0; e < 5; e++ {
		if _, err := cl.Set(fmt.Sprintf("r%d", e), "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := takeCheckpoint(ctx, dom, check); err != nil {
			t.Fatalf("after the restart, epoch %d: %v", e, err)
		}
	}

	// Exact tracking lost for good (the re-injection fails): the domain
	// falls back to hashing, sends every page once, and says why.
	qemu.BreakTracking(dom)
	for e := 0; e < 3; e++ {
		if _, err := cl.Set(fmt.Sprintf("h%d", e), "x"); err != nil {
			t.Fatal(err)
		}
		ck, err := takeCheckpoint(ctx, dom, check)
		if err != nil {
			t.Fatalf("after the fallback, epoch %d: %v", e, err)
		}
		if n := uint64(len(ck.pfns)); (e == 0) != (n == dom.MemorySize()/qemu.PageSize) {
			t.Fatalf("after the fallback, epoch %d: %d pages", e, n)
		}
	}
	if tr := dom.DirtyTracking(); tr.Mechanism != qemu.TrackHash || !strings.Contains(tr.Reason, "fallback after") {
		t.Errorf("after the fallback: %+v", tr)
	}
}

// vmPTE is the VmPTE line of a process's status (its page-table memory).
func vmPTE(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmPTE:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// TestSandboxedQEMUFallsBack: a QEMU under seccomp (-sandbox on) is never
// injected into (its filter could kill it); auto falls back to hashing and
// says why, and uffd-wp refuses.
func TestSandboxedQEMUFallsBack(t *testing.T) {
	testenv.RequirePrivileged(t)
	if testing.Short() {
		t.Skip("boots a VM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	assets, err := guest.Build(ctx, guest.DefaultDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := assets.QEMUConfig("rqm-sandbox", shmPrefix+"sandbox.ram", "", "", t.TempDir(), netip.MustParsePrefix("10.0.2.15/24"))
	cfg.KillWithParent = true
	cfg.Extra = []string{"-sandbox", "on"}
	vm, err := qemu.Start(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Kill(); os.Remove(cfg.MemPath) })
	if _, err := qemu.NewDomain(vm, qemu.DomainOptions{Tracking: qemu.TrackUffd}); err == nil || !strings.Contains(err.Error(), "seccomp") {
		t.Fatalf("uffd-wp on a sandboxed qemu: %v", err)
	}
	dom, err := qemu.NewDomain(vm, qemu.DomainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Close()
	if tr := dom.DirtyTracking(); tr.Mechanism != qemu.TrackHash || !strings.Contains(tr.Reason, "seccomp") {
		t.Fatalf("auto on a sandboxed qemu: %+v", tr)
	}
	if s, err := vm.Status(ctx); err != nil || s != "running" {
		t.Fatalf("qemu status %q, %v", s, err)
	}
}
