// SPDX-License-Identifier: Apache-2.0

package checkpointer

import "errors"

// Errors returned by the engine. Callers test them with errors.Is.
var (
	// ErrCorrupt: a checkpoint or frame failed a length, range or checksum check.
	ErrCorrupt = errors.New("corrupt checkpoint")
	// ErrTruncated: the stream ended inside a checkpoint.
	ErrTruncated = errors.New("truncated checkpoint")
	// ErrFrame: a transport frame was malformed, unknown or too large.
	ErrFrame = errors.New("bad frame")
	// ErrSession: the session hello was refused (wrong VM, size, version).
	ErrSession = errors.New("session refused")
	// ErrReplay: a checkpoint's epoch or sequence was not newer than the last one.
	ErrReplay = errors.New("old or replayed checkpoint")
	// ErrRefused: the peer refused a checkpoint and said why.
	ErrRefused = errors.New("refused by peer")
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
)
