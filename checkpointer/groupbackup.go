// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"errors"
	"fmt"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"
)

// A VDEchp group member's backup (BackupConfig.Group) keeps its stable copy
// behind, as the design asks: checkpoint r is verified, staged and
// acknowledged, but applied only when checkpoint r+1 begins. A group
// member takes its checkpoints on the coordinator's rounds only, and the
// coordinator starts round r+1 only once every member holds round r.
//
// The group resumes from round R only once every backup holds round R+1
// (group.Coordinator): frames that crossed cut R in transit reached their
// receivers in round R+1, and their input-log records are shipped ahead
// of the receivers' checkpoints of R+1. So the backup must be able to go
// back one applied checkpoint: applying checkpoint r first saves the
// replica bytes it overwrites (the undo of r), and input-log frames are
// kept from the epoch before r. When a member fails, every backup is told
// the epoch of round R (ActivateAt): the staged checkpoint is applied if
// it is R's, dropped if later, and the last applied one undone if R is the
// one before it. Every member then resumes from the same round, the
// members whose primary is still alive included.

// ErrGroupRecovery is a group recovery order this backup cannot follow.
var ErrGroupRecovery = errors.New("group recovery")

// pendingCheckpoint is an acknowledged checkpoint the group has not
// committed yet.
type pendingCheckpoint struct {
	staged codec.Staged
	m      wire.CheckpointMsg
}

// undoRound is what undoes the last applied checkpoint: the replica bytes
// it overwrote and the checkpoint it replaced (epoch 0: none).
type undoRound struct {
	epoch    uint64
	devState []byte
	extents  []uint64 // offset, length pairs into data
	data     []byte
}

func (u *undoRound) clear() {
	u.epoch, u.devState, u.extents, u.data = 0, nil, u.extents[:0], u.data[:0]
}

// saveUndoLocked saves what undoes staged before it is applied, in group
// mode only. An inconsistent checkpoint (the initial sync) cannot be
// undone to anything.
func (b *Backup) saveUndoLocked(staged codec.Staged, m wire.CheckpointMsg) {
	u := &b.undo
	u.clear()
	if !b.cfg.Group || m.Kind != wire.Consistent || b.committed == 0 {
		return
	}
	mem := b.cfg.Replica.Memory()
	staged.Extents(func(off, n uint64) {
		u.extents = append(u.extents, off, n)
		u.data = append(u.data, mem[off:off+n]...)
	})
	u.epoch, u.devState = b.committed, b.devState
}

// undoLocked puts the replica back at the checkpoint before the last
// applied one.
func (b *Backup) undoLocked() error {
	u := &b.undo
	mem := b.cfg.Replica.Memory()
	var at uint64
	for i := 0; i < len(u.extents); i += 2 {
		off, n := u.extents[i], u.extents[i+1]
		copy(mem[off:off+n], u.data[at:at+n])
		at += n
	}
	if err := b.cfg.Replica.Sync(); err != nil {
		err = fmt.Errorf("sync replica after undoing epoch %d: %w", b.committed, err)
		b.committed, b.devState = 0, nil
		u.clear()
		return err
	}
	b.log.Warn("group recovery: undid the last applied checkpoint", "vm", b.cfg.VM, "from", b.committed, "to", u.epoch, "bytes", at)
	b.committed, b.devState = u.epoch, u.devState
	u.clear()
	return nil
}

// inputFloorLocked is the oldest epoch the replica may still be put back
// at: input-log frames from it on are kept.
func (b *Backup) inputFloorLocked() uint64 {
	if b.undo.epoch != 0 {
		return b.undo.epoch
	}
	return b.committed
}

// stage keeps a verified checkpoint for the group's commit; a consistent
// checkpoint staged earlier is applied first (see above).
func (b *Backup) stage(s *backupSession, staged codec.Staged, m wire.CheckpointMsg) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.writableLocked(s, m); err != nil {
		return err
	}
	if m.Kind != wire.Consistent {
		return b.applyLocked(staged, m)
	}
	b.pending = &pendingCheckpoint{staged: staged, m: m}
	return nil
}

// applyPending applies the staged checkpoint, if any, before the next one
// is decoded against the replica.
func (b *Backup) applyPending(s *backupSession) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pending
	if p == nil {
		return nil
	}
	if err := b.writableLocked(s, p.m); err != nil {
		return err
	}
	b.pending = nil
	return b.applyLocked(p.staged, p.m)
}

