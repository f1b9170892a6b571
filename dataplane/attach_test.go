// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/testenv"
)

// holdFor is how long tests watch the client for leaked frames.
const holdFor = 2 * time.Second

// TestHoldAndRelease: in buffer mode nothing reaches the client (ARP
// included) while the guest sends; frames are held with the right epoch;
// re-injected through the tap they all arrive, in order, and the bridge
// learns the guest's MAC on the guest port. Both paths, both attach methods.
func TestHoldAndRelease(t *testing.T) {
	for _, path := range []CapturePath{PathRing, PathRedirect} {
		for _, method := range []AttachMethod{AttachTCX, AttachClsact} {
			t.Run(path.String()+"/"+method.String(), func(t *testing.T) {
				testHoldAndRelease(t, path, method)
			})
		}
	}
}

func testHoldAndRelease(t *testing.T, path CapturePath, method AttachMethod) {
	e := newRigEnv(t, Options{Path: path, Attach: method, RingBytes: 1 << 20})
	if e.port.Path() != path || e.port.AttachMethod() != method {
		t.Fatalf("attached %v/%v, want %v/%v", e.port.Path(), e.port.AttachMethod(), path, method)
	}
	var tap *os.File
	if path == PathRedirect {
		tap = e.openTap() // path B holds frames in the tap's queue: a reader must be attached
	}
	const n1, n2 = 20, 5
	done := e.collectAsync(holdFor)
	e.kernelUDPFromGuest(3)
	e.sendFromGuest(0, n1, holdFor/2/n1)
	if err := e.port.SetEpoch(2); err != nil {
		t.Fatal(err)
	}
	e.sendFromGuest(n1, n2, 0)
	if leaked := done(); len(leaked) != 0 {
		t.Fatalf("client received %d frames while buffering (first %x)", len(leaked), leaked[0])
	}
	if c := e.counters(); c.Captured < n1+n2 || c.Passed != 0 || c.Injected != 0 {
		t.Fatalf("counters while holding: %+v", c)
	}
	if ports, err := e.rig.FDBPorts(e.rig.GuestMAC); err != nil || len(ports) != 0 {
		t.Fatalf("bridge learned the guest on %v before release (err %v)", ports, err)
	}

	// Release: write every held frame into the tap, in capture order.
	if tap == nil {
		tap = e.openTap()
	}
	var held [][]byte
	if path == PathRing {
		recs := drainRing(t, e.port, 200*time.Millisecond)
		checkEpochs(t, recs, n1)
		for _, r := range recs {
			held = append(held, append(vnetHdr(r), r.Frame...))
		}
	} else {
		held = readTap(t, tap, 200*time.Millisecond)
	}
	if got := seqs(stripVnet(held)); !slices.Equal(got, seqRange(0, n1+n2)) {
		t.Fatalf("held test frames %v, want 0..%d in order", got, n1+n2-1)
	}
	done = e.collectAsync(time.Second)
	for _, f := range held {
		if _, err := tap.Write(f); err != nil {
			t.Fatalf("write tap: %v", err)
		}
	}
	released := done()
	if got := seqs(released); !slices.Equal(got, seqRange(0, n1+n2)) {
		t.Fatalf("client received test frames %v, want 0..%d in order", got, n1+n2-1)
	}
	if !slices.ContainsFunc(released, isARP) {
		t.Errorf("the guest's held ARP request was not released")
	}
	if c := e.counters(); c.Injected < uint64(len(held)) {
		t.Errorf("injected %d, want >= %d", c.Injected, len(held))
	}
	ports, err := e.rig.FDBPorts(e.rig.GuestMAC)
	if err != nil || !slices.Equal(ports, []string{e.rig.Port}) {
		t.Errorf("bridge FDB has the guest MAC on %v, want only %s (err %v)", ports, e.rig.Port, err)
	}
}

// checkEpochs: frames sent before SetEpoch(2) carry FirstEpoch, later ones 2.
func checkEpochs(t *testing.T, recs []*Record, n1 int) {
	t.Helper()
	for _, r := range recs {
		s := seqs([][]byte{r.Frame})
		if len(s) == 0 {
			continue
		}
		want := uint64(FirstEpoch)
		if int(s[0]) >= n1 {
			want = 2
		}
		if r.Hdr.Epoch != want {
			t.Errorf("frame %d stamped epoch %d, want %d", s[0], r.Hdr.Epoch, want)
		}
	}
}

