// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"fmt"
	"net"
)

// PortSwitch is the backup's data-plane port (dataplane.Port through a
// small adapter): blocked while passive, set to pass on failover.
type PortSwitch interface {
	// Pass lets the guest's traffic through unbuffered.
	Pass() error
}

// FailoverConfig is what the backup does when the primary dies.
type FailoverConfig struct {
	// Fence must succeed before the guest is resumed here. Nil means no
	// failover at all, unless UnsafeNoFence.
	Fence Fencer
	// UnsafeNoFence allows going live without fencing (split-brain risk).
	UnsafeNoFence bool
	// Peer is the old primary's name for the fence command; empty means
	// the address it last connected from.
	Peer string
	// Port, if set, is switched to pass once the guest runs.
	Port PortSwitch
	// Inject, if set, re-injects the input log kept since the committed
	// epoch toward the resumed guest, after the port passes (InputReplay).
	Inject InputInjector
	// Announce, if set, sends gratuitous ARP for the guest's address.
	Announce Announcer
}

// failover runs: fence -> Standby.Activate(committed state) -> port pass
// -> gratuitous ARP. It never activates without a successful fence (or the
// explicit unsafe flag) and never twice.
func (b *Backup) failover(ctx context.Context, reason string) error {
	return b.failoverWith(ctx, reason, true, 0)
}

// failoverWith is failover; fence false is the switchover's (the primary
// stopped its guest and said so). round is the group's round the guest
// resumes from (0: not a group member): it selects the input to replay.
func (b *Backup) failoverWith(ctx context.Context, reason string, fence bool, round uint64) error {
	b.mu.Lock()
	if b.state != StateStandby || b.committed == 0 {
		st := b.state
		b.mu.Unlock()
		return fmt.Errorf("failover from state %s: %w", st, ErrNothingCommitted)
	}
	b.setStateLocked(StateFencing)
	cur := b.cur
	b.cur = nil
	epoch, state := b.committed, b.devState
	peer := b.cfg.Failover.Peer
	if peer == "" {
		peer = b.peer
	}
	b.mu.Unlock()
	if cur != nil { // stop the old session from writing before fencing
		cur.conn.Close()
		<-cur.done
	}
	fo := b.cfg.Failover
	req := FenceRequest{VM: b.cfg.VM, Peer: hostOf(peer), Epoch: epoch, Reason: reason}
	var err error
	switch {
	case !fence:
		b.log.Warn("no fencing: the primary handed the guest over", "vm", b.cfg.VM, "epoch", epoch)
	case fo.Fence != nil:
		b.log.Warn("fencing the old primary", "vm", b.cfg.VM, "peer", req.Peer, "epoch", epoch)
		err = fo.Fence.Fence(ctx, req)
	case fo.UnsafeNoFence:
		b.log.Error("going live WITHOUT fencing (--unsafe-no-fence): split brain possible", "vm", b.cfg.VM)
	default:
		err = fmt.Errorf("%w: refusing to go live (configure a fence command or --unsafe-no-fence)", ErrNoFence)
	}
	if err != nil {
		b.mu.Lock()
		b.setStateLocked(StateFenceFailed)
		b.mu.Unlock()
		b.log.Error("fencing failed: staying passive", "vm", b.cfg.VM, "epoch", epoch, "err", err)
		return err
	}
	if err := b.cfg.Standby.Activate(ctx, state); err != nil {
		return fmt.Errorf("activate epoch %d: %w", epoch, err)
	}
	b.mu.Lock()
	b.setStateLocked(StateActive)
	b.mu.Unlock()
	close(b.activated)
	b.log.Warn("guest resumed here", "vm", b.cfg.VM, "epoch", epoch)
	if fo.Port != nil {
		if err := fo.Port.Pass(); err != nil {
			return fmt.Errorf("port to pass after failover: %w", err)
		}
	}
	if fo.Inject != nil {
		frames := b.input.take(epoch, round)
		n, err := fo.Inject.Inject(frames)
		b.log.Warn("input log replayed to the guest", "vm", b.cfg.VM, "epoch", epoch, "frames", n, "kept", len(frames))
		if err != nil {
			return fmt.Errorf("replay input log: %w", err)
		}
	}
	if fo.Announce != nil {
		if err := fo.Announce.Announce(); err != nil {
			return fmt.Errorf("announce guest address: %w", err)
		}
	}
	return nil
}

// hostOf strips the port from a host:port address.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// Announcer tells the network where the guest now lives (gratuitous ARP:
// dataplane.Announcer).
type Announcer interface {
	Announce() error
}
