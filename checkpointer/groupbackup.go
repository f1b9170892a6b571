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
// one round behind, as the design asks: checkpoint r is verified, staged
// and acknowledged, but applied only when checkpoint r+1 begins. A group
// member takes its checkpoints on the coordinator's rounds only, and the
// coordinator starts round r+1 only once every member holds round r, so
// the next checkpoint on the session proves the group committed this one.
// When a member fails, every backup of the group is told the epoch of the
// last committed round (ActivateAt): the staged checkpoint is applied if it
// is that round's, dropped if it is a later one. Every member then resumes
// from the same round, the members whose primary is still alive included.

// ErrGroupRecovery is a group recovery order this backup cannot follow.
var ErrGroupRecovery = errors.New("group recovery")

// pendingCheckpoint is an acknowledged checkpoint the group has not
// committed yet.
type pendingCheckpoint struct {
	staged codec.Staged
	m      wire.CheckpointMsg
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
	if !b.cfg.Group {
		b.mu.Unlock()
		return fmt.Errorf("%w: backup of %s is not a group member's", ErrGroupRecovery, b.cfg.VM)
	}
	if b.state == StateActive || b.state == StateFencing {
		st, committed := b.state, b.committed
		b.mu.Unlock()
		if committed == epoch {
			return nil
		}
		return fmt.Errorf("%w: %s already %s at epoch %d, asked for %d", ErrGroupRecovery, b.cfg.VM, st, committed, epoch)
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
	switch {
	case p != nil && p.m.Epoch == epoch:
		err = b.applyLocked(p.staged, p.m)
	case b.committed == epoch && epoch != 0:
		if p != nil {
			b.log.Warn("group recovery: dropping a checkpoint the group never committed", "vm", b.cfg.VM, "epoch", p.m.Epoch)
		}
	default:
		staged := uint64(0)
		if p != nil {
			staged = p.m.Epoch
		}
		err = fmt.Errorf("%w: %s asked for epoch %d, holds %d committed and %d staged", ErrGroupRecovery, b.cfg.VM, epoch, b.committed, staged)
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
