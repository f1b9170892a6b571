// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"fmt"

	"github.com/resilire/resilire/checkpointer/wire"
)

// Initial synchronisation, run at the start of every session:
//
//   - A backup with nothing committed gets iterative pre-copy: all memory
//     streamed while the guest runs (round 0), then the pages dirtied
//     meanwhile (rounds 1..PrecopyRounds, stopping early once fewer than
//     PrecopyStopPages are dirty). The backup applies these "precopy"
//     checkpoints but does not treat them as a consistent state.
//   - The first ordinary epoch then carries the last dirty pages with the
//     guest paused: the stop-and-copy, and the first consistent checkpoint.
//   - A backup that still holds a committed checkpoint (this primary lost
//     it briefly) must keep that checkpoint usable until a new consistent
//     one replaces it, so it gets no pre-copy: the first epoch carries
//     every page (a longer pause, once).

// PrecopyChecker is optionally implemented by a Domain whose dirty log
// cannot support pre-copy. A log that compares page contents with a
// snapshot taken at the last harvest (the QEMU driver hashes RAM) misses a
// page that changed after it was copied and changed back before the next
// harvest: with pages read while the guest runs, the backup would keep the
// intermediate content. Such a domain returns false, and its first
// checkpoint copies every page in one pause instead.
type PrecopyChecker interface {
	PrecopySafe() bool
}

func (p *Primary) precopySafe() bool {
	if p.cfg.PrecopyRounds < 0 {
		return false
	}
	if c, ok := p.cfg.Domain.(PrecopyChecker); ok {
		return c.PrecopySafe()
	}
	return true
}

// initialSync brings the backup to the point where ordinary epochs apply.
func (p *Primary) initialSync(ctx context.Context, s *session) error {
	p.enc.Reset()
	p.scrub.mu.Lock()
	p.scrub.pending = 0 // a report of the old session never comes
	p.scrub.mu.Unlock()
	if p.cfg.Disk != nil {
		if err := p.syncDisk(ctx, s); err != nil {
			return err
		}
	}
	// Clear the log: everything written from here on is caught by a later harvest.
	var err error
	if p.pfns, err = p.cfg.Domain.HarvestDirty(ctx, p.pfns[:0]); err != nil {
		return fmt.Errorf("harvest before sync: %w", err)
	}
	if s.committed > 0 {
		p.log.Info("backup holds a committed checkpoint: full first checkpoint, no pre-copy",
			"vm", p.cfg.Domain.Name(), "epoch", s.committed)
		p.fullNext = true
		return nil
	}
	if !p.precopySafe() {
		p.log.Info("no pre-copy for this domain: the first checkpoint carries every page",
			"vm", p.cfg.Domain.Name(), "pages", p.cfg.Domain.MemorySize()/PageSize)
		p.fullNext = true
		return nil
	}
	pages := p.cfg.Domain.MemorySize() / PageSize
	if err := p.precopy(ctx, s, allPages(nil, pages), true); err != nil {
		return err
	}
	for round := 1; round <= p.cfg.PrecopyRounds; round++ {
		dirty, err := p.cfg.Domain.HarvestDirty(ctx, nil)
		if err != nil {
			return fmt.Errorf("harvest pre-copy round %d: %w", round, err)
		}
		if len(dirty) < p.cfg.PrecopyStopPages {
			// Few enough: send them and let the first epoch stop and copy.
			return p.precopy(ctx, s, dirty, false)
		}
		p.log.Debug("pre-copy round", "vm", p.cfg.Domain.Name(), "pages", len(dirty), "round", round)
		if err := p.precopy(ctx, s, dirty, false); err != nil {
			return err
		}
	}
	return nil
}

// precopy streams pfns, read while the guest runs, in bounded chunks, each
// one a precopy checkpoint acknowledged by the backup. One chunk's ACK is
// awaited after the next one is sent: the backup applies a chunk while the
// next is read and encoded, and only one chunk buffer exists (send returns
// once the chunk is on the wire).
func (p *Primary) precopy(ctx context.Context, s *session, pfns []uint64, progress bool) error {
	total := uint64(len(pfns))
	var (
		prev    wire.CheckpointMsg
		pending int // pages of prev, 0 if none
		done    int
	)
	acked := func() error {
		if pending == 0 {
			return nil
		}
		if err := s.waitAck(ctx, prev, p.cfg.AckTimeout); err != nil {
			return err
		}
		done, pending = done+pending, 0
		if progress && p.cfg.Progress != nil {
			p.cfg.Progress(uint64(done), total)
		}
		return nil
	}
	for sent := 0; sent < len(pfns); {
		chunk := pfns[sent:min(len(pfns), sent+precopyChunkPages)]
		data := p.pageBuf(len(chunk))
		if err := p.cfg.Domain.ReadPages(chunk, data); err != nil {
			return fmt.Errorf("pre-copy read: %w", err)
		}
		m, st, err := s.send(p.enc, wire.Precopy, 0, chunk, data, nil, nil)
		if err != nil {
			return err
		}
		p.m.WireBytes.Add(float64(st.WireBytes))
		sent += len(chunk)
		if err := acked(); err != nil {
			return err
		}
		prev, pending = m, len(chunk)
		if err := p.talkDuringSync(ctx); err != nil {
			return err
		}
	}
	return acked()
}