func stripVnet(frames [][]byte) [][]byte {
	out := make([][]byte, len(frames))
	for i, f := range frames {
		out[i] = f[VnetHdrLen:]
	}
	return out
}

func seqRange(from, to int) []uint32 {
	var s []uint32
	for i := from; i < to; i++ {
		s = append(s, uint32(i))
	}
	return s
}

// TestBlockAndPass: block drops everything, released frames included; pass
// forwards everything.
func TestBlockAndPass(t *testing.T) {
	e := newRigEnv(t, Options{})
	// Auto takes path ring and tcx where the kernel has them, else the fallbacks.
	wantPath, wantAttach := PathRedirect, AttachClsact
	if testenv.ProbeRingPath() == nil {
		wantPath = PathRing
	}
	if testenv.ProbeTCX() == nil {
		wantAttach = AttachTCX
	}
	if e.port.Path() != wantPath || e.port.AttachMethod() != wantAttach {
		t.Errorf("auto chose %v/%v, want %v/%v", e.port.Path(), e.port.AttachMethod(), wantPath, wantAttach)
	}
	const n = 10
	if err := e.port.SetMode(ModeBlock); err != nil {
		t.Fatal(err)
	}
	tap := e.openTap()
	done := e.collectAsync(holdFor / 2)
	e.sendFromGuest(0, n, 10*time.Millisecond)
	rec := &Record{Frame: e.guestFrame(200, 99)}
	if _, err := tap.Write(append(vnetHdr(rec), rec.Frame...)); err != nil {
		t.Fatal(err)
	}
	if leaked := done(); len(leaked) != 0 {
		t.Fatalf("client received %d frames in block mode", len(leaked))
	}
	if c := e.counters(); c.Blocked < n+1 || c.Captured != 0 || c.Injected != 0 {
		t.Fatalf("counters in block mode: %+v", c)
	}
	if err := e.port.SetMode(ModePass); err != nil {
		t.Fatal(err)
	}
	if m, err := e.port.Mode(); err != nil || m != ModePass {
		t.Fatalf("mode %v (err %v), want pass", m, err)
	}
	done = e.collectAsync(holdFor / 2)
	e.sendFromGuest(100, n, 10*time.Millisecond)
	if got := seqs(done()); !slices.Equal(got, seqRange(100, 100+n)) {
		t.Fatalf("pass mode: client got %v", got)
	}
	if c := e.counters(); c.Passed < n {
		t.Fatalf("passed %d, want >= %d", c.Passed, n)
	}
}

// TestKilledDaemon: after Close (a daemon that died), the programs stay
// attached and output stays held; Open finds the state again; Detach removes
// it all and output flows again.
func TestKilledDaemon(t *testing.T) {
	for _, path := range []CapturePath{PathRing, PathRedirect} {
		for _, method := range []AttachMethod{AttachTCX, AttachClsact} {
			t.Run(path.String()+"/"+method.String(), func(t *testing.T) {
				testKilledDaemon(t, path, method)
			})
		}
	}
}

