// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"errors"

	"github.com/resilire/resilire/checkpointer/codec"
)

// ErrPauseRefused is wrapped by a Domain's Pause when the guest could not be
// stopped this time but runs on exactly as if Pause had not been called (a
// Xen guest that did not suspend in time and had the request withdrawn).
// The primary skips the epoch: nothing is captured and no output released,
// and the next tick tries again (PrimaryConfig.MaxSkippedEpochs).
var ErrPauseRefused = errors.New("pause refused, the guest runs on")

// PageSize is the guest page size the replication works in. Every driver
// reports memory in these units (x86 4 KiB frames).
const PageSize = codec.PageSize

// Domain is a protected VM as the primary's hypervisor shows it. The epoch
// loop calls Pause, HarvestDirty, ReadPages and SaveState with the guest
// paused, then Resume; everything else happens while the guest runs.
//
// Implementations: the QEMU driver (QMP + shared RAM file), the Xen driver
// (libxenctrl, build tag xen) and the simulated domain for tests.
type Domain interface {
	// Name identifies the VM in logs, metrics and pinned state.
	Name() string
	// MemorySize is the guest memory in bytes, a multiple of PageSize.
	MemorySize() uint64
	// Pause stops every vCPU; when it returns, guest memory and device
	// state no longer change. An error wrapping ErrPauseRefused means the
	// guest was left running and unchanged; any other error is fatal.
	Pause(ctx context.Context) error
	// Resume lets the guest run again.
	Resume(ctx context.Context) error
	// EnableDirtyLog starts dirty tracking. The first HarvestDirty after it
	// reports the pages changed since EnableDirtyLog returned.
	EnableDirtyLog(ctx context.Context) error
	// HarvestDirty appends to dst the page numbers dirtied since the last
	// harvest (or EnableDirtyLog), in ascending order, and clears the log.
	// It may over-report, never under-report.
	HarvestDirty(ctx context.Context, dst []uint64) ([]uint64, error)
	// ReadPages copies the listed pages into dst, PageSize bytes each, in
	// the order given. len(dst) must be len(pfns)*PageSize.
	ReadPages(pfns []uint64, dst []byte) error
	// SaveState returns the CPU and device state as an opaque blob that
	// the backup's Standby.Activate understands. Called while paused.
	SaveState(ctx context.Context) ([]byte, error)
	// Close stops dirty tracking and releases mappings; it does not stop
	// the guest.
	Close() error
}

// Replica is the backup's copy of guest memory. The backup writes into it
// only when a whole checkpoint has arrived and verified.
type Replica interface {
	// Memory is the replica's guest memory, MemorySize bytes, writable.
	Memory() []byte
	// Sync makes the memory durable where that has a meaning (msync of a
	// shared file); a no-op for anonymous memory.
	Sync() error
}

// Resizer is a Replica whose size the primary's hello sets, for guests
// whose exact memory size only the primary knows (a Xen guest populates a
// few frames more than its config's memory). The backup resizes it only
// while it holds no committed checkpoint; the contents are then zero.
type Resizer interface {
	Replica
	Resize(size uint64) error
}

// Standby turns a committed replica into a running VM on failover.
type Standby interface {
	// Activate starts the guest from the replica memory and the device
	// state of the last committed checkpoint. It is called once, after
	// fencing succeeded.
	Activate(ctx context.Context, state []byte) error
	// Close releases the standby's resources (kills a standby process that
	// was never activated).
	Close() error
}

// DirtyTracking says how a Domain finds its dirty pages, and why it uses
// that mechanism (status JSON, the resilire_dirty_tracker metric, probes).
type DirtyTracking struct {
	Mechanism string `json:"mechanism"`
	Reason    string `json:"reason"`
}

// TrackingReporter is optionally implemented by a Domain that can find its
// dirty pages in more than one way.
type TrackingReporter interface {
	DirtyTracking() DirtyTracking
}
