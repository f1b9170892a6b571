// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/resilire/resilire/dataplane"
	"golang.org/x/sys/unix"
)

// fakePort stands in for dataplane.Port in unit tests: it only keeps the
// epoch the capture program would stamp.
type fakePort struct {
	mu    sync.Mutex
	epoch uint64
}

func (p *fakePort) SetEpoch(e uint64) error { p.mu.Lock(); p.epoch = e; p.mu.Unlock(); return nil }
func (p *fakePort) Epoch() (uint64, error)  { p.mu.Lock(); defer p.mu.Unlock(); return p.epoch, nil }
func (p *fakePort) CaptureRing() *ebpf.Map  { return nil }
func (p *fakePort) TapName() string         { return "" }

// chanSource feeds raw ring records, stamped by the test, to the Buffer.
type chanSource struct{ ch chan []byte }

func (s *chanSource) run(b *Buffer) error {
	for raw := range s.ch {
		// Land it like ringbuf.Reader.ReadInto does.
		if err := b.landRecord(func(dst []byte) ([]byte, error) {
			if cap(dst) < len(raw) {
				return slices.Clone(raw), nil
			}
			return append(dst, raw...), nil
		}); err != nil {
			return err
		}
	}
	return nil
}
func (s *chanSource) drainClosing(*Buffer, uint64) error { return nil }
func (s *chanSource) close() error                       { close(s.ch); return nil }

// rig is a Buffer whose release queues are SOCK_SEQPACKET socket pairs, so
// every tap write arrives as one message at the test's end.
type rig struct {
	b    *Buffer
	port *fakePort
	src  *chanSource
	peer []int
}

func newRig(t *testing.T, queues int, maxBytes int64) *rig {
	t.Helper()
	r := &rig{port: &fakePort{epoch: 1}, src: &chanSource{ch: make(chan []byte, 1024)}}
	var fds []int
	for i := 0; i < queues; i++ {
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		_ = unix.SetsockoptInt(sp[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		fds = append(fds, sp[0])
		r.peer = append(r.peer, sp[1])
		t.Cleanup(func() { unix.Close(sp[0]); unix.Close(sp[1]) })
	}
	b, err := newBuffer(r.port, r.src, fds, Options{MaxBytes: maxBytes, NoPin: true})
	if err != nil {
		t.Fatal(err)
	}
	r.b = b
	t.Cleanup(func() { b.Close() })
	return r
}

// udpSeq builds a UDP frame of flow (source port) carrying seq.
func udpSeq(t testing.TB, flow uint16, seq uint32) []byte {
	ls := ipLayers(false, false, layers.IPProtocolUDP)
	payload := make([]byte, 18)
	binary.BigEndian.PutUint32(payload, seq)
	return buildFrame(t, append(ls, &layers.UDP{SrcPort: layers.UDPPort(flow), DstPort: 9}, gopacket.Payload(payload))...)
}

// send stamps frame with epoch and feeds it to the reader goroutine.
func (r *rig) send(epoch uint64, frame []byte) {
	r.src.ch <- dataplane.AppendRecord(nil, dataplane.FrameHdr{Epoch: epoch, TstampNs: uint64(monotonicNow())}, frame)
}

// waitStats waits (bounded) until cond holds on the Buffer's counters.
func (r *rig) waitStats(t *testing.T, what string, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := r.b.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, s)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv returns every message queued on queue q's peer without blocking.
func (r *rig) recv(t *testing.T, q int) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 70000)
	for {
		n, _, err := unix.Recvfrom(r.peer[q], buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(buf[:n]))
	}
}

func (r *rig) recvAll(t *testing.T) [][]byte {
	var out [][]byte
	for q := range r.peer {
		out = append(out, r.recv(t, q)...)
	}
	return out
}

