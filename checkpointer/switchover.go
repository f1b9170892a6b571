// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilire/resilire/checkpointer/wire"
)

// Planned switchover (host maintenance): the primary moves the guest to its
// backup with no lost acknowledged write and a pause of about one
// checkpoint plus the backup's activation.
//
//	primary: finish shipping -> Pause (for good) -> final checkpoint e -> ACK e -> Release(e)
//	         -> HANDOVER e ------------------------------> backup: e is its committed epoch?
//	                                 <-- HANDOVER_ACK e --  activate without fencing (the primary
//	         state handed-over, Run returns              stopped its guest), port pass, replay input
//
// Only the last step can leave the outcome unknown (HANDOVER sent, no
// HANDOVER_ACK): the guest then stays stopped here, and the backup either
// goes live on the handover or fences this host once its heartbeats stop.
// Failing before ACK e, the guest resumes here: the backup never went live.

// Switchover hands the guest over to the backup; it returns once the backup
// accepted (the primary then stops) or the attempt failed.
func (p *Primary) Switchover(ctx context.Context) error {
	if st := p.State(); st != StateProtected {
		return fmt.Errorf("%w: state %s", ErrNotProtected, st)
	}
	req := make(chan error, 1)
	select {
	case p.switchReq <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// answerSwitchover runs the handover for req (nothing in flight on s) and
// answers it; errHandedOver ends the epoch loop after a success.
func (p *Primary) answerSwitchover(ctx context.Context, s *session, req chan<- error) error {
	err := p.handover(ctx, s)
	req <- err
	if err == nil {
		return errHandedOver
	}
	return err
}

// handover runs the switchover on session s, with nothing in flight.
func (p *Primary) handover(ctx context.Context, s *session) error {
	if p.beforeHandover != nil {
		p.beforeHandover()
	}
	c := &checkpoint{start: time.Now()}
	if err := p.cfg.Domain.Pause(ctx); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	resume := func(cause error) error {
		if err := p.cfg.Domain.Resume(ctx); err != nil {
			return errors.Join(cause, fmt.Errorf("resume after a failed switchover: %w", err))
		}
		p.log.Warn("switchover failed: the guest runs on here", "vm", p.cfg.Domain.Name(), "err", cause)
		return cause
	}
	e, err := p.capture(ctx, &p.bufs[0], c)
	c.stats.Epoch, c.stats.Pages = e, len(c.pfns)
	if err == nil && c.disk != nil {
		err = p.cfg.Disk.Fill(c.disk)
	}
	if err != nil {
		return resume(err)
	}
	if err := p.ship(ctx, s, c); err != nil {
		return resume(err) // not acknowledged: the backup is not live
	}
	// Checkpoint e is the backup's and its output left; the guest stays
	// stopped here from now on.
	p.log.Warn("switchover: final checkpoint acknowledged, handing the guest over", "vm", p.cfg.Domain.Name(), "epoch", e)
	if err := s.l.Write(wire.Handover, wire.HandoverMsg{Epoch: e}.Marshal(), true); err != nil {
		return fmt.Errorf("%w: handover of epoch %d: %w", ErrSwitchoverUnknown, e, err)
	}
	a, err := s.waitHandoverAck(ctx, p.cfg.AckTimeout)
	if err == nil && a != e {
		err = fmt.Errorf("handover ack for epoch %d, sent %d", a, e)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSwitchoverUnknown, err)
	}
	c.stats.Total = time.Since(c.start)
	p.log.Warn("switchover done: the guest runs on the backup now", "vm", p.cfg.Domain.Name(), "epoch", e,
		"stopped_for", c.stats.Total.Round(time.Millisecond))
	p.setState(StateHandedOver)
	return nil
}

// errHandedOver ends protect after a switchover.
var errHandedOver = errors.New("guest handed over")

// onHandover accepts a switchover: the primary stopped its guest at the
// checkpoint this backup committed last. The acceptance goes out first,
// then the guest is activated here without fencing, as after a failover.
func (b *Backup) onHandover(ctx context.Context, l *wire.Conn, payload []byte) error {
	m, err := wire.ParseHandover(payload)
	if err != nil {
		return err
	}
	b.mu.Lock()
	st, committed := b.state, b.committed
	b.mu.Unlock()
	if st != StateStandby || committed != m.Epoch {
		return fmt.Errorf("handover of epoch %d, backup %s at epoch %d: %w", m.Epoch, st, committed, wire.ErrSession)
	}
	if err := l.Write(wire.HandoverAck, m.Marshal(), true); err != nil {
		// The primary stays stopped and stops beating: the ordinary
		// failover (with fencing) takes over.
		return nil
	}
	b.log.Warn("switchover: the primary handed the guest over", "vm", b.cfg.VM, "epoch", m.Epoch)
	// The session's goroutine must end before failover closes it.
	go func() {
		if err := b.failoverWith(ctx, "switchover", false, 0); err != nil {
			b.log.Error("switchover: activation failed", "vm", b.cfg.VM, "epoch", m.Epoch, "err", err)
			return
		}
		b.cfg.Listener.Close()
	}()
	return nil
}

// waitHandoverAck waits for the backup's HANDOVER_ACK. The backup closes
// the session right after sending it, so an ack already read wins over
// the session's end.
func (s *session) waitHandoverAck(ctx context.Context, timeout time.Duration) (uint64, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-s.handoverAck:
		return a, nil
	case <-s.dead:
		select {
		case a := <-s.handoverAck:
			return a, nil
		default:
			return 0, s.err
		}
	case <-t.C:
		return 0, fmt.Errorf("no handover ack after %v", timeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
