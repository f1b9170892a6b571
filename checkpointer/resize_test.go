// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"
)

// resizingReplica is a Resizer test double (the Xen replica's contract).
type resizingReplica struct {
	mu      sync.Mutex
	mem     []byte
	resizes []uint64
}

func (r *resizingReplica) Memory() []byte { r.mu.Lock(); defer r.mu.Unlock(); return r.mem }
func (r *resizingReplica) Sync() error    { return nil }
func (r *resizingReplica) Resize(n uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mem = make([]byte, n)
	r.resizes = append(r.resizes, n)
	return nil
}

var _ checkpointer.Resizer = (*resizingReplica)(nil)

// A replica that does not know the guest's size takes it from the first
// hello; once it holds a committed checkpoint, a hello of another size is
// refused rather than throwing the committed state away.
func TestReplicaSizedFromHello(t *testing.T) {
	replica := &resizingReplica{mem: make([]byte, checkpointer.PageSize)}
	log, logs := testLogger(t)
	_, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec.Raw{}, Logger: log})
	tp := dialTestPrimary(t, addr, nil)
	mem1 := commitFirst(t, tp)
	if got := replica.Memory(); !bytes.Equal(got, mem1) {
		t.Fatalf("replica of %d bytes after the first checkpoint, want the primary's %d bytes", len(got), len(mem1))
	}
	if len(replica.resizes) != 1 || replica.resizes[0] != testMem {
		t.Fatalf("resizes %v, want one to %d", replica.resizes, testMem)
	}
	mustContain(t, logs.String(), "replica sized from the primary")
	tp.conn.Close()

	tp2 := dialTestPrimary(t, addr, nil)
	h := wire.HelloMsg{MemSize: 2 * testMem, VM: "vm1", Codec: "raw"}
	hp, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := tp2.l.Write(wire.Hello, hp, true); err != nil {
		t.Fatal(err)
	}
	if typ, p := tp2.answer(); typ != wire.Error || !strings.Contains(p, "hello memory") {
		t.Fatalf("a resize after a commit answered %d %q, want a refusal", typ, p)
	}
	if !bytes.Equal(replica.Memory(), mem1) || len(replica.resizes) != 1 {
		t.Fatal("the committed replica changed")
	}
}
