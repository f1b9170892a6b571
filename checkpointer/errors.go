// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"errors"
)

// Errors returned by the engine. Callers test them with errors.Is.
var (
	// ErrReplay: a checkpoint's epoch or sequence was not newer than the last one.
	ErrReplay = errors.New("old or replayed checkpoint")
	// ErrBackupLost: the backup stopped answering (timeout or broken stream).
	ErrBackupLost = errors.New("backup lost")
	// ErrNoFence: failover needs a fence command unless explicitly unsafe.
	ErrNoFence = errors.New("no fence command configured")
	// ErrFenceFailed: the fence command did not exit 0; the backup stays passive.
	ErrFenceFailed = errors.New("fencing failed")
	// ErrEpochBehind: the backup already holds a newer epoch than the primary's.
	ErrEpochBehind = errors.New("primary epoch behind the backup")
	// ErrNothingCommitted: failover was asked before any consistent checkpoint.
	ErrNothingCommitted = errors.New("no committed checkpoint")
	// ErrNotProtected: a switchover was asked while no backup holds the
	// guest's latest checkpoint.
	ErrNotProtected = errors.New("guest not protected")
	// ErrSwitchoverUnknown: the backup acknowledged the final checkpoint
	// but not the handover; it goes live either way (on the handover, or
	// by fencing this host when it stops hearing from it), so the guest
	// stays stopped here.
	ErrSwitchoverUnknown = errors.New("switchover outcome unknown")
)
