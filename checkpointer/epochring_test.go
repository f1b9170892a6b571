// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
)

func TestEpochRingWindow(t *testing.T) {
	r := checkpointer.NewEpochRing(100)
	if r.Summary() != nil {
		t.Fatal("summary before any epoch")
	}
	// 150 epochs: only the last 100 (pauses 51..150 ms) stay in the window.
	for i := 1; i <= 150; i++ {
		r.Add(checkpointer.EpochStats{Epoch: uint64(i), Pause: time.Duration(i) * time.Millisecond, Pages: i, Bytes: int64(10 * i)})
	}
	s := r.Summary()
	if s.Committed != 150 || s.Window != 100 {
		t.Fatalf("committed %d window %d, want 150 100", s.Committed, s.Window)
	}
	if s.PauseP50 != 101*time.Millisecond || s.PauseP99 != 150*time.Millisecond || s.PauseMax != 150*time.Millisecond {
		t.Fatalf("p50 %v p99 %v max %v", s.PauseP50, s.PauseP99, s.PauseMax)
	}
	if s.WireBytesMean != 1005 || s.PageBytesMean != 100.5*checkpointer.PageSize {
		t.Fatalf("wire mean %v page mean %v", s.WireBytesMean, s.PageBytesMean)
	}
}
