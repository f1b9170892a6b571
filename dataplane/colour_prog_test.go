// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/resilire/resilire/testenv"
)

var (
	peerA    = net.HardwareAddr{2, 0, 0, 0, 0xa, 1}
	peerB    = net.HardwareAddr{2, 0, 0, 0, 0xb, 1}
	stranger = net.HardwareAddr{2, 0, 0, 0, 0xc, 1}
)

// tagged inserts an 802.1ad tag with VID vid after the MACs of frame, as
// the frame reaches the receiver when the tag is not offloaded.
func tagged(frame []byte, vid uint16) []byte {
	out := append([]byte(nil), frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, 0x88a8)
	out = binary.BigEndian.AppendUint16(out, vid)
	return append(out, frame[12:]...)
}

// memberPort is a loaded object set with a config, as a Port.
func memberPort(t testing.TB, path CapturePath, kind InputLogKind, round uint32, peers ...net.HardwareAddr) *Port {
	t.Helper()
	objs := loadWithInputLog(t, path, 1<<16, ModeBuffer, 3, kind)
	p := &Port{name: "test", objs: objs, egress: kind, inputLog: kind}
	if err := p.SetRound(round); err != nil {
		t.Fatal(err)
	}
	if err := p.SetGroupPeers(peers); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestColourSend: the capture programs of both paths pass a member's
// unicast frame to a peer at once (tagged, which BPF_PROG_TEST_RUN cannot
// show: the rig test sees the tag), and leave everything else to the mode.
func TestColourSend(t *testing.T) {
	for _, path := range []CapturePath{PathRing, PathRedirect} {
		t.Run(path.String(), func(t *testing.T) { testColourSend(t, path) })
	}
}

func testColourSend(t *testing.T, path CapturePath) {
	buffered := uint32(tcActShot)
	if path == PathRedirect {
		buffered = tcActRedirect
	}
	toPeer := frameFor(t, peerA, peerB, net.IP{10, 0, 0, 1}, net.IP{10, 0, 0, 2}, 100, 1)
	toStranger := frameFor(t, peerA, stranger, net.IP{10, 0, 0, 1}, net.IP{10, 0, 0, 3}, 100, 2)
	bcast := frameFor(t, peerA, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, net.IP{10, 0, 0, 1}, net.IP{10, 0, 0, 255}, 100, 3)
	for _, tc := range []struct {
		name    string
		round   uint32
		mode    Mode
		mark    uint32
		frame   []byte
		verdict uint32
		want    Counters
	}{
		{"peer", 5, ModeBuffer, 0, toPeer, tcActOK, Counters{InternalSent: 1}},
		{"peer in pass mode", 5, ModePass, 0, toPeer, tcActOK, Counters{InternalSent: 1}},
		{"peer in block mode", 5, ModeBlock, 0, toPeer, tcActShot, Counters{Blocked: 1}},
		{"peer, re-injected", 5, ModeBuffer, testMagic, toPeer, tcActOK, Counters{Injected: 1}},
		{"not a member", 0, ModeBuffer, 0, toPeer, buffered, Counters{Captured: 1}},
		{"non-peer", 5, ModeBuffer, 0, toStranger, buffered, Counters{Captured: 1}},
		{"broadcast", 5, ModeBuffer, 0, bcast, buffered, Counters{Captured: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := memberPort(t, path, InputLogPortable, tc.round, peerB)
			if err := p.SetMode(tc.mode); err != nil {
				t.Fatal(err)
			}
			v, _ := run(t, p.objs.progs[progCapture], tc.frame, newSkbCtx(t).set("mark", tc.mark))
			if v != tc.verdict {
				t.Errorf("verdict %d, want %d", v, tc.verdict)
			}
			if got := counters(t, p.objs); got != tc.want {
				t.Errorf("counters %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestColourReceive: the guest-egress program (both kinds) holds a peer's
// frame of a later round, delivers the others untagged with their colour
// logged, at the 4095 -> 0 wrap too; the negative control delivers at
// once; a stranger's 802.1ad frame and an untagged one are untouched.
func TestColourReceive(t *testing.T) {
	for _, kind := range []InputLogKind{InputLogKernCtx, InputLogPortable} {
		t.Run(kind.String(), func(t *testing.T) {
			if kind == InputLogKernCtx {
				testenv.RequireFeature(t, "kern-ctx input log: kfunc "+kernCtxKfunc+" (Linux 6.2)", testenv.ProbeKfuncs(kernCtxKfunc))
			}
			testColourReceive(t, kind)
		})
	}
}

func testColourReceive(t *testing.T, kind InputLogKind) {
	plain := frameFor(t, peerA, peerB, net.IP{10, 0, 0, 1}, net.IP{10, 0, 0, 2}, 200, 7)
	fromStranger := frameFor(t, stranger, peerB, net.IP{10, 0, 0, 3}, net.IP{10, 0, 0, 2}, 200, 8)
	for _, tc := range []struct {
		name          string
		round, colour uint32 // receiver's round, the frame's tag (0x1000: untagged)
		noHold        bool
		frame         []byte
		held          bool
		want          Counters
	}{
		{"same round", 5, 5, false, plain, false, Counters{InternalReceived: 1, InputLogged: 1}},
		{"later round", 4, 5, false, plain, true, Counters{Held: 1}},
		{"earlier round", 6, 5, false, plain, false, Counters{InternalReceived: 1, InTransit: 1, InputLogged: 1}},
		{"later round, wrapped", 4095, 0, false, plain, true, Counters{Held: 1}},
		{"earlier round, wrapped", 4096, 4095, false, plain, false, Counters{InternalReceived: 1, InTransit: 1, InputLogged: 1}},
		{"unsafe no hold", 4, 5, true, plain, false, Counters{InternalReceived: 1, InputLogged: 1}},
		{"not a member yet", 0, 5, false, plain, false, Counters{InternalReceived: 1, InputLogged: 1}},
		{"untagged", 4, 0x1000, false, plain, false, Counters{InputLogged: 1}},
		{"stranger's tag", 4, 5, false, fromStranger, false, Counters{InputLogged: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := memberPort(t, PathRedirect, kind, tc.round, peerA)
			if err := p.SetUnsafeNoHold(tc.noHold); err != nil {
				t.Fatal(err)
			}
			in, internal := tc.frame, tc.colour <= 0xfff && bytes.Equal(tc.frame[6:12], peerA)
			if tc.colour <= 0xfff {
				in = tagged(tc.frame, uint16(tc.colour))
			}
			out := make([]byte, len(in)+64)
			ret, err := p.objs.progs[progInputLog].Run(&ebpf.RunOptions{Data: in, DataOut: out, Context: newSkbCtx(t).b})
			if err != nil {
				t.Fatal(err)
			}
			wantOut, wantColour, wantFlags := in, uint32(0), uint8(0)
			if internal {
				wantOut, wantColour, wantFlags = tc.frame, tc.colour, FrameInternal
			}
			if kind == InputLogPortable {
				wantFlags |= FrameMetaUnknown
			}
			if got := counters(t, p.objs); got != tc.want {
				t.Errorf("counters %+v, want %+v", got, tc.want)
			}
			ring := p.objs.maps[mapInputRing]
			if tc.held {
				if ret != tcActShot {
					t.Fatalf("verdict %d, want SHOT (held)", ret)
				}
				ring = p.objs.maps[mapHoldRing]
			} else if ret != tcActOK || !bytes.Equal(out[:len(wantOut)], wantOut) {
				t.Fatalf("verdict %d, frame out %x; want OK and %x", ret, out[:len(wantOut)], wantOut)
			}
			r := readRecords(t, ring, 1)[0]
			if !bytes.Equal(r.Frame, wantOut) || r.Hdr.Colour != wantColour || r.Hdr.Flags != wantFlags || r.Hdr.Epoch != 3 {
				t.Errorf("record epoch %d colour %d flags %#x frame %x; want 3, %d, %#x, %x",
					r.Hdr.Epoch, r.Hdr.Colour, r.Hdr.Flags, r.Frame, wantColour, wantFlags, wantOut)
			}
		})
	}
}

// TestColourReleaseMark: a frame HoldQueue releases (marked with its
// colour) is delivered and logged as internal, its mark cleared; with the
// receiver still behind it is held again, never delivered.
func TestColourReleaseMark(t *testing.T) {
	frame := frameFor(t, peerA, peerB, net.IP{10, 0, 0, 1}, net.IP{10, 0, 0, 2}, 200, 9)
	mark := uint32(testMagic)&^colourMask | 5
	for _, tc := range []struct {
		round   uint32
		verdict uint32
		want    Counters
	}{
		{5, tcActOK, Counters{InternalReceived: 1, InputLogged: 1}},
		{4, tcActShot, Counters{Held: 1}},
	} {
		p := memberPort(t, PathRedirect, InputLogPortable, tc.round, peerA)
		v, out := run(t, p.objs.progs[progInputLog], frame, newSkbCtx(t).set("mark", mark))
		if v != tc.verdict || out.get("mark") != 0 {
			t.Errorf("round %d: verdict %d mark %#x, want %d and 0", tc.round, v, out.get("mark"), tc.verdict)
		}
		if got := counters(t, p.objs); got != tc.want {
			t.Errorf("round %d: counters %+v, want %+v", tc.round, got, tc.want)
		}
	}
}

// TestColourHoldFull: a frame to hold that the hold ring cannot take is
// dropped and counted, never delivered.
func TestColourHoldFull(t *testing.T) {
	p := memberPort(t, PathRedirect, InputLogPortable, 4, peerA)
	in := tagged(frameFor(t, peerA, peerB, net.IP{10, 0, 0, 1}, net.IP{10, 0, 0, 2}, 1500, 1), 5)
	const runs = 60 // 64 KiB ring, 1.5 KB records
	for i := 0; i < runs; i++ {
		if v, _ := run(t, p.objs.progs[progInputLog], in, newSkbCtx(t)); v != tcActShot {
			t.Fatalf("run %d: verdict %d, want SHOT", i, v)
		}
	}
	c := counters(t, p.objs)
	if c.Held == 0 || c.HoldFull == 0 || c.Held+c.HoldFull != runs || c.InternalReceived != 0 {
		t.Errorf("held %d + full %d (delivered %d), want both > 0 summing to %d, none delivered", c.Held, c.HoldFull, c.InternalReceived, runs)
	}
}

// TestSetRound: the round and the no-hold flag are written by set_config
// without touching epoch and mode; a port without the guest-egress
// program refuses to join a group.
func TestSetRound(t *testing.T) {
	p := memberPort(t, PathRedirect, InputLogPortable, 7, peerA, peerB)
	if err := p.SetUnsafeNoHold(true); err != nil {
		t.Fatal(err)
	}
	c, err := p.config()
	if err != nil {
		t.Fatal(err)
	}
	if c.Round != 7 || c.Epoch != 3 || Mode(c.Mode) != ModeBuffer || c.Flags != 1 {
		t.Errorf("config %+v, want round 7, epoch 3, buffer, no-hold", c)
	}
	peers, err := p.GroupPeers()
	if err != nil || len(peers) != 2 {
		t.Fatalf("peers %v (%v), want 2", peers, err)
	}
	if err := p.SetGroupPeers([]net.HardwareAddr{peerB}); err != nil {
		t.Fatal(err)
	}
	if peers, _ := p.GroupPeers(); len(peers) != 1 || peers[0].String() != peerB.String() {
		t.Errorf("peers after replace %v, want [%s]", peers, peerB)
	}
	if err := p.SetGroupPeers([]net.HardwareAddr{{1, 0, 0, 0, 0, 1}}); err == nil {
		t.Error("multicast peer accepted")
	}
	p.egress = 0
	if err := p.SetRound(8); err == nil {
		t.Error("SetRound on a port without the guest-egress program succeeded")
	}
}

// colourSink records what an InputReader offers.
type colourSink struct{ got chan string }

func (s colourSink) OfferInput(epoch uint64, broken bool, frame []byte) bool {
	s.got <- fmt.Sprintf("external epoch %d broken %v seq %v", epoch, broken, seqs([][]byte{frame}))
	return true
}

func (s colourSink) OfferColouredInput(epoch uint64, colour uint32, frame []byte) bool {
	s.got <- fmt.Sprintf("internal epoch %d colour %d seq %v", epoch, colour, seqs([][]byte{frame}))
	return true
}

// TestInputReaderColours: the input reader hands internal frames to a
// ColouredInputSink with their colour, external ones as before.
func TestInputReaderColours(t *testing.T) {
	p := memberPort(t, PathRedirect, InputLogPortable, 6, peerA)
	f := frameFor(t, peerA, peerB, net.IP{10, 0, 0, 1}, net.IP{10, 0, 0, 2}, 200, 11)
	run(t, p.objs.progs[progInputLog], tagged(f, 5), newSkbCtx(t))
	run(t, p.objs.progs[progInputLog], frameFor(t, stranger, peerB, net.IP{10, 0, 0, 3}, net.IP{10, 0, 0, 2}, 200, 12), newSkbCtx(t))
	sink := colourSink{got: make(chan string, 4)}
	r, err := StartInputReader(p, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, want := range []string{"internal epoch 3 colour 5 seq [11]", "external epoch 3 broken false seq [12]"} {
		select {
		case got := <-sink.got:
			if got != want {
				t.Errorf("offered %q, want %q", got, want)
			}
		case <-time.After(time.Second):
			t.Fatalf("nothing offered, want %q", want)
		}
	}
}

// flushSink counts what an InputReader offers and what it had offered
// when it said Flushed.
type flushSink struct {
	mu      sync.Mutex
	n       int
	flushed chan int
}

func (s *flushSink) OfferInput(uint64, bool, []byte) bool {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return true
}

func (s *flushSink) OfferColouredInput(uint64, uint32, []byte) bool {
	return s.OfferInput(0, false, nil)
}

func (s *flushSink) Flushed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushed <- s.n
}

// TestInputReaderFlush: once the reader says Flushed, it has handed over
// every record the data plane wrote before Flush (the epoch loop's
// barrier: a checkpoint follows its epochs' input log on the link).
func TestInputReaderFlush(t *testing.T) {
	p := memberPort(t, PathRedirect, InputLogPortable, 6, peerA)
	sink := &flushSink{flushed: make(chan int, 4)}
	r, err := StartInputReader(p, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	total := 0
	for round := 1; round <= 3; round++ {
		for i := range 40 * round {
			f := frameFor(t, stranger, peerB, net.IP{10, 0, 0, 3}, net.IP{10, 0, 0, 2}, 200, uint32(i))
			run(t, p.objs.progs[progInputLog], f, newSkbCtx(t))
		}
		total += 40 * round
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-sink.flushed:
			if n != total {
				t.Fatalf("flush %d: %d records handed over before Flushed, want %d", round, n, total)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("flush %d: no Flushed", round)
		}
	}
}

// BenchmarkInputReaderFlush: what the epoch loop's input-log barrier
// costs per checkpoint on the data plane's side: Flush until the reader
// handed over every record written before it (64 records pending, as
// from a guest receiving while paused, and none).
func BenchmarkInputReaderFlush(b *testing.B) {
	for _, pending := range []int{0, 64} {
		b.Run(fmt.Sprintf("pending=%d", pending), func(b *testing.B) {
			p := memberPort(b, PathRedirect, InputLogPortable, 6, peerA)
			sink := &flushSink{flushed: make(chan int, 1)}
			r, err := StartInputReader(p, sink, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			f := frameFor(b, stranger, peerB, net.IP{10, 0, 0, 3}, net.IP{10, 0, 0, 2}, 200, 1)
			ctx := newSkbCtx(b)
			var wait time.Duration
			for range b.N {
				for range pending {
					run(b, p.objs.progs[progInputLog], f, ctx)
				}
				t0 := time.Now()
				if err := r.Flush(); err != nil {
					b.Fatal(err)
				}
				<-sink.flushed
				wait += time.Since(t0)
			}
			b.ReportMetric(float64(wait.Microseconds())/float64(b.N), "flush-us")
		})
	}
}
