// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/resilire/resilire/checkpointer"
)

// ErrNotPaused is returned by SaveState when the guest is running: a
// migration of a running guest would be a live migration that ends with
// the guest stopped.
var ErrNotPaused = errors.New("qemu: guest not paused")

// DomainOptions tune NewDomain.
type DomainOptions struct {
	Workers int          // hashing goroutines, 0 = GOMAXPROCS
	Logger  *slog.Logger // nil discards
	// Tracking is TrackAuto (default: exact tracking where it works,
	// else hashing, and the reason is reported), TrackUffd (fail
	// without exact tracking) or TrackHash.
	Tracking string
}

// Domain is the primary's view of a QEMU guest; it implements
// checkpointer.Domain. Its methods must not be called concurrently (the
// epoch loop is sequential).
type Domain struct {
	vm     *VM
	ram    *ramScanner // the agent's read-only mapping; hashes too unless exact is set
	exact  exactTracker
	track  checkpointer.DirtyTracking
	paused bool
	save   *pendingSave // device-state save started by Pause
	log    *slog.Logger
}

// pendingSave is a device-state migration running in QEMU's migration
// thread while the epoch loop hashes and copies RAM in this process: the
// two overlap and the pause shrinks by the save's ~4 ms. The state cannot
// change between the stop and the save: the vCPUs are stopped, timers are
// frozen and QEMU delivers no packets to a stopped guest.
type pendingSave struct {
	done  chan struct{}
	state []byte
	err   error
}

// saveTimeout bounds a background save whose caller has gone away.
const saveTimeout = 30 * time.Second

var (
	_ checkpointer.Domain           = (*Domain)(nil)
	_ checkpointer.MemoryHasher     = (*Domain)(nil)
	_ checkpointer.TrackingReporter = (*Domain)(nil)
)

// NewDomain maps the guest RAM file of a running VM and sets up its dirty
// tracking (dirty.go): exact where it works, else hashing.
func NewDomain(vm *VM, o DomainOptions) (*Domain, error) {
	mode, err := ParseTracking(o.Tracking)
	if err != nil {
		return nil, err
	}
	ram, err := openRAM(vm.cfg.MemPath, vm.cfg.MemoryBytes(), o.Workers)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("vm", vm.cfg.Name)
	exact, track, err := chooseTracker(vm, mode, log)
	if err != nil {
		_ = ram.close()
		return nil, err
	}
	log.Info("dirty tracking", "mechanism", track.Mechanism, "reason", track.Reason)
	return &Domain{vm: vm, ram: ram, exact: exact, track: track, log: log}, nil
}

// DirtyTracking says which mechanism finds the dirty pages, and why.
func (d *Domain) DirtyTracking() checkpointer.DirtyTracking { return d.track }

// Name is the VM name from the Config.
func (d *Domain) Name() string { return d.vm.cfg.Name }

// MemorySize is the guest RAM size in bytes.
func (d *Domain) MemorySize() uint64 { return d.vm.cfg.MemoryBytes() }

// VM returns the QEMU process behind the domain.
func (d *Domain) VM() *VM { return d.vm }

// Pause stops the vCPUs (QMP stop); when it returns, guest RAM no longer
// changes. It also starts saving the device state in the background, for
// SaveState to collect.
func (d *Domain) Pause(ctx context.Context) error {
	if _, err := d.vm.mon.run(ctx, "stop", nil); err != nil {
		return err
	}
	d.paused = true
	d.ram.newPause()
	ps := &pendingSave{done: make(chan struct{})}
	d.save = ps
	go func() {
		defer close(ps.done)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
		defer cancel()
		ps.state, ps.err = saveState(sctx, d.vm.mon)
	}()
	return nil
}

// Resume restarts the vCPUs (QMP cont). A device-state save still running
// is waited for first (cont during a migration would race it).
func (d *Domain) Resume(ctx context.Context) error {
	if ps := d.save; ps != nil {
		select {
		case <-ps.done:
		case <-ctx.Done():
			return fmt.Errorf("resume: wait for device-state save: %w", ctx.Err())
		}
		d.save = nil
	}
	if _, err := d.vm.mon.run(ctx, "cont", nil); err != nil {
		return err
	}
	d.paused = false
	return nil
}

// EnableDirtyLog records the baseline hash of every page. Call it paused,
// and copy all of memory with ReadPages in the same pause, for an initial
// copy that matches the baseline exactly; called while the guest runs,
// ReadPages re-hashes what it copies so that the baseline still describes
// what the backup holds.
//
// With exact tracking it write-protects all of guest RAM: every write
// from here on is reported, whenever pages are copied.
func (d *Domain) EnableDirtyLog(ctx context.Context) error {
	if d.exact != nil {
		return d.exact.baseline()
	}
	d.ram.baseline(d.paused)
	return nil
}

// HarvestDirty appends the pages written (exact tracking) or whose hash
// changed (hashing) since the last harvest or EnableDirtyLog, ascending.
//
// If exact tracking fails for good (the re-injection after a lost
// registration failed), the domain falls back to hashing: this harvest
// reports every page (the fresh baseline) and DirtyTracking says why.
func (d *Domain) HarvestDirty(ctx context.Context, dst []uint64) ([]uint64, error) {
	if d.exact == nil {
		return d.ram.harvest(dst, d.paused)
	}
	n0 := len(dst)
	dst, err := d.exact.harvest(dst)
	if err == nil {
		return dst, nil
	}
	_ = d.exact.close()
	d.exact = nil
	d.track = checkpointer.DirtyTracking{Mechanism: TrackHash, Reason: "fallback after exact tracking failed: " + err.Error()}
	d.log.Error("exact dirty tracking failed: hashing all guest RAM from now on, every page sent once", "err", err)
	d.ram.baseline(d.paused)
	dst = dst[:n0]
	for p := uint64(0); p < d.MemorySize()/PageSize; p++ {
		dst = append(dst, p)
	}
	return dst, nil
}

// ReadPages copies pages out of the shared mapping.
func (d *Domain) ReadPages(pfns []uint64, dst []byte) error {
	return d.ram.read(pfns, dst, d.paused)
}

// HashPages hashes every page of guest RAM in place (the scrub's leaves,
// checkpointer.MemoryHasher). Call it paused.
func (d *Domain) HashPages(leaves []uint64) error { return d.ram.hashAll(leaves) }

// SaveState returns the device state (no RAM: x-ignore-shared) that a
// migration into a pipe produced, started by Pause. The guest must be
// paused; it stays paused. A second call in the same pause saves again.
func (d *Domain) SaveState(ctx context.Context) ([]byte, error) {
	if !d.paused {
		return nil, ErrNotPaused
	}
	ps := d.save
	if ps == nil {
		return saveState(ctx, d.vm.mon)
	}
	select {
	case <-ps.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("save state: %w", ctx.Err())
	}
	d.save = nil
	return ps.state, ps.err
}

// Close unmaps guest RAM. The guest keeps running (or paused); the VM is
// the caller's.
func (d *Domain) Close() error {
	if ps := d.save; ps != nil {
		<-ps.done
		d.save = nil
	}
	if d.exact != nil {
		_ = d.exact.close()
	}
	return d.ram.close()
}

// PageSize re-exports the replication page size for callers of this package.
const PageSize = checkpointer.PageSize

func pageCount(size uint64) (int, error) {
	if size == 0 || size%PageSize != 0 {
		return 0, fmt.Errorf("memory size %d is not a positive multiple of %d", size, PageSize)
	}
	return int(size / PageSize), nil
}
