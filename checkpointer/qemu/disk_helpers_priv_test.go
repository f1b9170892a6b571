// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/s2"

	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv/guest/diskload"
)

// Helpers of TestDiskFollowsCheckpoints.

// drainCheck wraps the QEMU domain and checks, at every epoch, QEMU's
// claim that stop drains the disk: no request is in flight when stop
// returns and no write reaches the export until cont.
type drainCheck struct {
	*qemu.Domain
	x                 *disk.Export
	mu                sync.Mutex
	writesAtPause     uint64
	pauses, busy      int
	writesWhilePaused int
	flushesInPause    uint64
	flushesAtPause    uint64
}

func (d *drainCheck) Pause(ctx context.Context) error {
	err := d.Domain.Pause(ctx)
	st := d.x.Stats()
	d.mu.Lock()
	d.writesAtPause, d.flushesAtPause = st.Writes, st.Flushes
	if st.InFlight != 0 {
		d.busy++
	}
	d.mu.Unlock()
	return err
}

func (d *drainCheck) Resume(ctx context.Context) error {
	st := d.x.Stats()
	d.mu.Lock()
	d.pauses++
	if st.Writes != d.writesAtPause || st.InFlight != 0 {
		d.writesWhilePaused++
	}
	d.flushesInPause += st.Flushes - d.flushesAtPause
	d.mu.Unlock()
	return d.Domain.Resume(ctx)
}

// s2Meter wraps the export and measures what S2 makes of each epoch's
// disk data as one block (the records compress each 256 KiB alone).
type s2Meter struct {
	*disk.Export
	raw, enc, epochs atomic.Int64
}

func (m *s2Meter) Fill(d *disk.Delta) error {
	err := m.Export.Fill(d)
	if err == nil && m.epochs.Add(1) > 1 { // the first consistent one follows the copy
		m.raw.Add(int64(d.Bytes()))
		m.enc.Add(int64(len(s2.Encode(nil, d.Data))))
	}
	return err
}

// consoleOutput stands in for the network output commit (this guest has
// no NIC; its output is its console): at each Advance, with the guest
// paused, it records the last file the guest reported durable.
type consoleOutput struct {
	serial   string
	mu       sync.Mutex
	next     uint64
	wroteAt  map[uint64]int
	released uint64
}

func (o *consoleOutput) Advance() (uint64, error) {
	b, _ := os.ReadFile(o.serial)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next++
	o.wroteAt[o.next] = diskload.LastWrote(b)
	return o.next, nil
}

func (o *consoleOutput) Release(e uint64) error {
	o.mu.Lock()
	o.released = e
	o.mu.Unlock()
	return nil
}

func (o *consoleOutput) Discard() error { return nil }

// nopStandby: this test checks the backup's disk image, not activation.
type nopStandby struct{}

func (nopStandby) Activate(context.Context, []byte) error { return nil }
func (nopStandby) Close() error                           { return nil }

func run(_ *testing.T, name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// snapStandby is the real warm standby; just before it activates it
// copies the backup's image: the disk the guest resumes on.
type snapStandby struct {
	*qemu.Standby
	img string
	mu  sync.Mutex
	err error
}

func (s *snapStandby) Activate(ctx context.Context, state []byte) error {
	out, err := exec.Command("cp", "--sparse=always", s.img, s.img+".failover").CombinedOutput()
	s.mu.Lock()
	if err != nil {
		s.err = errors.New(string(out))
	}
	s.mu.Unlock()
	return s.Standby.Activate(ctx, state)
}

// checkImage replays the ext4 journal of a copy of img (what a mount
// does), requires e2fsck -fn to pass, and returns how many of files
// 1..n are missing or wrong.
func checkImage(t *testing.T, img string, n int) int {
	t.Helper()
	raw, rawErr := run(t, "e2fsck", "-fn", img)
	t.Logf("e2fsck -fn of the image as left (journal not replayed): %v", rawErr)
	cp := img + ".check"
	if out, err := run(t, "cp", "--sparse=always", img, cp); err != nil {
		t.Fatalf("copy: %v: %s", err, out)
	}
	if out, err := run(t, "e2fsck", "-E", "journal_only", "-y", cp); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 1 {
			t.Fatalf("journal replay: %v: %s", err, out)
		}
	}
	if out, err := run(t, "e2fsck", "-fn", cp); err != nil {
		t.Fatalf("e2fsck -fn after journal replay: %v:\n%s\n(as left: %s)", err, out, raw)
	}
	dump := img + ".dump"
	if err := os.MkdirAll(dump, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "debugfs", "-R", "rdump / "+dump, cp); err != nil {
		t.Fatalf("debugfs rdump: %v: %s", err, out)
	}
	missing := 0
	for i := 1; i <= n; i++ {
		b, err := os.ReadFile(filepath.Join(dump, diskload.Name(i)))
		if err != nil || string(b) != string(diskload.Content(i)) {
			missing++
		}
	}
	return missing
}
