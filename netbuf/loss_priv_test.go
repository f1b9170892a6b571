// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/dataplane"
)

// TestTapDropsCounted: on path B, held frames the tap drops because the
// reader fell behind are counted in TapDropped, and every captured frame
// is either held or counted. (Captured, not sent: a slow kernel may drop
// the guest's frames before capture, in the port's backlog.)
func TestTapDropsCounted(t *testing.T) {
	r := newNSRig(t)
	r.staticNeighbors(t)
	p, b := r.attach(t, dataplane.PathRedirect, Options{})
	src, ok := b.src.(*tapSource)
	if !ok {
		t.Fatalf("path redirect source is %T", b.src)
	}
	g, _ := r.udpPair(t, 7015)
	const n = 12000 // more than the tap's 10000-frame queue
	src.rmu.Lock()  // the reader stalls
	sendSeq(t, g, 0, n, 16)
	time.Sleep(100 * time.Millisecond)
	src.rmu.Unlock()
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	s := b.Stats()
	for uint64(s.HeldFrames)+s.TapDropped < c.Captured && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		s = b.Stats()
	}
	if s.TapDropped == 0 || uint64(s.HeldFrames)+s.TapDropped != c.Captured {
		t.Fatalf("sent %d, captured %d: held %d, tap dropped %d; want drops, and held+dropped = captured",
			n, c.Captured, s.HeldFrames, s.TapDropped)
	}
}

// TestReleaseLossCounted: frames released while the guest port is down
// never reach it; Released-Reinjected shows them. With the port up, every
// released frame is reinjected.
func TestReleaseLossCounted(t *testing.T) {
	for _, path := range paths {
		t.Run(path.String(), func(t *testing.T) {
			r := newNSRig(t)
			r.staticNeighbors(t)
			_, b := r.attach(t, path, Options{})
			g, _ := r.udpPair(t, 7016)
			release := func() Stats {
				t.Helper()
				e, _ := b.Advance()
				if err := b.Release(e); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
				return b.Stats()
			}
			sendSeq(t, g, 0, 50, 16)
			waitHeld(t, b, 50)
			if s := release(); s.Released != 50 || s.Reinjected != 50 {
				t.Fatalf("port up: released %d, reinjected %d; want 50, 50", s.Released, s.Reinjected)
			}
			sendSeq(t, g, 50, 30, 16)
			waitHeld(t, b, 30)
			setLinkUp(t, r, false)
			s := release()
			setLinkUp(t, r, true)
			if s.Released != 80 || s.Reinjected != 50 {
				t.Fatalf("port down: released %d, reinjected %d; want 80, 50", s.Released, s.Reinjected)
			}
		})
	}
}

// setLinkUp sets the host side of the guest port up or down.
func setLinkUp(t *testing.T, r *nsRig, up bool) {
	t.Helper()
	err := r.Host.Do(func() error {
		lk, err := netlink.LinkByName(r.Port)
		if err != nil {
			return err
		}
		if up {
			return netlink.LinkSetUp(lk)
		}
		return netlink.LinkSetDown(lk)
	})
	if err != nil {
		t.Fatal(err)
	}
}
