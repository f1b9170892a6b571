// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"sync"
	"time"

	"github.com/resilire/resilire/checkpointer"
)

// savedParams are the HVM parameters libxc's own HVM save sends
// (xg_sr_save_x86_hvm.c): special page locations, ioreq servers, viridian...
var savedParams = []uint32{
	1,  // HVM_PARAM_STORE_PFN
	5,  // HVM_PARAM_IOREQ_PFN
	6,  // HVM_PARAM_BUFIOREQ_PFN
	27, // HVM_PARAM_PAGING_RING_PFN
	28, // HVM_PARAM_MONITOR_RING_PFN
	29, // HVM_PARAM_SHARING_RING_PFN
	37, // HVM_PARAM_VM86_TSS_SIZED
	17, // HVM_PARAM_CONSOLE_PFN
	19, // HVM_PARAM_ACPI_IOPORTS_LOCATION
	9,  // HVM_PARAM_VIRIDIAN
	12, // HVM_PARAM_IDENT_PT
	34, // HVM_PARAM_VM_GENERATION_ID_ADDR
	32, // HVM_PARAM_IOREQ_SERVER_PFN
	33, // HVM_PARAM_NR_IOREQ_SERVER_PAGES
	36, // HVM_PARAM_X87_FIP_WIDTH
	38, // HVM_PARAM_MCA_CAP
}

// Options tune the driver.
type Options struct {
	// BatchPages is how many frames one xenforeignmemory_map call maps
	// (default and maximum MaxBatch). Bigger batches mean fewer hypercalls
	// and mmaps per epoch.
	BatchPages int
	// Logger receives per-epoch debug records; nil discards them.
	Logger *slog.Logger
	// SuspendTimeout bounds how long Pause waits for the guest to suspend
	// itself (default DefaultSuspendTimeout). Past it the request is
	// withdrawn and Pause fails: no checkpoint is taken that epoch.
	SuspendTimeout time.Duration
	// SuspendPoll is how often Pause looks for the suspend (default 5 ms,
	// libxl's fallback poll: a tighter loop of hypercalls takes CPU from
	// the very guest that must run to suspend).
	SuspendPoll time.Duration
	// BootWait is how long NewDomain waits for a guest that does not take
	// suspend requests yet to start doing so: one just created (protect
	// --start-vm) advertises control/feature-suspend only once its kernel
	// has brought up its PV drivers. 0: refuse such a guest at once.
	BootWait time.Duration
}

// DefaultSuspendTimeout is long enough for a guest that freezes its tasks
// under load (tens of milliseconds on hardware, ~60 ms under QEMU TCG).
const DefaultSuspendTimeout = 2 * time.Second

// minLateWait is the least time a guest that acknowledged a withdrawn
// request gets to reach its suspend (Domain.lateWait).
const minLateWait = time.Second

// Domain is the Xen implementation of checkpointer.Domain for one HVM
// guest without a device model (PVH). Page numbers are dense indices into
// the guest's populated frames (see Layout). It is safe for use by one epoch
// loop; the methods serialise on a mutex.
type Domain struct {
	xc      Libxc
	domid   uint32
	name    string
	batch   int
	log     *slog.Logger
	layout  *Layout
	nrGPFNs uint64
	version [2]uint16
	owned   io.Closer // the libxc handles, when OpenDomain made them

	suspendTimeout, suspendPoll time.Duration
	// lateWait bounds the wait for a guest that took the request just as
	// it was withdrawn: it is already on its way into its suspend
	// hypercall (tens of ms under TCG, SUSPEND.md), however short
	// suspendTimeout is.
	lateWait time.Duration

	mu       sync.Mutex
	paused   bool // suspended by Pause (the guest stopped itself)
	logDirty bool
	bitmap   []uint64
	pfnBuf   []uint64
	errBuf   []int32
	types    []uint32
}

var _ checkpointer.Domain = (*Domain)(nil)

