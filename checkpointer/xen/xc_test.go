// SPDX-License-Identifier: Apache-2.0

//go:build xen

package xen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
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

// realDomain opens the running guest RESILIRE_XEN_DOMAIN names, closed at
// the test's end; the test is skipped outside a dom0 that has one.
func realDomain(t *testing.T, opts Options) (string, *Domain) {
	t.Helper()
	vm := os.Getenv("RESILIRE_XEN_DOMAIN")
	if vm == "" {
		t.Skip("RESILIRE_XEN_DOMAIN not set (only meaningful in a xen dom0)")
	}
	testenv.RequirePrivileged(t)
	d, err := OpenDomain(context.Background(), vm, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return vm, d
}

// TestRealDomain drives a running PVH guest named by RESILIRE_XEN_DOMAIN
// through one epoch on a real dom0 (the Vagrant rig). The guest is paused
// for a moment and resumed; its log-dirty mode is switched off at the end.
func TestRealDomain(t *testing.T) {
	ctx := context.Background()
	_, d := realDomain(t, Options{})
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

// TestRealLogDirtyBusy: a second tracker of the same guest (a migration,
// xl save, another replicator) must be refused with ErrLogDirtyBusy, and
// its Close must not turn off the first one's tracking.
func TestRealLogDirtyBusy(t *testing.T) {
	ctx := context.Background()
	vm, first := realDomain(t, Options{})
	if err := first.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := OpenDomain(ctx, vm, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = second.EnableDirtyLog(ctx)
	if cerr := second.Close(); cerr != nil {
		t.Fatalf("close of the refused tracker: %v", cerr)
	}
	if !errors.Is(err, ErrLogDirtyBusy) {
		t.Fatalf("second tracker: %v, want ErrLogDirtyBusy", err)
	}
	t.Logf("second tracker refused: %v", err)
	if _, err := first.HarvestDirty(ctx, nil); err != nil {
		t.Fatalf("the first tracker lost its log: %v", err)
	}
}

// TestRealSuspendRefused asks the real guest to suspend with a timeout it
// cannot meet (1 ms; it takes tens of ms under TCG): every Pause must be
// refused with checkpointer.ErrPauseRefused and leave the guest running
// (the request withdrawn, or, taken at the last moment, resumed at once),
// so that the epoch loop may skip the epoch. Then a Pause with the default
// timeout must still work, and the guest must have run meanwhile.
func TestRealSuspendRefused(t *testing.T) {
	ctx := context.Background()
	vm, d := realDomain(t, Options{SuspendTimeout: time.Millisecond})
	cx := &cancelCounter{Libxc: d.xc}
	d.xc = cx
	before, err := xlCPUTime(vm)
	if err != nil {
		t.Fatal(err)
	}
	const tries = 10
	for i := range tries {
		err := d.Pause(ctx)
		if !errors.Is(err, checkpointer.ErrPauseRefused) {
			t.Fatalf("pause %d with a 1 ms timeout: %v, want a refusal", i, err)
		}
		info, ierr := d.xc.DomainInfo(d.DomID())
		if ierr != nil || info.Shutdown || info.Dying {
			t.Fatalf("after refused pause %d the guest is not running: %+v %v", i, info, ierr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.suspendTimeout = DefaultSuspendTimeout
	start := time.Now()
	if err := d.Pause(ctx); err != nil {
		t.Fatalf("pause with the default timeout after %d refusals: %v", tries, err)
	}
	stopped := time.Since(start)
	if err := d.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	after, err := xlCPUTime(vm)
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("guest CPU time %.1f s -> %.1f s: it did not run", before, after)
	}
	t.Logf("%d pauses refused (%d taken late and resumed), the guest ran on (CPU %.1f s -> %.1f s); then suspended in %v",
		tries, cx.late, before, after, stopped.Round(time.Millisecond))
}

// cancelCounter counts the withdrawals that came too late (the guest had
// taken the request).
type cancelCounter struct {
	Libxc
	late int
}

func (c *cancelCounter) CancelSuspend(domid uint32) (bool, error) {
	withdrawn, err := c.Libxc.CancelSuspend(domid)
	if err == nil && !withdrawn {
		c.late++
	}
	return withdrawn, err
}

// TestRealLogDirtySoak is a diagnostic of the hypervisor, not of the
// driver: for RESILIRE_XEN_SOAK_S seconds it keeps log-dirty mode on the
// running guest, reads and clears the dirty log every 100 ms and reads all
// its memory every second, with no suspend at all, and fails if the guest
// stops running. On Xen nested under QEMU TCG the guest triple-faults now
// and then under this load alone (docs/xen.md).
func TestRealLogDirtySoak(t *testing.T) {
	vm, secs := os.Getenv("RESILIRE_XEN_DOMAIN"), os.Getenv("RESILIRE_XEN_SOAK_S")
	if vm == "" || secs == "" {
		t.Skip("RESILIRE_XEN_DOMAIN and RESILIRE_XEN_SOAK_S not set (diagnostic)")
	}
	n, err := strconv.Atoi(secs)
	if err != nil {
		t.Fatalf("RESILIRE_XEN_SOAK_S=%q: %v", secs, err)
	}
	ctx := context.Background()
	d, err := OpenDomain(ctx, vm, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	all := make([]uint64, d.Layout().Pages())
	for i := range all {
		all[i] = uint64(i)
	}
	buf := make([]byte, d.MemorySize())
	start := time.Now()
	for i := 0; time.Since(start) < time.Duration(n)*time.Second; i++ {
		if _, err := d.HarvestDirty(ctx, nil); err != nil {
			t.Fatalf("after %v: %v", time.Since(start).Round(time.Second), err)
		}
		if i%10 == 0 {
			if err := d.ReadPages(all, buf); err != nil {
				t.Fatalf("after %v: %v", time.Since(start).Round(time.Second), err)
			}
			if _, err := xlCPUTime(vm); err != nil {
				t.Fatalf("after %v of log-dirty tracking: %v", time.Since(start).Round(time.Second), err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRealSaveRestore is destructive and for the rig only: it protects the
// running guest RESILIRE_XEN_DOMAIN through the driver for a few epochs
// (initial copy while it runs, then suspend, harvest, copy, fast resume),
// destroys it, restores it with `xl restore` from the image the standby
// writes (xl config RESILIRE_XEN_RESTORE_CFG), and checks that the
// restored guest runs: its CPU time grows. A listed but dead guest fails.
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
	if err := d.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	all := make([]uint64, d.Layout().Pages())
	for i := range all {
		all[i] = uint64(i)
	}
	if _, err := d.HarvestDirty(ctx, nil); err != nil { // clear the log, then copy everything live
		t.Fatal(err)
	}
	if err := d.ReadPages(all, r.Memory()); err != nil {
		t.Fatal(err)
	}
	var state []byte
	const epochs = 10
	for e := 1; e <= epochs; e++ {
		start := time.Now()
		if err := d.Pause(ctx); err != nil {
			t.Fatalf("epoch %d: %v", e, err)
		}
		dirty, err := d.HarvestDirty(ctx, nil)
		if err == nil {
			buf := make([]byte, len(dirty)*4096)
			if err = d.ReadPages(dirty, buf); err == nil {
				for i, p := range dirty {
					copy(r.Memory()[p*4096:], buf[i*4096:(i+1)*4096])
				}
			}
		}
		if err == nil {
			state, err = d.SaveState(ctx)
		}
		if e < epochs || err != nil {
			err = errors.Join(err, d.Resume(ctx))
		}
		if err != nil {
			t.Fatalf("epoch %d: %v", e, err)
		}
		t.Logf("epoch %d: %d dirty pages, stopped %v", e, len(dirty), time.Since(start).Round(time.Millisecond))
		time.Sleep(100 * time.Millisecond)
	}
	// Still suspended: the replica built from the dirty log must equal a
	// full read of the guest now. A difference is a write the log missed.
	full := make([]byte, d.MemorySize())
	if err := d.ReadPages(all, full); err != nil {
		t.Fatal(errors.Join(err, d.Resume(ctx)))
	}
	var missed []uint64
	for p := range all {
		if !bytes.Equal(full[p*4096:(p+1)*4096], r.Memory()[p*4096:(p+1)*4096]) {
			g, _ := d.Layout().GPFN(uint64(p))
			missed = append(missed, g)
		}
	}
	if len(missed) > 0 {
		t.Errorf("%d pages differ from the tracked replica (gpfns %#x): writes the dirty log missed", len(missed), missed[:min(len(missed), 16)])
	}
	// The primary dies suspended in its last epoch; the backup restores.
	if out, err := exec.Command("xl", "destroy", strconv.Itoa(int(d.DomID()))).CombinedOutput(); err != nil {
		t.Fatalf("xl destroy: %v: %s", err, out)
	}
	// A failing `xl restore` (here: the backup's bridge is misnamed in its
	// config) is a clear error naming the command and its output, and
	// leaves no domain behind.
	badCfg := restoreBadBridge(t, cfg)
	opts := DefaultStandbyOptions(vm)
	opts.Command = RestoreCommand(badCfg)
	bad, err := NewStandby(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	err = bad.Activate(ctx, state)
	if err == nil || !strings.Contains(err.Error(), "xl restore") || !strings.Contains(err.Error(), badCfg) ||
		!strings.Contains(err.Error(), "rslnobr0") {
		t.Fatalf("restore with a missing bridge: %v, want a failed xl restore", err)
	}
	t.Logf("restore with a missing bridge refused: %v", err)
	if out, lerr := exec.Command("xl", "list", vm).CombinedOutput(); lerr == nil {
		t.Fatalf("a failed restore left the domain behind:\n%s", out)
	}
	if err := bad.Activate(ctx, state); !errors.Is(err, ErrActivated) {
		t.Fatalf("second activation of the same standby: %v, want ErrActivated", err)
	}

	opts.Command = RestoreCommand(cfg)
	s, err := NewStandby(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Activate(ctx, state); err != nil {
		t.Fatal(err)
	}
	before, err := xlCPUTime(vm)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	after, err := xlCPUTime(vm)
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("restored guest does not run: CPU time %.1f s -> %.1f s over 10 s", before, after)
	}
	t.Logf("restored guest runs: CPU time %.1f s -> %.1f s over 10 s", before, after)
}

// restoreBadBridge writes a copy of the xl config cfg whose vif names a
// bridge that does not exist.
func restoreBadBridge(t *testing.T, cfg string) string {
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("bridge=")) {
		t.Fatalf("%s has no vif bridge", cfg)
	}
	bad := filepath.Join(t.TempDir(), "nobridge.cfg")
	re := regexp.MustCompile(`bridge=[A-Za-z0-9_.-]+`)
	if err := os.WriteFile(bad, re.ReplaceAll(b, []byte("bridge=rslnobr0")), 0o644); err != nil {
		t.Fatal(err)
	}
	return bad
}

// xlCPUTime is the domain's CPU time in seconds (`xl list`, column 6); a
// shut-down or crashed domain is an error.
func xlCPUTime(vm string) (float64, error) {
	out, err := exec.Command("xl", "list", vm).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("xl list %s: %w: %s", vm, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(lines) < 2 || len(f) < 6 {
		return 0, fmt.Errorf("xl list %s: %q", vm, out)
	}
	if strings.ContainsAny(f[4], "sc") {
		return 0, fmt.Errorf("domain %s is shut down or crashed (state %s)", vm, f[4])
	}
	return strconv.ParseFloat(f[5], 64)
}
