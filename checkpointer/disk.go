// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"fmt"

	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/wire"
)

// Disk replication rides on the checkpoint: the writes the guest completed
// in epoch e are cut with the guest paused (DiskSource.Cut, in capture),
// travel as DISK records after the memory DATA of checkpoint e and before
// its END, are staged in the backup's journal as they arrive, and are
// committed and applied together with the memory, before ACK e. A
// checkpoint refused or cut short leaves its records staged, never
// applied: the next one aborts them.

// DiskSource is the primary's replicated disk: disk.Export.
type DiskSource interface {
	// Size is the image size in bytes (sent in the hello).
	Size() int64
	// CutDeferred takes the blocks written since the last cut, with the
	// guest paused; Fill reads their cut-time contents once it runs again.
	CutDeferred(epoch uint64) (*disk.Delta, error)
	Fill(d *disk.Delta) error
	// Pressure fires when the writes since the last cut reached the
	// export's bound: the epoch loop takes a checkpoint at once.
	Pressure() <-chan struct{}
	// Acked forgets the cuts of epochs up to e.
	Acked(e uint64)
	// Resend makes the next cut carry what a backup at epoch committed
	// lacks: the later cuts, or the whole image (full) if that epoch is
	// unknown.
	Resend(committed uint64) (full bool)
	// BeginCopy forgets all tracked writes before an initial copy read
	// with ReadAt while the guest runs.
	BeginCopy()
	ReadAt(p []byte, off int64) (int, error)
}

// DiskReplica is the backup's copy of the disk: disk.Replica.
type DiskReplica interface {
	Size() int64
	Staged() bool
	Stage(rec wire.DiskRecord) error
	Commit(epoch uint64) error
	Apply() error
	Abort() error
}

// sendDisk writes the DISK records of d (not flushed: END flushes).
func (s *session) sendDisk(d *disk.Delta) (int64, error) {
	var n int64
	var buf []byte
	for _, rec := range d.Records() {
		buf = rec.Marshal(buf[:0])
		if err := s.l.Write(wire.Disk, buf, false); err != nil {
			return n, err
		}
		n += int64(len(buf))
	}
	return n, nil
}

// readDisk stages the DISK records that follow a checkpoint's memory and
// returns the frame after them (END when all is well).
func (b *Backup) readDisk(dr *wire.DataReader, m wire.CheckpointMsg) (wire.Type, []byte, error) {
	for {
		typ, payload, err := dr.Next()
		if err != nil || typ != wire.Disk {
			return typ, payload, err
		}
		if b.cfg.Disk == nil {
			return 0, nil, fmt.Errorf("disk record for a backup without a disk: %w", wire.ErrFrame)
		}
		rec, err := wire.ParseDisk(payload)
		if err != nil {
			return 0, nil, err
		}
		if rec.Epoch != m.Epoch {
			return 0, nil, fmt.Errorf("disk record of epoch %d in checkpoint %d: %w", rec.Epoch, m.Epoch, wire.ErrCorrupt)
		}
		if err := b.cfg.Disk.Stage(rec); err != nil {
			return 0, nil, fmt.Errorf("%w: %w", wire.ErrCorrupt, err)
		}
		b.touch()
	}
}

// commitDisk makes the staged records of m durable (before the memory is
// applied); a consistent checkpoint must carry them.
func (b *Backup) commitDisk(m wire.CheckpointMsg) error {
	d := b.cfg.Disk
	if d == nil {
		return nil
	}
	if !d.Staged() {
		if m.Kind == wire.Consistent {
			return fmt.Errorf("checkpoint epoch %d without disk records: %w", m.Epoch, wire.ErrCorrupt)
		}
		return nil
	}
	if err := d.Commit(m.Epoch); err != nil {
		return fmt.Errorf("commit disk of epoch %d: %w: %w", m.Epoch, wire.ErrCorrupt, err)
	}
	return nil
}

func (b *Backup) diskSize() uint64 {
	if b.cfg.Disk == nil {
		return 0
	}
	return uint64(b.cfg.Disk.Size())
}

// diskPressure is the disk's early-cut signal, nil (never) without a disk.
func (p *Primary) diskPressure() <-chan struct{} {
	if p.cfg.Disk == nil {
		return nil
	}
	return p.cfg.Disk.Pressure()
}
