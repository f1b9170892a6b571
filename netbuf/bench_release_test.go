// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/dataplane"
)

// releaseRate holds n 60-byte frames (64 on the wire with the FCS) of
// `flows` UDP flows and measures one Release.
// With sinkDown the client's end is set down before the release, so the
// bridge drops the frames: what remains is netbuf's own cost plus the
// tap, redirect and bridge input (no client stack).
func releaseRate(tb testing.TB, path dataplane.CapturePath, queues, n, flows int, noPin, sinkDown bool) Stats {
	r := newNSRig(tb)
	r.staticNeighbors(tb)
	_, b := r.attach(tb, path, Options{Queues: queues, MaxBytes: 256 << 20, NoPin: noPin})
	var wg sync.WaitGroup
	for f := 0; f < flows; f++ {
		g, _ := r.udpPair(tb, 8000+f)
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, 18) // 14 + 20 + 8 + 18 = 60 bytes
			for i := 0; i < n/flows; i++ {
				binary.BigEndian.PutUint32(msg, uint32(i))
				g.Write(msg)
			}
		}()
	}
	wg.Wait()
	want := int64(n / flows * flows)
	if s := waitHeld(tb, b, want); s.HeldFrames != want {
		tb.Fatalf("held %d of %d frames (ring full? %+v)", s.HeldFrames, want, s)
	}
	if sinkDown {
		if err := r.Client.Do(func() error {
			lk, err := netlink.LinkByName(r.ClientIf)
			if err == nil {
				err = netlink.LinkSetDown(lk)
			}
			return err
		}); err != nil {
			tb.Fatal(err)
		}
	}
	e, err := b.Advance()
	if err == nil {
		err = b.Release(e)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b.Stats()
}