// NewDomain opens domain domid through xc, checks that it is a supported
// guest and reads its memory map. name is used in logs and pinned state.
func NewDomain(xc Libxc, domid uint32, name string, opts Options) (*Domain, error) {
	if opts.BatchPages <= 0 || opts.BatchPages > MaxBatch {
		opts.BatchPages = MaxBatch
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	info, err := xc.DomainInfo(domid)
	if err != nil {
		return nil, err
	}
	if opts.SuspendTimeout <= 0 {
		opts.SuspendTimeout = DefaultSuspendTimeout
	}
	if opts.SuspendPoll <= 0 {
		opts.SuspendPoll = 5 * time.Millisecond
	}
	switch {
	case info.Dying || info.Shutdown && info.ShutdownReason != ShutdownSuspend:
		return nil, fmt.Errorf("domain %d: %w", domid, ErrDying)
	case !info.HVM:
		return nil, fmt.Errorf("domain %d is PV: %w (only PVH guests)", domid, ErrUnsupportedGuest)
	case info.NeedsDeviceModel():
		return nil, fmt.Errorf("domain %d is HVM with emulated devices (flags %#x): %w (only PVH guests: QEMU state and DMA writes are not captured)",
			domid, info.EmulationFlags, ErrUnsupportedGuest)
	}
	major, minor, err := xc.XenVersion()
	if err != nil {
		return nil, err
	}
	if err := waitSuspendable(xc, domid, opts.BootWait); err != nil {
		return nil, err
	}
	if info.Shutdown {
		// Suspended by an agent that died between suspend and resume:
		// let it run on, or nothing ever will.
		if err := xc.ResumeFast(domid); err != nil {
			return nil, fmt.Errorf("resume domain %d left suspended: %w", domid, err)
		}
		opts.Logger.Warn("resumed a guest left suspended", "vm", name, "domid", domid)
	}
	d := &Domain{xc: xc, domid: domid, name: name, batch: opts.BatchPages, log: opts.Logger,
		suspendTimeout: opts.SuspendTimeout, suspendPoll: opts.SuspendPoll, lateWait: max(opts.SuspendTimeout, minLateWait),
		nrGPFNs: info.NrGPFNs, version: [2]uint16{major, minor},
		bitmap: make([]uint64, (info.NrGPFNs+63)/64),
		pfnBuf: make([]uint64, MaxBatch), errBuf: make([]int32, MaxBatch), types: make([]uint32, MaxBatch)}
	if d.layout, err = d.scanLayout(); err != nil {
		return nil, err
	}
	d.log.Debug("xen domain opened", "vm", name, "pages", d.layout.Pages(), "extents", len(d.layout.Extents()))
	return d, nil
}

// waitSuspendable is checkSuspendable, retried every 100 ms for up to wait
// while the guest does not take suspend requests yet (it is booting).
func waitSuspendable(xc Libxc, domid uint32, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := checkSuspendable(xc, domid)
		if err == nil || !errors.Is(err, ErrNoSuspend) || !time.Now().Before(deadline) {
			if err != nil && wait > 0 {
				err = fmt.Errorf("%w, after waiting %v for it to boot", err, wait)
			}
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkSuspendable refuses a guest whose checkpoints would not restore
// into a running guest: one that takes no suspend request through
// xenstore, or one whose fast resume could not work (no callback IRQ, so
// libxc would not make SCHEDOP_shutdown return "cancelled").
func checkSuspendable(xc Libxc, domid uint32) error {
	v, _, err := xc.StoreRead(fmt.Sprintf("/local/domain/%d/control/feature-suspend", domid))
	if err != nil {
		return err
	}
	if v != "1" {
		return fmt.Errorf("domain %d: %w (control/feature-suspend is %q: a PV driver-less or hung guest; "+
			"a paused-only image restores into a guest that never runs)", domid, ErrNoSuspend, v)
	}
	cb, err := xc.HVMParam(domid, paramCallbackIRQ)
	if err != nil {
		return err
	}
	if cb == 0 {
		return fmt.Errorf("domain %d: %w (HVM_PARAM_CALLBACK_IRQ is 0: a fast resume would crash it)", domid, ErrNoSuspend)
	}
	return nil
}

// scanLayout asks Xen for the type of every frame of the guest's address
// space and keeps those that hold data, as libxc's HVM save does.
func (d *Domain) scanLayout() (*Layout, error) {
	var b extentBuilder
	for start := uint64(0); start < d.nrGPFNs; start += MaxBatch {
		n := min(uint64(MaxBatch), d.nrGPFNs-start)
		pfns := d.pfnBuf[:n]
		for i := range pfns {
			pfns[i] = start + uint64(i)
		}
		if err := d.xc.PFNTypes(d.domid, pfns, d.types); err != nil {
			return nil, err
		}
		for i, t := range d.types[:n] {
			if pageHasData(t) {
				b.add(start + uint64(i))
			}
		}
	}
	if len(b.out) == 0 {
		return nil, fmt.Errorf("domain %d has no populated memory: %w", d.domid, ErrUnsupportedGuest)
	}
	return NewLayout(b.out)
}

// Name identifies the VM.
func (d *Domain) Name() string { return d.name }

// DomID is the Xen domain id.
func (d *Domain) DomID() uint32 { return d.domid }

// Layout is the memory map captured when the domain was opened.
func (d *Domain) Layout() *Layout { return d.layout }

// MemorySize is the populated guest memory in bytes.
func (d *Domain) MemorySize() uint64 { return d.layout.Pages() * checkpointer.PageSize }

// Pause stops the guest for a checkpoint the way Xen's own save and Remus
// do: it asks the guest to suspend itself and waits until Xen reports it
// shut down with SHUTDOWN_suspend. The guest's suspend path saves what a
// plain vCPU pause would lose (timer and IPI event channels are rebuilt on
// its resume path), so the image restores into a running guest. A guest
// that does not suspend within SuspendTimeout has the request withdrawn
// (or, taken at the last moment, is resumed at once) and Pause fails with
// checkpointer.ErrPauseRefused: the guest runs on and the epoch may be
// retried. ctx's end withdraws the request too; a guest that shuts down
// otherwise fails with ErrDying.
func (d *Domain) Pause(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.paused {
		return nil
	}
	if err := d.xc.RequestSuspend(d.domid); err != nil {
		return err
	}
	deadline := time.Now().Add(d.suspendTimeout)
	suspended, err := d.awaitSuspend(func() bool { return time.Now().After(deadline) || ctx.Err() != nil })
	switch {
	case err != nil:
		return err
	case suspended:
		d.paused = true
		return nil
	}
	return d.cancelSuspend(ctx)
}

// awaitSuspend polls until the guest has suspended itself (true) or
// giveUp says to stop waiting (false).
func (d *Domain) awaitSuspend(giveUp func() bool) (bool, error) {
	for {
		suspended, err := d.suspended()
		if err != nil || suspended {
			return suspended, err
		}
		if giveUp() {
			return false, nil
		}
		time.Sleep(d.suspendPoll)
	}
}

// suspended reports whether the guest has suspended itself.
func (d *Domain) suspended() (bool, error) {
	info, err := d.xc.DomainInfo(d.domid)
	switch {
	case err != nil:
		return false, err
	case info.Dying || info.Shutdown && info.ShutdownReason != ShutdownSuspend:
		return false, fmt.Errorf("domain %d (shutdown reason %d): %w", d.domid, info.ShutdownReason, ErrDying)
	}
	return info.Shutdown, nil
}

// cancelSuspend withdraws a request that timed out. If the guest took it
// at the last moment it is suspended or about to be: wait for that and
// resume it, so that a failed Pause never leaves the guest stopped.
func (d *Domain) cancelSuspend(ctx context.Context) error {
	withdrawn, err := d.xc.CancelSuspend(d.domid)
	if err != nil {
		return err
	}
	cause := fmt.Errorf("domain %d after %v: %w", d.domid, d.suspendTimeout, ErrSuspendTimeout)
	if ctx.Err() != nil {
		cause = fmt.Errorf("domain %d: suspend: %w", d.domid, ctx.Err())
	}
	// The guest runs on unchanged when the request is withdrawn, or taken
	// late and then resumed: the epoch may be skipped and tried again.
	refused := fmt.Errorf("%w: %w", checkpointer.ErrPauseRefused, cause)
	if withdrawn {
		return refused
	}
	// Acknowledged: the guest is on its way into SCHEDOP_shutdown.
	end := time.Now().Add(d.lateWait)
	suspended, err := d.awaitSuspend(func() bool { return time.Now().After(end) })
	switch {
	case err != nil:
		return errors.Join(cause, err)
	case suspended:
		if err := d.xc.ResumeFast(d.domid); err != nil {
			return errors.Join(cause, err)
		}
		return refused
	}
	return fmt.Errorf("%w; it acknowledged the request but never suspended: it may be hung", cause)
}

// Resume lets the suspended guest run on in place (a fast resume: its
// suspend hypercall returns "cancelled", so it keeps its event channels).
func (d *Domain) Resume(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resumeLocked()
}

func (d *Domain) resumeLocked() error {
	if !d.paused {
		return nil
	}
	if err := d.xc.ResumeFast(d.domid); err != nil {
		return err
	}
	d.paused = false
	return nil
}

// EnableDirtyLog turns log-dirty mode on. If another tool already tracks the
// domain, the error wraps ErrLogDirtyBusy; the driver never takes tracking
// away from it.
func (d *Domain) EnableDirtyLog(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.logDirty {
		return nil
	}
	if err := d.xc.EnableLogDirty(d.domid); err != nil {
		return err
	}
	d.logDirty = true
	return nil
}

// HarvestDirty reads and clears Xen's dirty bitmap and appends the dense
// page numbers of the dirty frames, ascending. Each epoch calls it with the
// guest suspended, so that the harvest and the page copy that follows see
// one instant; the initial sync calls it while the guest runs, as a live
// migration's rounds do (CLEAN is atomic per frame). Dirty frames outside the memory map are re-typed: if they hold no
// data (grant or MMIO frames), they are skipped, as libxc's save skips them;
// if they became RAM, ErrLayoutChanged is returned, never an under-report.
func (d *Domain) HarvestDirty(ctx context.Context, dst []uint64) ([]uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.logDirty {
		return dst, fmt.Errorf("harvest domain %d: %w", d.domid, ErrLogDirtyOff)
	}
	clear(d.bitmap)
	covered, _, err := d.xc.CleanDirty(d.domid, d.bitmap, d.nrGPFNs)
	if err != nil {
		return dst, err
	}
	if covered != d.nrGPFNs {
		return dst, fmt.Errorf("harvest domain %d: bitmap covers %d frames, want %d: %w", d.domid, covered, d.nrGPFNs, ErrLayoutChanged)
	}
	var outside []uint64
	for w, word := range d.bitmap {
		for word != 0 {
			gpfn := uint64(w)*64 + uint64(bits.TrailingZeros64(word))
			word &= word - 1
			if gpfn >= d.nrGPFNs {
				break
			}
			if i, ok := d.layout.Index(gpfn); ok {
				dst = append(dst, i)
			} else {
				outside = append(outside, gpfn)
			}
		}
	}
	if err := d.checkOutside(outside); err != nil {
		return dst, err
	}
	return dst, nil
}

// checkOutside re-types dirty frames that are not in the memory map.
func (d *Domain) checkOutside(gpfns []uint64) error {
	for len(gpfns) > 0 {
		n := min(len(gpfns), MaxBatch)
		batch := append(d.pfnBuf[:0], gpfns[:n]...)
		if err := d.xc.PFNTypes(d.domid, batch, d.types); err != nil {
			return err
		}
		for i, t := range d.types[:n] {
			if pageHasData(t) {
				return fmt.Errorf("domain %d: frame %#x became populated: %w", d.domid, gpfns[i], ErrLayoutChanged)
			}
		}
		gpfns = gpfns[n:]
	}
	return nil
}

// ReadPages copies the listed dense pages into dst, mapping up to
// BatchPages frames per xenforeignmemory_map call. It may be called while
// the guest runs (the first full copy) or paused (each epoch).
func (d *Domain) ReadPages(pfns []uint64, dst []byte) error {
	if len(dst) != len(pfns)*checkpointer.PageSize {
		return fmt.Errorf("read pages: dst is %d bytes, want %d", len(dst), len(pfns)*checkpointer.PageSize)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(pfns) > 0 {
		n := min(len(pfns), d.batch)
		if err := d.readBatch(pfns[:n], dst[:n*checkpointer.PageSize]); err != nil {
			return err
		}
		pfns, dst = pfns[n:], dst[n*checkpointer.PageSize:]
	}
	return nil
}

func (d *Domain) readBatch(pfns []uint64, dst []byte) (err error) {
	gpfns, errs := d.pfnBuf[:len(pfns)], d.errBuf[:len(pfns)]
	for i, p := range pfns {
		g, ok := d.layout.GPFN(p)
		if !ok {
			return fmt.Errorf("read page %d of domain %d (%d pages): %w", p, d.domid, d.layout.Pages(), ErrRange)
		}
		gpfns[i] = g
	}
	clear(errs)
	m, err := d.xc.MapFrames(d.domid, gpfns, errs)
	if err != nil {
		return err
	}
	defer func() {
		if uerr := m.Unmap(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	src := m.Bytes()
	if len(src) < len(dst) {
		return fmt.Errorf("map frames of domain %d: mapping is %d bytes, want %d", d.domid, len(src), len(dst))
	}
	for i, e := range errs {
		page := dst[i*checkpointer.PageSize : (i+1)*checkpointer.PageSize]
		if e == 0 {
			copy(page, src[i*checkpointer.PageSize:])
			continue
		}
		if err := d.checkGone(gpfns[i], e); err != nil {
			return err
		}
		clear(page)
	}
	return nil
}

// checkGone re-types a frame of the memory map that failed to map. A frame
// that no longer holds data — the guest put a Xen page there (Linux maps
// its grant table frames over RAM as its grant table grows) or gave it back
// — is read as zeros, as libxc's save skips it; anything else is an error.
func (d *Domain) checkGone(gpfn uint64, e int32) error {
	types := d.types[:1]
	if err := d.xc.PFNTypes(d.domid, []uint64{gpfn}, types); err != nil {
		return err
	}
	if !pageHasData(types[0]) {
		d.log.Debug("frame left the memory map", "vm", d.name, "gpfn", gpfn, "type", types[0])
		return nil
	}
	return fmt.Errorf("map frame %#x: %w", gpfn, NewOpError(OpMapFrames, d.domid, errnoOf(e)))
}

// SaveState captures the HVM context, the HVM parameters libxc saves, the
// TSC info and the memory map, encoded for Standby.Activate. The guest must
// be paused.
func (d *Domain) SaveState(ctx context.Context) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.paused {
		return nil, fmt.Errorf("save state of domain %d: %w", d.domid, ErrNotPaused)
	}
	st := &State{XenMajor: d.version[0], XenMinor: d.version[1], Extents: d.layout.Extents()}
	var err error
	if st.TSC, err = d.xc.TSCInfo(d.domid); err != nil {
		return nil, err
	}
	if st.HVMContext, err = d.xc.HVMContext(d.domid); err != nil {
		return nil, err
	}
	if len(st.HVMContext) == 0 {
		return nil, fmt.Errorf("save state of domain %d: empty hvm context", d.domid)
	}
	for _, idx := range savedParams {
		v, err := d.xc.HVMParam(d.domid, idx)
		if err != nil {
			return nil, fmt.Errorf("param %d: %w", idx, err)
		}
		if v != 0 {
			st.Params = append(st.Params, HVMParam{Index: uint64(idx), Value: v})
		}
	}
	return st.Encode(), nil
}

// Close turns log-dirty mode off and, if the driver left the guest paused
// (an epoch aborted half way), unpauses it: Close never leaves the guest
// stopped. Held output stays held by the data plane. It closes the libxc
// handles only if OpenDomain opened them.
func (d *Domain) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if d.owned != nil {
		defer func() { d.owned.Close(); d.owned = nil }()
	}
	if d.logDirty {
		if err := d.xc.DisableLogDirty(d.domid); err != nil && !errors.Is(err, ErrNoDomain) {
			errs = append(errs, err)
		}
		d.logDirty = false
	}
	if err := d.resumeLocked(); err != nil && !errors.Is(err, ErrNoDomain) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
