// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"fmt"

	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/wire"
)

// diskCopyChunk is the disk data of one pre-copy checkpoint.
const diskCopyChunk = 8 << 20

// syncDisk brings the backup's disk to where ordinary epochs apply:
//
//   - A backup with nothing committed gets the whole image while the guest
//     runs (pre-copy checkpoints carrying only disk records, each acked),
//     with writes tracked from the start: the first consistent checkpoint
//     carries every block written meanwhile. The guest is never paused for
//     the copy, whatever the disk's size.
//   - A backup at our last acknowledged epoch, or at a later one whose ACK
//     was lost, gets the cuts after its epoch again in the first checkpoint.
//   - Any other backup holds a committed checkpoint that must stay usable
//     (no pre-copy over it): the first checkpoint carries the whole disk,
//     in one pause.
func (p *Primary) syncDisk(ctx context.Context, s *session) error {
	d := p.cfg.Disk
	if s.committed == 0 {
		return p.precopyDisk(ctx, s, d)
	}
	if d.Resend(s.committed) {
		p.log.Info("backup holds an unknown checkpoint: the first one carries the whole disk",
			"vm", p.cfg.Domain.Name(), "epoch", s.committed, "bytes", d.Size())
	}
	return nil
}

func (p *Primary) precopyDisk(ctx context.Context, s *session, d DiskSource) error {
	d.BeginCopy()
	size := d.Size()
	buf := make([]byte, min(diskCopyChunk, size))
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		if _, err := d.ReadAt(buf[:n], off); err != nil {
			return fmt.Errorf("disk pre-copy read at %d: %w", off, err)
		}
		dd := &disk.Delta{Extents: []disk.Extent{{Off: off, Len: n}}, Data: buf[:n]}
		m, st, err := s.send(p.enc, wire.Precopy, 0, nil, nil, nil, dd)
		if err != nil {
			return err
		}
		p.m.WireBytes.Add(float64(st.WireBytes + st.DiskWireBytes))
		if err := s.waitAck(ctx, m, p.cfg.AckTimeout); err != nil {
			return err
		}
		off += n
		if p.cfg.DiskProgress != nil {
			p.cfg.DiskProgress(uint64(off), uint64(size))
		}
		if err := p.talkDuringSync(ctx); err != nil {
			return err
		}
	}
	p.log.Info("disk copied to the backup", "vm", p.cfg.Domain.Name(), "bytes", size)
	return nil
}
