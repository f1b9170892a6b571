// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
)

// sparse guest: 3000-frame address space (three PFNTypes batches), three
// populated runs with holes between them.
var testExtents = []Extent{{0, 100}, {0x200, 0x100}, {2990, 10}}

func openFake(t *testing.T, opts Options) (*fakeXC, *Domain) {
	t.Helper()
	f := newFakeXC(7, 3000, testExtents...)
	d, err := NewDomain(f, 7, "guest", opts)
	if err != nil {
		t.Fatal(err)
	}
	return f, d
}

func TestNewDomainReadsMemoryMap(t *testing.T) {
	f, d := openFake(t, Options{})
	if got := d.Layout().Extents(); !slices.Equal(got, testExtents) {
		t.Fatalf("extents %v, want %v", got, testExtents)
	}
	if got, want := d.MemorySize(), uint64(100+0x100+10)*4096; got != want {
		t.Fatalf("memory size %d, want %d", got, want)
	}
	if n := strings.Count(strings.Join(f.calls, ","), OpPFNTypes); n != 3 {
		t.Fatalf("%d frame-type batches for 3000 frames, want 3", n)
	}
}

func TestNewDomainRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*fakeXC)
		want error
	}{
		{"pv", func(f *fakeXC) { f.info.HVM = false }, ErrUnsupportedGuest},
		{"hvm-with-qemu", func(f *fakeXC) { f.info.EmulationFlags = 0x3ff }, ErrUnsupportedGuest},
		{"dying", func(f *fakeXC) { f.info.Dying = true }, ErrDying},
		{"crashed", func(f *fakeXC) { f.info.Shutdown, f.info.ShutdownReason = true, 3 }, ErrDying},
		{"no-suspend", func(f *fakeXC) { clear(f.store) }, ErrNoSuspend},
		{"no-callback-irq", func(f *fakeXC) { f.params[paramCallbackIRQ] = 0 }, ErrNoSuspend},
		{"empty", func(f *fakeXC) { clear(f.populated) }, ErrUnsupportedGuest},
		{"no-permission", func(f *fakeXC) { f.fail[OpDomainInfo] = syscall.EPERM }, ErrPermission},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeXC(7, 3000, testExtents...)
			tc.mod(f)
			if _, err := NewDomain(f, 7, "guest", Options{}); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

// A guest that does not take suspend requests yet is waited for up to
// BootWait (protect --start-vm opens the guest it just created), and still
// refused, with the wait in the message, if it never does.
func TestNewDomainBootWait(t *testing.T) {
	key := "/local/domain/7/control/feature-suspend"
	booting := func(after int) (*fakeXC, *int) {
		f := newFakeXC(7, 3000, testExtents...)
		clear(f.store)
		reads := 0
		f.storeHook = func(path string) {
			if path == key {
				if reads++; reads == after {
					f.store[key] = "1"
				}
			}
		}
		return f, &reads
	}
	f, reads := booting(3)
	if _, err := NewDomain(f, 7, "guest", Options{BootWait: 10 * time.Second}); err != nil || *reads != 3 {
		t.Fatalf("booting guest: %v after %d reads, want opened after 3", err, *reads)
	}
	f, _ = booting(3)
	if _, err := NewDomain(f, 7, "guest", Options{}); !errors.Is(err, ErrNoSuspend) {
		t.Fatalf("without BootWait: %v, want ErrNoSuspend at once", err)
	}
	f, reads = booting(1 << 30)
	start := time.Now()
	_, err := NewDomain(f, 7, "guest", Options{BootWait: 300 * time.Millisecond})
	if !errors.Is(err, ErrNoSuspend) || !strings.Contains(err.Error(), "after waiting 300ms") || time.Since(start) < 300*time.Millisecond || *reads < 2 {
		t.Fatalf("never suspendable: %v after %v and %d reads", err, time.Since(start), *reads)
	}
}

func TestNewDomainMissing(t *testing.T) {
	f := newFakeXC(7, 3000, testExtents...)
	_, err := NewDomain(f, 9, "guest", Options{})
	if !errors.Is(err, ErrNoDomain) || !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("err %v, want ErrNoDomain wrapping ESRCH", err)
	}
	if !strings.Contains(err.Error(), "domain 9 not found") {
		t.Fatalf("message %q does not name the domain", err)
	}
}

