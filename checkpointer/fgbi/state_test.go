// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestStateDeltaIsSmall models QEMU's device state: a 366 KB blob of which
// about 768 bytes change between epochs. The state record must cost about
// the changed bytes, and the decoder must rebuild the blob exactly.
func TestStateDeltaIsSmall(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	state := make([]byte, 366*1024)
	for i := range state {
		state[i] = byte(rng.Uint32())
	}
	cfg := Config{MemSize: 4 * PageSize}
	enc, _ := NewEncoder(cfg)
	dec, _ := NewDecoder(cfg)
	replica := make([]byte, cfg.MemSize)
	for ep := 0; ep < 4; ep++ {
		if ep > 0 {
			for k := 0; k < 12; k++ { // 12 runs of 64 changed bytes
				o := rng.IntN(len(state) - 64)
				for i := o; i < o+64; i++ {
					state[i] ^= byte(1 + rng.IntN(255))
				}
			}
		}
		var buf bytes.Buffer
		st, err := enc.Encode(&buf, uint64(ep), nil, nil, state)
		if err != nil {
			t.Fatal(err)
		}
		if ep > 0 && st.StateBytes > 1200 {
			t.Fatalf("epoch %d: state record %d bytes for 768 changed bytes", ep, st.StateBytes)
		}
		s, err := dec.Decode(&buf, replica)
		if err != nil {
			t.Fatal(err)
		}
		s.Apply(replica)
		if !bytes.Equal(s.State(), state) {
			t.Fatalf("epoch %d: state differs", ep)
		}
	}
	// A state delta against a base the decoder does not hold fails clearly.
	var buf bytes.Buffer
	if _, err := enc.Encode(&buf, 9, nil, nil, state); err != nil {
		t.Fatal(err)
	}
	fresh, _ := NewDecoder(cfg)
	if _, err := fresh.Decode(&buf, replica); !errors.Is(err, ErrNoBase) {
		t.Fatalf("delta on a fresh decoder: %v", err)
	}
}