func TestHoldUntilRelease(t *testing.T) {
	r := newRig(t, 1, 0)
	for i := uint32(0); i < 10; i++ {
		r.send(1, udpSeq(t, 1000, i))
	}
	r.waitStats(t, "10 held", func(s Stats) bool { return s.HeldFrames == 10 })
	if got := r.recvAll(t); len(got) != 0 {
		t.Fatalf("%d frames left before any release", len(got))
	}
	if err := r.b.Release(1); !errors.Is(err, ErrOpenEpoch) {
		t.Fatalf("Release of the open epoch: err = %v, want ErrOpenEpoch", err)
	}
	if got := r.recvAll(t); len(got) != 0 {
		t.Fatalf("%d frames left after a refused release", len(got))
	}
	e, err := r.b.Advance()
	if err != nil || e != 1 || r.port.epoch != 2 {
		t.Fatalf("Advance = %d, %v; port epoch %d", e, err, r.port.epoch)
	}
	// Frames of the new epoch stay held when epoch 1 is released.
	r.send(2, udpSeq(t, 1000, 100))
	r.waitStats(t, "11 held", func(s Stats) bool { return s.HeldFrames == 11 })
	if err := r.b.Release(1); err != nil {
		t.Fatal(err)
	}
	got := r.recvAll(t)
	if len(got) != 10 {
		t.Fatalf("released %d frames, want 10", len(got))
	}
	for i, m := range got {
		if v, _ := DecodeVnetHdr(m); v != (VnetHdr{}) {
			t.Fatalf("frame %d: vnet header %+v, want zero", i, v)
		}
		if !bytes.Equal(m[VnetHdrLen:], udpSeq(t, 1000, uint32(i))) {
			t.Fatalf("frame %d differs or is out of order", i)
		}
	}
	if s := r.b.Stats(); s.HeldFrames != 1 || s.Released != 10 || !s.HasCommitted || s.Committed != 1 {
		t.Fatalf("stats after release: %+v", s)
	}
}

func TestStragglerReleasedAtOnce(t *testing.T) {
	r := newRig(t, 1, 0)
	if _, err := r.b.Advance(); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Release(1); err != nil {
		t.Fatal(err)
	}
	r.send(1, udpSeq(t, 7, 1)) // read after its epoch was committed
	r.send(2, udpSeq(t, 7, 2)) // open epoch: held
	r.waitStats(t, "straggler", func(s Stats) bool { return s.Stragglers == 1 && s.HeldFrames == 1 })
	got := r.recvAll(t)
	if len(got) != 1 || !bytes.Equal(got[0][VnetHdrLen:], udpSeq(t, 7, 1)) {
		t.Fatalf("got %d frames, want only the straggler", len(got))
	}
}

func TestByteBoundTailDrops(t *testing.T) {
	frame := udpSeq(t, 1, 0)
	per := int64(VnetHdrLen+len(frame)) + refOverhead
	r := newRig(t, 1, 5*per)
	for i := uint32(0); i < 8; i++ {
		r.send(1, udpSeq(t, 1, i))
	}
	s := r.waitStats(t, "drops", func(s Stats) bool { return s.HeldFrames+int64(s.Dropped) == 8 })
	if s.HeldFrames != 5 || s.Dropped != 3 || s.HeldBytes > 5*per {
		t.Fatalf("held %d (%d bytes), dropped %d: want 5 held, 3 dropped", s.HeldFrames, s.HeldBytes, s.Dropped)
	}
	if got := r.recvAll(t); len(got) != 0 {
		t.Fatalf("the bound released %d frames early", len(got))
	}
	if _, err := r.b.Advance(); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Release(1); err != nil {
		t.Fatal(err)
	}
	got := r.recvAll(t)
	if len(got) != 5 {
		t.Fatalf("released %d, want 5", len(got))
	}
	for i, m := range got { // the first five survive: tail drop
		if !bytes.Equal(m[VnetHdrLen:], udpSeq(t, 1, uint32(i))) {
			t.Fatalf("frame %d is not the %dth sent", i, i)
		}
	}
}