func TestEpochOrderAndContent(t *testing.T) {
	ctx := context.Background()
	f, d := openFake(t, Options{})
	if err := d.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	// Guest writes frames in two runs; gpfn 0x205 is dense 105, 2995 is 361.
	for _, g := range []uint64{2995, 3, 0x205} {
		f.write(g, 0xAA)
	}
	f.calls = nil
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	pfns, err := d.HarvestDirty(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{3, 105, 361}; !slices.Equal(pfns, want) {
		t.Fatalf("dirty %v, want %v", pfns, want)
	}
	buf := make([]byte, len(pfns)*4096)
	if err := d.ReadPages(pfns, buf); err != nil {
		t.Fatal(err)
	}
	for i, g := range []uint64{3, 0x205, 2995} {
		if !bytes.Equal(buf[i*4096:(i+1)*4096], f.mem[g]) {
			t.Fatalf("page %d (gpfn %#x) differs from guest memory", pfns[i], g)
		}
	}
	if _, err := d.SaveState(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	order := []string{OpSuspend, OpCleanDirty, OpMapFrames, OpHVMContext, OpResume}
	last := -1
	for _, op := range order {
		i := slices.Index(f.calls, op)
		if i <= last {
			t.Fatalf("calls %v: %q out of order (want %v)", f.calls, op, order)
		}
		last = i
	}
	if f.info.Shutdown || f.suspends != 1 || f.resumes != 1 {
		t.Fatalf("after resume: shut down %v, %d suspends, %d resumes", f.info.Shutdown, f.suspends, f.resumes)
	}
	// The log was cleared: the next epoch reports only new writes.
	f.write(0x2ff, 1)
	_ = d.Pause(ctx)
	pfns, err = d.HarvestDirty(ctx, pfns[:0])
	if err != nil || !slices.Equal(pfns, []uint64{100 + 0xff}) {
		t.Fatalf("second harvest %v, %v; want [355]", pfns, err)
	}
}

func TestHarvestPreconditions(t *testing.T) {
	ctx := context.Background()
	f, d := openFake(t, Options{})
	if _, err := d.HarvestDirty(ctx, nil); !errors.Is(err, ErrLogDirtyOff) {
		t.Fatalf("harvest before enable: %v", err)
	}
	_ = d.EnableDirtyLog(ctx)
	// The initial sync harvests a running guest, as live migration does.
	f.write(3, 1)
	if pfns, err := d.HarvestDirty(ctx, nil); err != nil || !slices.Equal(pfns, []uint64{3}) {
		t.Fatalf("harvest while running: %v, %v", pfns, err)
	}
	if _, err := d.SaveState(ctx); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("save state while running: %v", err)
	}
}

func TestReadPagesBatches(t *testing.T) {
	f, d := openFake(t, Options{BatchPages: 150})
	pfns := make([]uint64, 366)
	for i := range pfns {
		pfns[i] = uint64(i)
	}
	buf := make([]byte, len(pfns)*4096)
	if err := d.ReadPages(pfns, buf); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, m := range f.maps {
		sizes = append(sizes, len(m))
	}
	if !slices.Equal(sizes, []int{150, 150, 66}) || f.unmapped != 3 {
		t.Fatalf("map calls of %v frames, %d unmaps; want [150 150 66], 3", sizes, f.unmapped)
	}
	// Dense 100 is the first frame of the second run.
	if f.maps[0][100] != 0x200 || f.maps[2][65] != 2999 {
		t.Fatalf("dense pages mapped to wrong frames: %#x %#x", f.maps[0][100], f.maps[2][65])
	}
	if !bytes.Equal(buf[365*4096:], f.mem[2999]) {
		t.Fatal("last page content differs")
	}
}

func TestReadPagesErrors(t *testing.T) {
	f, d := openFake(t, Options{})
	buf := make([]byte, 2*4096)
	f.mapErrs[0x201] = -int32(syscall.EFAULT)
	err := d.ReadPages([]uint64{100, 101}, buf)
	if !errors.Is(err, syscall.EFAULT) || !strings.Contains(err.Error(), "0x201") {
		t.Fatalf("per-frame error: %v", err)
	}
	if f.unmapped != 1 {
		t.Fatalf("mapping not released after a frame error (%d unmaps)", f.unmapped)
	}
	// A frame that left the memory map since open (now a hole: the guest
	// mapped a grant frame there) reads as zeros; its neighbour is intact.
	f.populated[0x201] = false
	f.mapErrs[0x201] = -int32(syscall.EINVAL)
	buf[4096] = 0xff
	if err := d.ReadPages([]uint64{100, 101}, buf); err != nil {
		t.Fatalf("frame gone from the map: %v", err)
	}
	if !bytes.Equal(buf[:4096], f.mem[0x200]) || !bytes.Equal(buf[4096:], make([]byte, 4096)) {
		t.Fatal("gone frame not zeroed or neighbour not copied")
	}
	f.populated[0x201] = true
	if err := d.ReadPages([]uint64{366}, buf[:4096]); !errors.Is(err, ErrRange) {
		t.Fatalf("out of range: %v", err)
	}
	if err := d.ReadPages([]uint64{1}, buf); err == nil {
		t.Fatal("wrong dst size accepted")
	}
	f.fail[OpMapFrames] = syscall.ENOMEM
	if err := d.ReadPages([]uint64{1}, buf[:4096]); !errors.Is(err, syscall.ENOMEM) {
		t.Fatalf("map failure: %v", err)
	}
	f.fail[OpUnmapFrames] = syscall.EINVAL
	if err := d.ReadPages([]uint64{1}, buf[:4096]); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("unmap failure swallowed: %v", err)
	}
}

