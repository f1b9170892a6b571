// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/wire"
)

// The primary's epoch, as in the design's diagram:
//
//	tick -> Pause -> Output.Advance -> HarvestDirty + ReadPages (copy) + SaveState + disk cut
//	     [-> Hold: a stop-the-world group round waits for every member's capture]
//	     -> Resume                      (the pause, "type II downtime", ends here)
//	     -> disk Fill (copy-on-write) -> Encode -> stream checkpoint e -> wait ACK e -> Output.Release(e)
//
// The disk Fill ends take (the guest already runs), so it never waits
// behind the shipping of an earlier epoch.
//
// Only the capture needs the guest stopped; encoding and shipping run
// while it computes the next epoch. Release(e) happens after ACK e and
// nowhere else (invariant 1). With Pipeline, epoch e+1 is taken while e
// is still being shipped (pipeline.go); shipping stays strictly in order.

// EpochStats is what one committed epoch measured.
type EpochStats struct {
	Epoch uint64
	Pages int   // dirty pages carried
	Bytes int64 // checkpoint bytes on the wire (memory codec)
	// DiskBytes is the disk data the epoch wrote, DiskWireBytes its DISK
	// frames' payload (records' headers included).
	DiskBytes, DiskWireBytes int64
	Pause                    time.Duration // Domain.Pause called to Domain.Resume returned (type II downtime)
	Stop                     time.Duration // of which inside Domain.Pause
	Ack                      time.Duration // END sent to ACK received
	Total                    time.Duration // pause to release
}

// checkpoint is one epoch taken from the paused guest, not yet shipped.
type checkpoint struct {
	stats EpochStats
	start time.Time
	pfns  []uint64
	data  []byte
	state []byte
	scrub []byte // SCRUB payload to send after END, nil if none
	disk  *disk.Delta
}

// capBuf holds the pages of one captured epoch; the pipelined loop
// alternates two of them (one being shipped, one being filled).
type capBuf struct {
	pfns []uint64
	data []byte
	high int // decaying high-water mark of data's length (fit)
}

// minCapBuf is what fit always lets a capture buffer keep.
const minCapBuf = 4 << 20

// fit runs before each pause. A buffer grown far beyond recent epochs (the
// full checkpoint after a reset, a burst of writes) would otherwise stay
// at that size for the agent's life, in dom0: once the high-water mark,
// which decays by an eighth per epoch, is under a quarter of its capacity,
// the buffer is replaced by one of twice that mark.
func (b *capBuf) fit() {
	keep := max(2*b.high, minCapBuf)
	if cap(b.data) > 2*keep {
		b.data = make([]byte, 0, keep)
	}
	b.high -= b.high / 8
}

// runEpoch takes, ships and commits one checkpoint. A transport failure is
// returned wrapped in ErrBackupLost; anything else is fatal for the agent.
func (p *Primary) runEpoch(ctx context.Context, s *session) (EpochStats, error) {
	c, err := p.take(ctx, s, &p.bufs[0])
	if err != nil || c == nil { // nil, nil: skipped (pause)
		return EpochStats{}, err
	}
	return c.stats, p.ship(ctx, s, c)
}

// take is steps 1-3: the only part that needs the guest stopped. It
// returns nil and no error when the epoch is skipped (pause).
func (p *Primary) take(ctx context.Context, s *session, buf *capBuf) (*checkpoint, error) {
	c := &checkpoint{start: time.Now()}
	r := &c.stats
	buf.fit()

	// 1. Pause: from here the guest's memory and devices do not change.
	if ok, err := p.pause(ctx); !ok {
		return nil, err
	}
	r.Stop = time.Since(c.start)
	// 2. Close the output epoch, harvest and copy, save device state.
	e, cerr := p.capture(ctx, buf, c)
	if cerr == nil && p.cfg.Hold != nil {
		cerr = p.cfg.Hold(ctx, e)
	}
	// 3. Resume: the pause ends even if the capture failed.
	if err := p.cfg.Domain.Resume(ctx); err != nil {
		return nil, fmt.Errorf("resume after epoch %d: %w", e, err)
	}
	r.Epoch, r.Pages, r.Pause = e, len(c.pfns), time.Since(c.start)
	if cerr != nil {
		return nil, cerr
	}
	if c.disk != nil {
		// The guest runs again: read the cut's disk blocks as they were at
		// the cut (the export keeps those it overwrites meanwhile).
		if err := p.cfg.Disk.Fill(c.disk); err != nil {
			return nil, fmt.Errorf("read disk blocks of epoch %d: %w", e, err)
		}
	}
	if e <= s.committed {
		// The backup would refuse it as a replay, forever: say why.
		return nil, fmt.Errorf("%w: backup holds epoch %d, this primary is at %d: "+
			"it protects another primary or an older run; restart the standby", ErrEpochBehind, s.committed, e)
	}
	p.observeTracking()
	p.m.Pause.Observe(r.Pause.Seconds())
	p.m.DirtyPages.Add(float64(len(c.pfns)))
	return c, nil
}

