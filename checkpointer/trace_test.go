// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/sim"

	"github.com/resilire/resilire/checkpointer/trace"

	"github.com/resilire/resilire/checkpointer/codec"
)

// traceEpochs adapts a recorded trace to EpochSource.
type traceEpochs struct{ r *trace.Reader }

func (t traceEpochs) Next() ([]uint64, []byte, error) {
	e, err := t.r.Next()
	if errors.Is(err, io.EOF) {
		t.r.Close()
	}
	if err != nil {
		return nil, nil, err
	}
	return e.PFNs, e.Data, nil
}

// The committed redis trace, replayed through the whole engine with the
// FGBI codec: after every acked epoch the replica equals the replayed
// guest's memory at that epoch's pause (the replay loops past its end).
func TestRedisTraceReplica(t *testing.T) {
	const dir = "../checkpointer/trace/testdata/redis"
	r, err := trace.Open(dir)
	if err != nil {
		t.Fatalf("committed redis fixture: %v", err)
	}
	meta := r.Meta()
	r.Close()
	open := func() (sim.EpochSource, error) {
		r, err := trace.Open(dir)
		return traceEpochs{r}, err
	}
	dom, err := sim.NewReplayDomain("redis", meta.Pages, open)
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Close()
	replica := sim.NewReplica(dom.MemorySize())
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "redis", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec.DefaultFGBI(), HeartbeatTimeout: 5 * time.Second})
	out := newRecOutput(dom, func() *checkpointer.Backup { return b })
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: dom, Output: out, Codec: codec.DefaultFGBI(), Dial: dialer(addr),
		Interval: 5 * time.Millisecond, HeartbeatTimeout: 5 * time.Second, Pipeline: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	want := meta.Epochs + 5 // past the end of the trace: the replay loops
	waitFor(t, 60*time.Second, "replayed epochs", func() bool { n, _, _ := out.snapshot(); return n >= want })
	cancel()
	if err := recvWithin(t, errc, 20*time.Second, "primary"); err != nil {
		t.Fatal(err)
	}
	n, _, errs := out.snapshot()
	for _, e := range errs {
		t.Error(e)
	}
	t.Logf("%d epochs of the %d-epoch redis trace (%d pages) checked", n, meta.Epochs, meta.Pages)
}