func TestEnableDirtyLogBusy(t *testing.T) {
	f, d := openFake(t, Options{})
	f.logDirty = true // another tool got there first
	err := d.EnableDirtyLog(context.Background())
	if !errors.Is(err, ErrLogDirtyBusy) || !strings.Contains(err.Error(), "log-dirty already enabled by another tool") ||
		!strings.Contains(err.Error(), "domain 7") {
		t.Fatalf("err %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !f.logDirty {
		t.Fatal("Close turned off log-dirty mode the driver never owned")
	}
}

func TestHarvestOutsideMemoryMap(t *testing.T) {
	ctx := context.Background()
	f, d := openFake(t, Options{})
	_ = d.EnableDirtyLog(ctx)
	_ = d.Pause(ctx)
	f.dirty[0x150] = true // a hole frame (e.g. grant table) marked dirty: no data
	f.write(1, 9)
	pfns, err := d.HarvestDirty(ctx, nil)
	if err != nil || !slices.Equal(pfns, []uint64{1}) {
		t.Fatalf("harvest %v, %v; want [1]", pfns, err)
	}
	// A hole that became RAM: the replica no longer covers the guest.
	f.populated[0x150] = true
	f.dirty[0x150] = true
	if _, err := d.HarvestDirty(ctx, nil); !errors.Is(err, ErrLayoutChanged) {
		t.Fatalf("populated hole: %v", err)
	}
	f.covered = 2000
	if _, err := d.HarvestDirty(ctx, nil); !errors.Is(err, ErrLayoutChanged) {
		t.Fatalf("short bitmap: %v", err)
	}
}

func TestPauseResumeErrors(t *testing.T) {
	ctx := context.Background()
	f, d := openFake(t, Options{})
	f.fail[OpSuspend] = syscall.ESRCH
	if err := d.Pause(ctx); !errors.Is(err, ErrNoDomain) {
		t.Fatalf("pause: %v", err)
	}
	if err := d.Pause(ctx); err != nil || f.suspends != 1 {
		t.Fatalf("retry pause: %v (suspends %d)", err, f.suspends)
	}
	if err := d.Pause(ctx); err != nil || f.suspends != 1 {
		t.Fatalf("double pause reached xen: suspends %d", f.suspends)
	}
	f.fail[OpResume] = syscall.EAGAIN
	if err := d.Resume(ctx); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("resume: %v", err)
	}
	if err := d.Resume(ctx); err != nil || f.resumes != 1 || f.info.Shutdown {
		t.Fatalf("retry resume: %v (resumes %d)", err, f.resumes)
	}
}

