// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/sim"
	"github.com/resilire/resilire/checkpointer/wire"
)

const cutDisk = 1 << 20

// diskDelta is a delta of epoch e: one extent of n bytes at off, filled
// with seed.
func diskDelta(e uint64, off, n int64, seed byte) *disk.Delta {
	d := &disk.Delta{Epoch: e, Extents: []disk.Extent{{Off: off, Len: n}}, Data: make([]byte, n)}
	for i := range d.Data {
		d.Data[i] = seed + byte(i*5)
	}
	return d
}

// sendDiskCheckpoint sends BEGIN, the memory DATA, the DISK records
// (through damage, which may drop or change them) and END if end is set.
func (tp *testPrimary) sendDiskCheckpoint(seq, epoch uint64, body []byte, d *disk.Delta, damage func([][]byte) [][]byte, end bool) {
	m := wire.CheckpointMsg{Seq: seq, Epoch: epoch, Kind: wire.Consistent}
	_ = tp.l.Write(wire.Begin, m.Marshal(), false)
	_, _ = wire.NewDataWriter(tp.l).Write(body)
	var recs [][]byte
	for _, r := range d.Records() {
		recs = append(recs, r.Marshal(nil))
	}
	for _, p := range damage(recs) {
		_ = tp.l.Write(wire.Disk, p, false)
	}
	if end {
		_ = tp.l.Write(wire.End, m.Marshal(), false)
	}
	tp.l.Flush()
}

// Kill or damage the stream at every phase of checkpoint 2's disk part.
// The backup's disk stays at checkpoint 1 byte for byte unless the whole
// checkpoint 2 arrived (then it is checkpoint 2 whole); a damaged or
// incomplete record set is refused like a damaged memory record.
func TestDiskStreamCutKeepsCommittedDisk(t *testing.T) {
	keep := func(r [][]byte) [][]byte { return r }
	for _, tc := range []struct {
		name      string
		damage    func([][]byte) [][]byte
		end       bool
		refused   bool
		wantEpoch uint64
	}{
		{"mid-records", func(r [][]byte) [][]byte { return r[:1] }, false, false, 1},
		{"before-END", keep, false, false, 1},
		{"corrupt-record", func(r [][]byte) [][]byte { r[1][100] ^= 4; return r }, true, true, 1},
		{"truncated-record", func(r [][]byte) [][]byte { r[1] = r[1][:len(r[1])/2]; return r }, true, true, 1},
		{"missing-record", func(r [][]byte) [][]byte { return append(r[:1], r[2]) }, true, true, 1},
		{"too-few-records", func(r [][]byte) [][]byte { return r[:2] }, true, true, 1},
		{"no-records", func([][]byte) [][]byte { return nil }, true, true, 1},
		{"after-END-before-ACK", keep, true, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "backup.img")
			if err := os.WriteFile(img, make([]byte, cutDisk), 0o600); err != nil {
				t.Fatal(err)
			}
			rd, err := disk.OpenReplica(img, disk.ReplicaOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rd.Close() }) // after the backup stopped
			replica := sim.NewReplica(testMem)
			log, _ := testLogger(t)
			b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
				Codec: codec.Raw{}, Disk: rd, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: time.Minute,
				Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}, Logger: log})
			tp := dialTestPrimary(t, addr, nil)
			h := wire.HelloMsg{MemSize: testMem, DiskSize: cutDisk, VM: "vm1", Codec: "raw"}
			hp, _ := h.Marshal()
			_ = tp.l.Write(wire.Hello, hp, true)
			if typ, p := tp.answer(); typ != wire.HelloAck {
				t.Fatalf("hello answered %d %q", typ, p)
			}
			tp.sendDiskCheckpoint(1, 1, tp.encode(1, image(1), []byte("s1")), diskDelta(1, 0, 64<<10, 1), keep, true)
			if typ, p := tp.answer(); typ != wire.Ack {
				t.Fatalf("checkpoint 1 answered %d %q", typ, p)
			}
			disk1, _ := os.ReadFile(img)
			d2 := diskDelta(2, 32<<10, 3*wire.MaxDiskData-8192, 2) // three records
			tp.sendDiskCheckpoint(2, 2, tp.encode(2, image(2), []byte("s2")), d2, tc.damage, tc.end)
			if tc.refused {
				if typ, p := tp.answer(); typ != wire.Error {
					t.Fatalf("damaged checkpoint answered %d %q, want ERROR", typ, p)
				}
			} else if tc.end {
				if typ, p := tp.answer(); typ != wire.Ack {
					t.Fatalf("checkpoint 2 answered %d %q", typ, p)
				}
			}
			tp.conn.Close()
			waitFor(t, 10*time.Second, "session end", b.SessionEnded)
			got, _ := os.ReadFile(img)
			want := disk1
			if tc.wantEpoch == 2 {
				want = bytes.Clone(disk1)
				copy(want[32<<10:], d2.Data)
			}
			if committed, _ := b.Committed(); committed != tc.wantEpoch {
				t.Fatalf("committed %d, want %d", committed, tc.wantEpoch)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("backup disk is not checkpoint %d byte for byte", tc.wantEpoch)
			}
			if fi, err := os.Stat(img + ".journal"); err != nil || (tc.wantEpoch == 2 && fi.Size() != 0) {
				t.Fatalf("journal after apply: %v %v", fi, err)
			}
		})
	}
}

// A primary whose disk differs in size from the backup's (or that has
// none) is refused at the hello.
func TestDiskSizeMismatchRefused(t *testing.T) {
	img := filepath.Join(t.TempDir(), "backup.img")
	if err := os.WriteFile(img, make([]byte, cutDisk), 0o600); err != nil {
		t.Fatal(err)
	}
	rd, err := disk.OpenReplica(img, disk.ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	replica := sim.NewReplica(testMem)
	_, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec.Raw{}, Disk: rd, Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"}}})
	for _, size := range []uint64{0, cutDisk / 2} {
		tp := dialTestPrimary(t, addr, nil)
		h := wire.HelloMsg{MemSize: testMem, DiskSize: size, VM: "vm1", Codec: "raw"}
		hp, _ := h.Marshal()
		_ = tp.l.Write(wire.Hello, hp, true)
		if typ, p := tp.answer(); typ != wire.Error {
			t.Fatalf("disk size %d: answered %d %q, want ERROR", size, typ, p)
		}
	}
}