func testKilledDaemon(t *testing.T, path CapturePath, method AttachMethod) {
	e := newRigEnv(t, Options{Attach: method, Path: path})
	name := e.port.Name()
	if err := e.port.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.port.Mode(); !errors.Is(err, ErrClosed) {
		t.Errorf("Mode after Close: %v, want ErrClosed", err)
	}
	e.port = nil
	const n = 10
	done := e.collectAsync(holdFor / 2)
	e.sendFromGuest(0, n, 20*time.Millisecond)
	if leaked := done(); len(leaked) != 0 {
		t.Fatalf("client received %d frames after the daemon died", len(leaked))
	}
	p, err := Open(name, e.pinRoot, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.port = p
	if p.AttachMethod() != method || p.Path() != path || p.PortName() != e.rig.Port {
		t.Fatalf("reopened %v/%v on %q", p.AttachMethod(), p.Path(), p.PortName())
	}
	if c, err := p.Counters(); err != nil || c.Captured < n {
		t.Fatalf("counters after restart %+v (err %v), want >= %d captured", c, err, n)
	}
	if path == PathRing { // path B dropped them at the tap: no reader (still never leaked)
		if got := seqs(framesOf(drainRing(t, p, 200*time.Millisecond))); !slices.Equal(got, seqRange(0, n)) {
			t.Fatalf("ring after restart holds %v", got)
		}
	}
	if m, err := p.Mode(); err != nil || m != ModeBuffer {
		t.Fatalf("mode %v err %v", m, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p, err = Open(name, e.pinRoot, nil); err != nil {
		t.Fatalf("second open: %v", err)
	}
	e.port = nil
	e.inHost(p.Detach)
	checkDetached(t, e, p)
	done = e.collectAsync(holdFor / 2)
	e.sendFromGuest(50, n, 10*time.Millisecond)
	if got := seqs(done()); !slices.Equal(got, seqRange(50, 50+n)) {
		t.Fatalf("after detach the client got %v", got)
	}
}

func framesOf(recs []*Record) [][]byte {
	var out [][]byte
	for _, r := range recs {
		out = append(out, r.Frame)
	}
	return out
}

// checkDetached: no pins, no tap, no filter left.
func checkDetached(t *testing.T, e *rigEnv, p *Port) {
	t.Helper()
	if _, err := os.Stat(p.PinDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir %s still there (err %v)", p.PinDir(), err)
	}
	e.inHost(func() error {
		if _, err := netlink.LinkByName(p.TapName()); err == nil {
			t.Errorf("tap %s still there", p.TapName())
		}
		for _, h := range p.hooks {
			if ok, err := clsactAttached(h); err == nil && ok {
				t.Errorf("filter %s still there", h)
			}
		}
		return nil
	})
	if _, err := Open(p.Name(), e.pinRoot, nil); !errors.Is(err, ErrNotAttached) {
		t.Errorf("Open after Detach: %v, want ErrNotAttached", err)
	}
}

// TestInputLog: every frame to the guest is logged with the epoch and passed.
func TestInputLog(t *testing.T) {
	for _, path := range []CapturePath{PathRing, PathRedirect} {
		for _, method := range []AttachMethod{AttachTCX, AttachClsact} {
			t.Run(path.String()+"/"+method.String(), func(t *testing.T) {
				testInputLog(t, Options{InputLog: true, Path: path, Attach: method})
			})
		}
	}
}

// testInputLog attaches with opts, sends frames to the guest and checks
// that each arrived and was logged with the epoch; it returns the records.
func testInputLog(t *testing.T, opts Options) (*rigEnv, []*Record) {
	e := newRigEnv(t, opts)
	if err := e.port.SetEpoch(7); err != nil {
		t.Fatal(err)
	}
	const n = 10
	got := make(chan [][]byte, 1)
	go func() { f, _ := e.guest.Collect(holdFor/2, n); got <- f }()
	for i := 0; i < n; i++ {
		f := frameFor(t, e.rig.ClientMAC, e.rig.GuestMAC, e.rig.ClientIP, e.rig.GuestIP, 300, uint32(i))
		if err := e.client.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	if s := seqs(<-got); !slices.Equal(s, seqRange(0, n)) {
		t.Fatalf("guest received %v", s)
	}
	rd := mustReader(t, e.port.InputLogRing())
	recs := readAll(t, rd, 200*time.Millisecond)
	if s := seqs(framesOf(recs)); !slices.Equal(s, seqRange(0, n)) {
		t.Fatalf("input log holds %v", s)
	}
	for _, r := range recs {
		if r.Hdr.Epoch != 7 {
			t.Errorf("input record epoch %d, want 7", r.Hdr.Epoch)
		}
	}
	if c := e.counters(); c.InputLogged < n || c.InputLogFull != 0 {
		t.Errorf("counters %+v", c)
	}
	return e, recs
}

// TestTooBig: a frame over 64 KiB is dropped and counted, never passed.
func TestTooBig(t *testing.T) {
	e := newRigEnv(t, Options{Path: PathRing})
	for _, s := range []struct {
		ns  *testenv.NS
		if_ string
	}{{e.rig.Guest, e.rig.GuestIf}, {e.rig.Host, e.rig.Port}, {e.rig.Host, e.rig.ClientPort}, {e.rig.Client, e.rig.ClientIf}} {
		if err := testenv.SetMTU(s.ns, s.if_, 65535); err != nil {
			t.Fatal(err)
		}
	}
	done := e.collectAsync(holdFor / 2)
	if err := e.guest.Send(e.guestFrame(65535+14, 1)); err != nil {
		t.Fatal(err)
	}
	if leaked := done(); len(leaked) != 0 {
		t.Fatalf("client received %d frames", len(leaked))
	}
	if c := e.counters(); c.TooBig != 1 || c.Captured != 0 {
		t.Fatalf("counters %+v, want TooBig 1", c)
	}
}