// unreachableLocked is the refusal of an order for an epoch this backup
// cannot put its replica at.
func (b *Backup) unreachableLocked(epoch uint64) error {
	staged := uint64(0)
	if b.pending != nil {
		staged = b.pending.m.Epoch
	}
	return fmt.Errorf("%w: %s asked for epoch %d, holds %d committed (undoable to %d) and %d staged", ErrGroupRecovery, b.cfg.VM, epoch, b.committed, b.undo.epoch, staged)
}

// placement is how the replica is put at a recovery order's epoch.
type placement int

const (
	unreachable placement = iota // it cannot
	applyStaged                  // apply the staged checkpoint: it is that epoch's
	asCommitted                  // it is the committed epoch (drop what is staged)
	undoLast                     // undo the last applied checkpoint
)

func (b *Backup) placementLocked(epoch uint64) placement {
	switch {
	case epoch == 0:
		return unreachable
	case b.pending != nil && b.pending.m.Epoch == epoch:
		return applyStaged
	case b.committed == epoch:
		return asCommitted
	case b.undo.epoch == epoch:
		return undoLast
	}
	return unreachable
}

// orderDoneLocked checks a recovery order for epoch against what this
// backup is: done if the guest already runs here from epoch (never
// resumed twice), an error if it is not a group member's backup or runs
// another epoch.
func (b *Backup) orderDoneLocked(epoch uint64) (done bool, err error) {
	switch {
	case !b.cfg.Group:
		return false, fmt.Errorf("%w: backup of %s is not a group member's", ErrGroupRecovery, b.cfg.VM)
	case b.state == StateActive || b.state == StateFencing:
		if b.committed == epoch {
			return true, nil
		}
		return false, fmt.Errorf("%w: %s already %s at epoch %d, asked for %d", ErrGroupRecovery, b.cfg.VM, b.state, b.committed, epoch)
	}
	return false, nil
}

// CanActivateAt says whether ActivateAt would follow an order for epoch:
// the replica can be put at it (staged, committed or undoable), or the
// guest already runs here from it. It changes nothing: the group's
// recovery asks every backup before it stops any live member.
func (b *Backup) CanActivateAt(epoch uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if done, err := b.orderDoneLocked(epoch); done || err != nil {
		return err
	}
	if b.placementLocked(epoch) == unreachable {
		return b.unreachableLocked(epoch)
	}
	return nil
}

// ActivateAt is the group's recovery order: resume the guest here from
// epoch, the member's checkpoint of the group's last committed round
// (round; the input log replays what other members sent up to it). The
// current session is stopped first (the primary may still be alive), the
// staged checkpoint is applied or dropped so that the replica holds exactly
// epoch, then the usual failover runs: fence, activate, port, input replay.
// An order for the epoch already active here succeeds (the guest is never
// resumed twice); any other mismatch is refused and nothing runs (the
// session was stopped: the primary reconnects and resynchronises).
func (b *Backup) ActivateAt(ctx context.Context, round, epoch uint64) error {
	b.mu.Lock()
	if done, err := b.orderDoneLocked(epoch); done || err != nil {
		b.mu.Unlock()
		return err
	}
	b.recovering = true // no new session may write from now on
	cur := b.cur
	b.cur = nil
	b.mu.Unlock()
	if cur != nil {
		cur.conn.Close()
		<-cur.done
	}
	b.mu.Lock()
	p := b.pending
	var err error
	switch place := b.placementLocked(epoch); place {
	case applyStaged:
		err = b.applyLocked(p.staged, p.m)
	case asCommitted, undoLast:
		if p != nil {
			b.log.Warn("group recovery: dropping a checkpoint the group never committed", "vm", b.cfg.VM, "epoch", p.m.Epoch)
		}
		if place == undoLast {
			err = b.undoLocked()
		}
	default:
		err = b.unreachableLocked(epoch)
	}
	if err != nil {
		b.recovering = false // a refused order changes nothing: the primary may reconnect
	} else {
		b.pending = nil
	}
	b.mu.Unlock()
	if err != nil {
		return err
	}
	b.log.Warn("group recovery: resuming the guest from the group's last committed round", "vm", b.cfg.VM, "epoch", epoch)
	if err := b.failoverWith(ctx, "group-recovery", true, round); err != nil {
		return err
	}
	b.cfg.Listener.Close()
	return nil
}
