// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/resilire/resilire/dataplane"
)

// TestByteBoundNeverReleasesEarly: a 64 KiB bound tail-drops and counts;
// nothing leaves before Release; then exactly the held prefix arrives.
func TestByteBoundNeverReleasesEarly(t *testing.T) {
	for _, path := range paths {
		t.Run(path.String(), func(t *testing.T) {
			r := newNSRig(t)
			r.staticNeighbors(t)
			const bound = 64 << 10
			_, b := r.attach(t, path, Options{MaxBytes: bound})
			sn := r.sniff(t)
			g, c := r.udpPair(t, 7003)
			const n = 1000
			sendSeq(t, g, 0, n, 200)
			if got := sn.frames(r.GuestMAC, time.Second); len(got) != 0 {
				t.Fatalf("client saw %d frames before release", len(got))
			}
			s := waitHeld(t, b, n)
			if s.Dropped == 0 || s.HeldBytes > bound || s.HeldFrames+int64(s.Dropped) != n {
				t.Fatalf("bound not enforced: %+v", s)
			}
			e, _ := b.Advance()
			if err := b.Release(e); err != nil {
				t.Fatal(err)
			}
			wantSeq(t, recvSeqN(t, c, int(s.HeldFrames), 10*time.Second), 0, int(s.HeldFrames))
		})
	}
}

// TestDiscardDropsHeld: discarded output never leaves, later output does.
func TestDiscardDropsHeld(t *testing.T) {
	for _, path := range paths {
		t.Run(path.String(), func(t *testing.T) { testDiscardDropsHeld(t, path) })
	}
}

func testDiscardDropsHeld(t *testing.T, path dataplane.CapturePath) {
	r := newNSRig(t)
	r.staticNeighbors(t)
	_, b := r.attach(t, path, Options{})
	g, c := r.udpPair(t, 7004)
	sendSeq(t, g, 0, 100, 16)
	waitHeld(t, b, 100)
	if err := b.Discard(); err != nil {
		t.Fatal(err)
	}
	e, _ := b.Advance()
	sendSeq(t, g, 100, 10, 16)
	waitHeld(t, b, 10)
	if err := b.Release(e); err != nil {
		t.Fatal(err)
	}
	if got := recvSeq(t, c, 500*time.Millisecond); len(got) != 0 {
		t.Fatalf("%d discarded datagrams arrived", len(got))
	}
	e, _ = b.Advance()
	if err := b.Release(e); err != nil {
		t.Fatal(err)
	}
	wantSeq(t, recvSeqN(t, c, 10, 10*time.Second), 100, 10)
	if s := b.Stats(); s.Discarded != 100 {
		t.Fatalf("discarded %d, want 100", s.Discarded)
	}
}

// TestStragglerReleasedWithoutCommit stamps frames with an already
// committed epoch (as a frame captured before the switch but read after
// its Release would be): they leave at once, while the open epoch's stay.
//
// Path ring only: there the kernel stamps each record with the port's epoch;
// path redirect stamps a frame with the open epoch when it reads it, so it
// has no stragglers.
func TestStragglerReleasedWithoutCommit(t *testing.T) {
	r := newNSRig(t)
	r.staticNeighbors(t)
	p, b := r.attach(t, dataplane.PathRing, Options{})
	g, c := r.udpPair(t, 7005)
	e, _ := b.Advance()
	if err := b.Release(e); err != nil {
		t.Fatal(err)
	}
	sendSeq(t, g, 0, 5, 16) // open epoch e+1: held
	waitHeld(t, b, 5)
	if err := p.SetEpoch(e); err != nil { // the port stamps the committed epoch
		t.Fatal(err)
	}
	sendSeq(t, g, 5, 5, 16)
	wantSeq(t, recvSeqN(t, c, 5, 10*time.Second), 5, 5)
	if err := p.SetEpoch(e + 1); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.Stragglers != 5 || s.HeldFrames != 5 {
		t.Fatalf("stats: %+v", s)
	}
	e, _ = b.Advance()
	if err := b.Release(e); err != nil {
		t.Fatal(err)
	}
	wantSeq(t, recvSeqN(t, c, 5, 10*time.Second), 0, 5)
}

// TestWritePcapOfHeldFrames: the dump is readable by pcapgo and holds the
// held datagrams in order, without releasing them.
func TestWritePcapOfHeldFrames(t *testing.T) {
	for _, path := range paths {
		t.Run(path.String(), func(t *testing.T) {
			r := newNSRig(t)
			r.staticNeighbors(t)
			_, b := r.attach(t, path, Options{})
			g, c := r.udpPair(t, 7006)
			sendSeq(t, g, 0, 20, 16)
			waitHeld(t, b, 20)
			var buf bytes.Buffer
			if err := b.WritePcap(&buf); err != nil {
				t.Fatal(err)
			}
			rd, err := pcapgo.NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 20; i++ {
				data, _, err := rd.ReadPacketData()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
				udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
				if !ok || udp.DstPort != 7006 || binary.BigEndian.Uint32(udp.Payload) != uint32(i) {
					t.Fatalf("packet %d is not datagram %d", i, i)
				}
			}
			if got := recvSeq(t, c, 300*time.Millisecond); len(got) != 0 {
				t.Fatalf("dump released %d datagrams", len(got))
			}
		})
	}
}