func TestDiscard(t *testing.T) {
	r := newRig(t, 1, 0)
	for i := uint32(0); i < 4; i++ {
		r.send(1, udpSeq(t, 1, i))
	}
	r.waitStats(t, "held", func(s Stats) bool { return s.HeldFrames == 4 })
	if err := r.b.Discard(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.Advance(); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Release(1); err != nil {
		t.Fatal(err)
	}
	if got := r.recvAll(t); len(got) != 0 {
		t.Fatalf("%d discarded frames were released", len(got))
	}
	if s := r.b.Stats(); s.Discarded != 4 || s.HeldFrames != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

// TestMultiQueueKeepsFlowOrder spreads 8 interleaved flows over 4 queues and
// checks that each flow lands on one queue, in sequence.
func TestMultiQueueKeepsFlowOrder(t *testing.T) {
	r := newRig(t, 4, 0)
	const flows, per = 8, 50
	for i := uint32(0); i < per; i++ {
		for f := uint16(0); f < flows; f++ {
			r.send(1, udpSeq(t, 2000+f, i))
		}
	}
	r.waitStats(t, "held", func(s Stats) bool { return s.HeldFrames == flows*per })
	if _, err := r.b.Advance(); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Release(1); err != nil {
		t.Fatal(err)
	}
	queueOf := map[uint16]int{}
	next := map[uint16]uint32{}
	used := map[int]bool{}
	for q := range r.peer {
		for _, m := range r.recv(t, q) {
			frame := m[VnetHdrLen:]
			flow := binary.BigEndian.Uint16(frame[34:])
			seq := binary.BigEndian.Uint32(frame[42:])
			if prev, ok := queueOf[flow]; ok && prev != q {
				t.Fatalf("flow %d on queues %d and %d", flow, prev, q)
			}
			queueOf[flow], used[q] = q, true
			if seq != next[flow] {
				t.Fatalf("flow %d: got seq %d, want %d", flow, seq, next[flow])
			}
			next[flow]++
		}
	}
	for f := uint16(0); f < flows; f++ {
		if next[2000+f] != per {
			t.Fatalf("flow %d: %d frames, want %d", 2000+f, next[2000+f], per)
		}
	}
	if len(used) < 2 {
		t.Fatalf("8 flows used %d of 4 queues", len(used))
	}
}

func TestWritePcap(t *testing.T) {
	r := newRig(t, 1, 0)
	frames := [][]byte{udpSeq(t, 1, 0), tcpFrame(t, true, 100, 0), udpSeq(t, 1, 1)}
	for _, f := range frames {
		r.send(1, f)
	}
	r.waitStats(t, "held", func(s Stats) bool { return s.HeldFrames == 3 })
	var buf bytes.Buffer
	if err := r.b.WritePcap(&buf); err != nil {
		t.Fatal(err)
	}
	rd, err := pcapgo.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range frames {
		data, ci, err := rd.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(data, want) || time.Since(ci.Timestamp) > time.Minute || time.Since(ci.Timestamp) < 0 {
			t.Fatalf("packet %d differs (stamp %v)", i, ci.Timestamp)
		}
	}
	if s := r.b.Stats(); s.HeldFrames != 3 || s.Released != 0 {
		t.Fatalf("dump changed the hold: %+v", s)
	}
}

func TestReleaseRebuildsVnetHdrAndSkipsMalformed(t *testing.T) {
	r := newRig(t, 1, 0)
	gso := tcpFrame(t, false, 20000, 0)
	r.src.ch <- dataplane.AppendRecord(nil, dataplane.FrameHdr{Epoch: 1, GsoSize: 1448, GsoSegs: 14, IpSummed: dataplane.ChecksumPartial, CsumStart: 34, CsumOffset: 16}, gso)
	r.src.ch <- []byte("garbage")
	r.waitStats(t, "held + malformed", func(s Stats) bool { return s.HeldFrames == 1 && s.Malformed == 1 })
	if _, err := r.b.Advance(); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Release(1); err != nil {
		t.Fatal(err)
	}
	got := r.recvAll(t)
	if len(got) != 1 {
		t.Fatalf("got %d frames", len(got))
	}
	v, _ := DecodeVnetHdr(got[0])
	want := VnetHdr{Flags: vnetFlagNeedsCsum, GSOType: vnetGSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	if v != want || !bytes.Equal(got[0][VnetHdrLen:], gso) {
		t.Fatalf("vnet header %+v, want %+v (frame equal: %v)", v, want, bytes.Equal(got[0][VnetHdrLen:], gso))
	}
}

func TestCloseWithReleaseAndStragglersInFlight(t *testing.T) {
	r := newRig(t, 2, 0)
	if _, err := r.b.Advance(); err != nil {
		t.Fatal(err)
	}
	if err := r.b.Release(1); err != nil {
		t.Fatal(err)
	}
	for i := uint32(0); i < 200; i++ {
		r.send(1, udpSeq(t, 1, i)) // stragglers: written at once
	}
	done := make(chan error)
	go func() { done <- r.b.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung with stragglers in flight")
	}
	if err := r.b.Release(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Release after Close: %v", err)
	}
}

// udpBig is udpSeq with a payload of n bytes.
func udpBig(t testing.TB, flow uint16, seq uint32, n int) []byte {
	ls := ipLayers(false, false, layers.IPProtocolUDP)
	payload := make([]byte, n)
	binary.BigEndian.PutUint32(payload, seq)
	return buildFrame(t, append(ls, &layers.UDP{SrcPort: layers.UDPPort(flow), DstPort: 9}, gopacket.Payload(payload))...)
}

// releaseDraining releases e while draining the socket pair (a release of
// megabytes does not fit its buffer) and returns the frames written.
func (r *rig) releaseDraining(t *testing.T, e uint64) [][]byte {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.b.Release(e) }()
	var got [][]byte
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return append(got, r.recvAll(t)...)
		default:
			got = append(got, r.recvAll(t)...)
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// TestChunksSharedAcrossEpochs: records of two epochs interleave in the
// same landing chunks over several chunks; releasing the first must not
// recycle memory the second still holds, even while new frames land.
func TestChunksSharedAcrossEpochs(t *testing.T) {
	r := newRig(t, 1, 64<<20)
	const per, size = 1500, 1000 // 3 MB: four chunks
	for _, e := range []uint64{1, 2} {
		if _, err := r.b.Advance(); err != nil || r.b.Stats().Epoch != e+1 {
			t.Fatalf("advance %d: %v", e, err)
		}
	}
	for i := uint32(0); i < per; i++ {
		r.send(1, udpBig(t, 1, i, size))
		r.send(2, udpBig(t, 2, i, size))
	}
	r.waitStats(t, "all held", func(s Stats) bool { return s.HeldFrames == 2*per })
	check := func(got [][]byte, flow uint16, n int) {
		t.Helper()
		if len(got) != n {
			t.Fatalf("flow %d: released %d frames, want %d", flow, len(got), n)
		}
		for i, m := range got {
			if !bytes.Equal(m[VnetHdrLen:], udpBig(t, flow, uint32(i), size)) {
				t.Fatalf("flow %d frame %d differs or is out of order", flow, i)
			}
		}
	}
	check(r.releaseDraining(t, 1), 1, per)
	for i := uint32(0); i < per; i++ { // lands in recycled chunks, if any were freed
		r.send(3, udpBig(t, 3, i, size))
	}
	r.waitStats(t, "epoch 3 held", func(s Stats) bool { return s.HeldFrames == 2*per })
	if _, err := r.b.Advance(); err != nil {
		t.Fatal(err)
	}
	check(r.releaseDraining(t, 2), 2, per)
	check(r.releaseDraining(t, 3), 3, per)
}
