// SPDX-License-Identifier: Apache-2.0

package sim

import (
	"context"
	"crypto/sha256"
	"io"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"

	"github.com/resilire/resilire/checkpointer/codec"
)

// A replayed guest is protected like any other: after the run the replica
// equals the replayed memory, and the bench numbers are plausible.
func TestRunBenchReplay(t *testing.T) {
	src := SyntheticSource{Pages: 256, Hot: 64, Dirty: 16, Seed: 5}
	d, err := NewReplayDomain("bench", src.Pages, src.Open)
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunBench(context.Background(), BenchConfig{Domain: d, Codec: codec.DefaultFGBI(), Interval: 2 * time.Millisecond, Epochs: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Epochs != 10 || res.Pages != 160 || res.WireBytes == 0 || res.Elapsed <= 0 {
		t.Fatalf("result %+v", res)
	}
	if p50, p99 := Percentile(res.Pauses, .5), Percentile(res.Pauses, .99); p50 <= 0 || p99 < p50 {
		t.Fatalf("pause p50 %v p99 %v", p50, p99)
	}
}

// The synthetic source dirties exactly Dirty distinct pages per epoch and
// is deterministic from its seed; the replay loops past the source's end.
func TestSyntheticSourceAndLoop(t *testing.T) {
	src := SyntheticSource{Pages: 128, Hot: 32, Dirty: 8, Seed: 9}
	a, _ := src.Open()
	b, _ := src.Open()
	for i := 0; i < 5; i++ {
		pa, da, _ := a.Next()
		pb, db, _ := b.Next()
		if i == 0 && len(pa) != 128 || i > 0 && len(pa) != 8 {
			t.Fatalf("epoch %d: %d pages", i, len(pa))
		}
		if sha256.Sum256(da) != sha256.Sum256(db) || len(pa) != len(pb) {
			t.Fatalf("epoch %d differs between two opens of one source", i)
		}
	}
	ctx := context.Background()
	opens := 0
	d, err := NewReplayDomain("x", 4, func() (EpochSource, error) { opens++; return &fixedSource{left: 3}, nil })
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		_ = d.Resume(ctx)
		_ = d.Pause(ctx)
		dirty, _ := d.HarvestDirty(ctx, nil)
		if len(dirty) != 1 {
			t.Fatalf("step %d: dirty %v", i, dirty)
		}
	}
	if opens < 3 {
		t.Fatalf("source opened %d times, replay did not loop", opens)
	}
}

// fixedSource: a full 4-page image, then left-1 epochs dirtying page 2.
type fixedSource struct{ left, n int }

func (f *fixedSource) Next() ([]uint64, []byte, error) {
	if f.n >= f.left {
		return nil, nil, io.EOF
	}
	f.n++
	if f.n == 1 {
		return []uint64{0, 1, 2, 3}, make([]byte, 4*checkpointer.PageSize), nil
	}
	return []uint64{2}, make([]byte, checkpointer.PageSize), nil
}
