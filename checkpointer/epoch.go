// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"fmt"
	"time"
)

// The primary's epoch, as in the design's diagram:
//
//	tick -> Pause -> Output.Advance -> HarvestDirty + ReadPages (copy) + SaveState
//	     -> Resume                      (the pause, "type II downtime", ends here)
//	     -> Encode -> stream checkpoint e -> wait ACK e -> Output.Release(e)
//
// Only the capture needs the guest stopped; encoding and shipping run
// while it computes the next epoch. Release(e) happens after ACK e and
// nowhere else (invariant 1).

// EpochStats is what one committed epoch measured.
type EpochStats struct {
	Epoch uint64
	Pages int           // dirty pages carried
	Bytes int64         // checkpoint bytes on the wire
	Pause time.Duration // Domain.Pause called to Domain.Resume returned (type II downtime)
	Stop  time.Duration // of which inside Domain.Pause
	Ack   time.Duration // END sent to ACK received
	Total time.Duration // pause to release
}

// runEpoch takes, ships and commits one checkpoint. A transport failure is
// returned wrapped in ErrBackupLost; anything else is fatal for the agent.
func (p *Primary) runEpoch(ctx context.Context, s *session) (EpochStats, error) {
	start := time.Now()
	var r EpochStats

	// 1. Pause: from here the guest's memory and devices do not change.
	if err := p.cfg.Domain.Pause(ctx); err != nil {
		return r, fmt.Errorf("pause: %w", err)
	}
	r.Stop = time.Since(start)
	// 2. Close the output epoch, harvest and copy, save device state.
	e, pfns, data, state, cerr := p.capture(ctx)
	// 3. Resume: the pause ends even if the capture failed.
	if err := p.cfg.Domain.Resume(ctx); err != nil {
		return r, fmt.Errorf("resume after epoch %d: %w", e, err)
	}
	r.Epoch, r.Pages, r.Pause = e, len(pfns), time.Since(start)
	if cerr != nil {
		return r, cerr
	}
	if e <= s.committed {
		// The backup would refuse it as a replay, forever: say why.
		return r, fmt.Errorf("%w: backup holds epoch %d, this primary is at %d: "+
			"it protects another primary or an older run; restart the standby", ErrEpochBehind, s.committed, e)
	}
	p.m.Pause.Observe(r.Pause.Seconds())
	p.m.DirtyPages.Add(float64(len(pfns)))

	// 4. Encode and stream checkpoint e while the guest runs.
	m, st, err := s.send(p.enc, kindEpoch, e, pfns, data, state)
	if err != nil {
		return r, err
	}
	r.Bytes = st.WireBytes
	p.m.WireBytes.Add(float64(st.WireBytes))

	// 5. Wait for the backup to apply checkpoint e.
	sent := time.Now()
	if err := s.waitAck(ctx, m, p.cfg.AckTimeout); err != nil {
		return r, err
	}
	r.Ack = time.Since(sent)
	p.m.AckLatency.Observe(r.Ack.Seconds())
	p.m.Checkpoints.WithLabelValues("acked").Inc()
	p.setAcked(e)

	// 6. Output commit: the frames of epochs <= e may leave now.
	if err := p.cfg.Output.Release(e); err != nil {
		return r, fmt.Errorf("release epoch %d: %w", e, err)
	}
	r.Total = time.Since(start)
	p.m.Epoch.Observe(r.Total.Seconds())
	p.observeOutput()
	if p.cfg.OnEpoch != nil {
		p.cfg.OnEpoch(r)
	}
	p.log.Debug("epoch committed", "vm", p.cfg.Domain.Name(), "epoch", e, "pages", r.Pages,
		"bytes", r.Bytes, "dur", r.Pause, "ack", r.Ack)
	return r, nil
}

// capture runs with the guest paused: everything the checkpoint needs from
// a stopped guest, and nothing else.
func (p *Primary) capture(ctx context.Context) (uint64, []uint64, []byte, []byte, error) {
	e, err := p.cfg.Output.Advance()
	if err != nil {
		return 0, nil, nil, nil, fmt.Errorf("advance output epoch: %w", err)
	}
	if p.fullNext {
		// After a reset with a backup that still holds an older checkpoint:
		// one consistent checkpoint carrying every page (see sync.go).
		if p.pfns, err = p.cfg.Domain.HarvestDirty(ctx, p.pfns[:0]); err != nil {
			return e, nil, nil, nil, fmt.Errorf("harvest epoch %d: %w", e, err)
		}
		p.pfns = allPages(p.pfns[:0], p.cfg.Domain.MemorySize()/PageSize)
	} else if p.pfns, err = p.cfg.Domain.HarvestDirty(ctx, p.pfns[:0]); err != nil {
		return e, nil, nil, nil, fmt.Errorf("harvest epoch %d: %w", e, err)
	}
	data := p.pageBuf(len(p.pfns))
	if err := p.cfg.Domain.ReadPages(p.pfns, data); err != nil {
		return e, nil, nil, nil, fmt.Errorf("copy pages of epoch %d: %w", e, err)
	}
	state, err := p.cfg.Domain.SaveState(ctx)
	if err != nil {
		return e, nil, nil, nil, fmt.Errorf("save state of epoch %d: %w", e, err)
	}
	p.fullNext = false
	return e, p.pfns, data, state, nil
}

// pageBuf returns a reused buffer for n pages.
func (p *Primary) pageBuf(n int) []byte {
	if cap(p.buf) < n*PageSize {
		p.buf = make([]byte, n*PageSize)
	}
	return p.buf[:n*PageSize]
}

// allPages appends every page number below n.
func allPages(dst []uint64, n uint64) []uint64 {
	for i := uint64(0); i < n; i++ {
		dst = append(dst, i)
	}
	return dst
}