// A guest that never takes the request (hung, or its xenbus driver gone):
// Pause gives up after the timeout, withdraws the request and fails, and
// the guest was never stopped. One that takes it just as it is withdrawn
// is resumed at once; one that crashes instead is reported as dying.
func TestPauseSuspendTimeouts(t *testing.T) {
	ctx := context.Background()
	opts := Options{SuspendTimeout: 20 * time.Millisecond}
	f, d := openFake(t, opts)
	f.reply = replyIgnore
	if err := d.Pause(ctx); !errors.Is(err, ErrSuspendTimeout) || !errors.Is(err, checkpointer.ErrPauseRefused) {
		t.Fatalf("hung guest: %v", err)
	}
	if f.pending || f.info.Shutdown || !slices.Contains(f.calls, "cancel "+OpSuspend) {
		t.Fatalf("request left pending (%v) or guest stopped (%v); calls %v", f.pending, f.info.Shutdown, f.calls)
	}
	if _, err := d.SaveState(ctx); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("state after a failed pause: %v", err)
	}

	f, d = openFake(t, opts)
	f.reply = replyLate
	if err := d.Pause(ctx); !errors.Is(err, ErrSuspendTimeout) || !errors.Is(err, checkpointer.ErrPauseRefused) {
		t.Fatalf("late guest: %v", err)
	}
	if f.info.Shutdown || f.resumes != 1 {
		t.Fatalf("late suspend not resumed: shut down %v, %d resumes", f.info.Shutdown, f.resumes)
	}
	// The guest runs on: the next epoch's pause works.
	f.reply = replySuspend
	if err := d.Pause(ctx); err != nil {
		t.Fatalf("pause after a refused one: %v", err)
	}

	// Taken but never carried out: the guest may be stuck half-way into
	// its suspend, so this is no refusal the epoch loop may skip.
	f, d = openFake(t, opts)
	f.reply = replyStuck
	d.lateWait = 20 * time.Millisecond
	if err := d.Pause(ctx); !errors.Is(err, ErrSuspendTimeout) || errors.Is(err, checkpointer.ErrPauseRefused) ||
		!strings.Contains(err.Error(), "never suspended") {
		t.Fatalf("stuck guest: %v", err)
	}

	f, d = openFake(t, opts)
	f.reply = replyIgnore
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Pause(cctx); !errors.Is(err, context.Canceled) || f.pending || !errors.Is(err, checkpointer.ErrPauseRefused) {
		t.Fatalf("cancelled pause: %v (pending %v)", err, f.pending)
	}

	f, d = openFake(t, opts)
	f.reply = replyCrash
	if err := d.Pause(ctx); !errors.Is(err, ErrDying) {
		t.Fatalf("crashing guest: %v", err)
	}
}

// A guest left suspended by an agent that died mid-epoch is resumed when
// the next agent opens it.
func TestOpenResumesLeftSuspended(t *testing.T) {
	f := newFakeXC(7, 3000, testExtents...)
	f.suspend(ShutdownSuspend)
	if _, err := NewDomain(f, 7, "guest", Options{}); err != nil {
		t.Fatal(err)
	}
	if f.info.Shutdown || f.resumes != 1 {
		t.Fatalf("left suspended: %v, %d resumes", f.info.Shutdown, f.resumes)
	}
}

func TestCloseResumesAndStopsTracking(t *testing.T) {
	ctx := context.Background()
	f, d := openFake(t, Options{})
	_ = d.EnableDirtyLog(ctx)
	_ = d.Pause(ctx)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if f.info.Shutdown || f.logDirty {
		t.Fatalf("after close: suspended %v, log-dirty %v", f.info.Shutdown, f.logDirty)
	}
}

func TestSaveStateRoundTrip(t *testing.T) {
	ctx := context.Background()
	f, d := openFake(t, Options{})
	_ = d.Pause(ctx)
	blob, err := d.SaveState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := DecodeState(blob)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.HVMContext, f.hvmCtx) || st.XenMajor != 4 || st.XenMinor != 17 ||
		!slices.Equal(st.Extents, testExtents) || st.TSC.KHz != 2400000 {
		t.Fatalf("state %+v", st)
	}
	// Only the non-zero params, in libxc's order: STORE_PFN then CONSOLE_PFN.
	if want := []HVMParam{{1, 0xfeffc}, {17, 0xfeffd}}; !slices.Equal(st.Params, want) {
		t.Fatalf("params %v, want %v", st.Params, want)
	}
	f.fail[OpHVMParam] = syscall.EINVAL
	if _, err := d.SaveState(ctx); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("param failure: %v", err)
	}
}
