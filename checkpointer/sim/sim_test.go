// SPDX-License-Identifier: Apache-2.0

package sim

import (
	"context"
	"testing"
	"time"
)

// A guest restored from a checkpoint continues the seeded workload at
// the saved step: its next writes are the original's next writes.
func TestSimRestoreContinuesWorkload(t *testing.T) {
	cfg := Config{Name: "vm1", MemSize: 256 << 10, Seed: 42, WritesPerMs: 50, HotPages: 16}
	d := NewDomain(cfg)
	d.Start()
	time.Sleep(20 * time.Millisecond)
	ctx := context.Background()
	_ = d.Pause(ctx)
	state, _ := d.SaveState(ctx)
	mem, step := d.Snapshot()
	d.Stop()
	if step == 0 {
		t.Fatal("workload made no writes")
	}
	r, err := restoreSim(cfg, mem, state)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if a, b := d.nextWrite(), r.nextWrite(); a != b {
			t.Fatalf("write %d after restore at %d, original %d", i, b, a)
		}
	}
	if _, err := restoreSim(cfg, mem, state[:8]); err == nil {
		t.Fatal("short state accepted")
	}
}