// pause stops the guest for an epoch. A refused pause (ErrPauseRefused:
// the guest was left running, unchanged) skips the epoch, at most
// MaxSkippedEpochs in a row: ok is false with no error, and nothing was
// advanced, captured or released, so the epoch's output stays held and
// goes out with the next commit. Any other failure, or one refusal too
// many, is an error.
func (p *Primary) pause(ctx context.Context) (ok bool, err error) {
	err = p.cfg.Domain.Pause(ctx)
	switch {
	case err == nil:
		p.skipped = 0
		return true, nil
	case !errors.Is(err, ErrPauseRefused) || ctx.Err() != nil:
		return false, fmt.Errorf("pause: %w", err)
	case p.skipped >= p.cfg.MaxSkippedEpochs:
		return false, fmt.Errorf("pause: %w (after %d epochs skipped in a row)", err, p.skipped)
	}
	p.skipped++
	p.m.Checkpoints.WithLabelValues("skipped").Inc()
	p.log.Warn("epoch skipped: the guest could not be paused", "vm", p.cfg.Domain.Name(),
		"in_a_row", p.skipped, "max", p.cfg.MaxSkippedEpochs, "err", err)
	return false, nil
}

// ship is steps 4-6, while the guest runs. Checkpoints are shipped one at
// a time, in epoch order, so releases are in order too.
func (p *Primary) ship(ctx context.Context, s *session, c *checkpoint) error {
	r := &c.stats
	e := r.Epoch
	// 4. Encode and stream checkpoint e, after the input log of the
	// epochs up to e (InputQueue).
	if p.cfg.Input != nil {
		sctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
		err := p.cfg.Input.sync(sctx)
		cancel()
		if err != nil {
			return s.lost(err)
		}
	}
	m, st, err := s.send(p.enc, wire.Consistent, e, c.pfns, c.data, c.state, c.disk)
	if err != nil {
		return err
	}
	r.Bytes, r.DiskWireBytes = st.WireBytes, st.DiskWireBytes
	p.m.WireBytes.Add(float64(st.WireBytes))
	if c.scrub != nil {
		// Right after END: the backup compares with epoch e applied.
		if err := s.l.Write(wire.Scrub, c.scrub, true); err != nil {
			return s.lost(err)
		}
	}

	// 5. Wait for the backup to apply checkpoint e.
	sent := time.Now()
	if err := s.waitAck(ctx, m, p.cfg.AckTimeout); err != nil {
		return err
	}
	r.Ack = time.Since(sent)
	p.m.AckLatency.Observe(r.Ack.Seconds())
	p.m.Checkpoints.WithLabelValues("acked").Inc()
	p.setAcked(e)
	if p.cfg.Disk != nil {
		p.cfg.Disk.Acked(e)
	}

	// 6. Output commit: the frames of epochs <= e may leave now.
	if err := p.cfg.Output.Release(e); err != nil {
		return fmt.Errorf("release epoch %d: %w", e, err)
	}
	r.Total = time.Since(c.start)
	p.m.Epoch.Observe(r.Total.Seconds())
	p.observeOutput()
	if p.State() != StateProtected {
		p.log.Info("guest protected", "vm", p.cfg.Domain.Name(), "epoch", e)
		p.setState(StateProtected)
	}
	if p.cfg.OnEpoch != nil {
		p.cfg.OnEpoch(*r)
	}
	p.log.Debug("epoch committed", "vm", p.cfg.Domain.Name(), "epoch", e, "pages", r.Pages,
		"bytes", r.Bytes, "dur", r.Pause, "ack", r.Ack)
	return nil
}

// capture runs with the guest paused: everything the checkpoint needs from
// a stopped guest, and nothing else. It fills buf and c.
func (p *Primary) capture(ctx context.Context, buf *capBuf, c *checkpoint) (uint64, error) {
	e, err := p.cfg.Output.Advance()
	if err != nil {
		return 0, fmt.Errorf("advance output epoch: %w", err)
	}
	if buf.pfns, err = p.cfg.Domain.HarvestDirty(ctx, buf.pfns[:0]); err != nil {
		return e, fmt.Errorf("harvest epoch %d: %w", e, err)
	}
	var all bool
	buf.pfns, all = p.takeRepair(buf.pfns)
	if p.fullNext || all {
		// After a reset with a backup that still holds an older checkpoint:
		// one consistent checkpoint carrying every page (see sync.go).
		buf.pfns = allPages(buf.pfns[:0], p.cfg.Domain.MemorySize()/PageSize)
	}
	if n := len(buf.pfns) * PageSize; cap(buf.data) < n {
		buf.data = make([]byte, n)
	}
	buf.data = buf.data[:len(buf.pfns)*PageSize]
	buf.high = max(buf.high, len(buf.data))
	if err := p.cfg.Domain.ReadPages(buf.pfns, buf.data); err != nil {
		return e, fmt.Errorf("copy pages of epoch %d: %w", e, err)
	}
	state, err := p.cfg.Domain.SaveState(ctx)
	if err != nil {
		return e, fmt.Errorf("save state of epoch %d: %w", e, err)
	}
	if p.cfg.Disk != nil {
		// The guest is paused and its disk requests drained: the cut is
		// exact. Its blocks are read after the resume (ship: Fill).
		if c.disk, err = p.cfg.Disk.CutDeferred(e); err != nil {
			return e, fmt.Errorf("cut disk of epoch %d: %w", e, err)
		}
		c.stats.DiskBytes = int64(c.disk.Bytes())
	}
	p.fullNext = false
	if p.scrubDue() {
		if c.scrub, err = p.takeScrub(e); err != nil {
			return e, err
		}
	}
	c.pfns, c.data, c.state = buf.pfns, buf.data, state
	return e, nil
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
