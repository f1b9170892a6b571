// SPDX-License-Identifier: Apache-2.0

package disk

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/checkpointer/wire"
)

// ReplicaOptions tune OpenReplica.
type ReplicaOptions struct {
	// UnsafeNoJournal writes no commit record and so never replays: a
	// backup killed in the middle of Apply keeps a torn image. Only for
	// the negative control of the crash test.
	UnsafeNoJournal bool
	Logger          *slog.Logger // nil discards
}

// Replica is the backup's copy of the disk: a raw image changed only by
// committed checkpoints, and its journal (the image path + ".journal").
// A checkpoint's records are staged in the journal (Stage), made durable
// with a commit record (Commit) and then written in place (Apply). Not
// safe for concurrent use (the backup applies one checkpoint at a time).
type Replica struct {
	img, jr *os.File
	size    int64
	opt     ReplicaOptions

	staged bool // a checkpoint's records are being staged
	epoch  uint64
	count  uint32
	next   uint32
	jpos   int64
	ents   []jEntry
	chain  uint32 // chainCRC over the staged entries
}

// OpenReplica opens the backup's image. A journal holding a committed
// checkpoint is applied first (the agent died after Commit); an
// uncommitted one is discarded (it died before): either way the image is
// a committed state, whole.
func OpenReplica(image string, opt ReplicaOptions) (_ *Replica, err error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	img, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open replica image: %w", err)
	}
	defer func() {
		if err != nil {
			img.Close()
		}
	}()
	fi, err := img.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat replica image: %w", err)
	}
	if fi.Size() <= 0 || fi.Size()%BlockSize != 0 {
		return nil, fmt.Errorf("replica image %s: %d bytes: %w", image, fi.Size(), ErrSize)
	}
	jr, err := os.OpenFile(image+".journal", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	r := &Replica{img: img, jr: jr, size: fi.Size(), opt: opt}
	e, ents, ok, err := readJournal(jr, r.size)
	if err == nil && ok && !opt.UnsafeNoJournal {
		opt.Logger.Info("replaying committed disk journal", "epoch", e, "extents", len(ents))
		err = applyEntries(img, jr, ents)
	}
	if err == nil {
		err = r.reset()
	}
	if err != nil {
		jr.Close()
		return nil, err
	}
	return r, nil
}

// Size is the image size.
func (r *Replica) Size() int64 { return r.size }

// Staged reports whether records of a checkpoint are staged.
func (r *Replica) Staged() bool { return r.staged }

// Stage appends one verified record of the checkpoint being received to
// the journal. Records must come in order, all of one epoch; the image is
// not touched.
func (r *Replica) Stage(rec wire.DiskRecord) error {
	switch {
	case !r.staged && rec.Index != 0:
		return fmt.Errorf("disk record %d of epoch %d first: %w", rec.Index, rec.Epoch, ErrJournal)
	case r.staged && (rec.Epoch != r.epoch || rec.Count != r.count || rec.Index != r.next):
		return fmt.Errorf("disk record %d/%d of epoch %d after %d/%d of %d: %w",
			rec.Index, rec.Count, rec.Epoch, r.next, r.count, r.epoch, ErrJournal)
	}
	if !r.staged {
		r.staged, r.epoch, r.count = true, rec.Epoch, rec.Count
	}
	if rec.Count == 0 {
		return nil
	}
	if err := checkExtent(rec.Off, len(rec.Data), r.size); err != nil {
		return err
	}
	pos, c, err := appendEntry(r.jr, r.jpos, jExtent, rec.Epoch, rec.Off, rec.Data)
	if err != nil {
		return err
	}
	r.chain = chainCRC(r.chain, c)
	r.ents = append(r.ents, jEntry{off: int64(rec.Off), n: int64(len(rec.Data)), pos: r.jpos + jHeaderLen})
	r.jpos = pos
	r.next++
	hook("stage", int(r.next))
	return nil
}

// Commit makes the staged checkpoint of epoch e durable in the journal:
// from here a crash replays it. Every record of e must be staged.
func (r *Replica) Commit(e uint64) error {
	if !r.staged || r.epoch != e || r.next != r.count {
		return fmt.Errorf("commit epoch %d: staged %v epoch %d, %d of %d records: %w", e, r.staged, r.epoch, r.next, r.count, ErrJournal)
	}
	if r.opt.UnsafeNoJournal {
		return nil
	}
	hook("commit", 0)
	pos, _, err := appendEntry(r.jr, r.jpos, jCommit, e, uint64(len(r.ents)), binary.LittleEndian.AppendUint32(nil, r.chain))
	if err != nil {
		return err
	}
	r.jpos = pos
	if err := fdatasync(r.jr); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	hook("commit", 1)
	return nil
}

// Apply writes the committed checkpoint into the image, makes it durable
// and empties the journal.
func (r *Replica) Apply() error {
	if err := applyEntries(r.img, r.jr, r.ents); err != nil {
		return err
	}
	return r.reset()
}

// Abort drops what is staged (a checkpoint refused or cut short).
func (r *Replica) Abort() error {
	if !r.staged && r.jpos == 0 {
		return nil // nothing staged since the last reset
	}
	return r.reset()
}

// reset empties the journal and forgets the staging. The truncation need
// not be durable: a committed journal that survives a power loss is one
// already applied and synced, and replaying it again writes the same
// bytes; records of a later epoch staged over it fail the epoch check, so
// an uncommitted mix is discarded.
func (r *Replica) reset() error {
	r.staged, r.epoch, r.count, r.next, r.jpos, r.ents, r.chain = false, 0, 0, 0, 0, r.ents[:0], 0
	if err := r.jr.Truncate(0); err != nil {
		return fmt.Errorf("truncate journal: %w", err)
	}
	return nil
}

// Close closes the image and the journal.
func (r *Replica) Close() error {
	err := r.jr.Close()
	if ierr := r.img.Close(); err == nil {
		err = ierr
	}
	return err
}

func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
