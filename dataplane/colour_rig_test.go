// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/testenv"
)

// groupRig is two group members A and B and a watcher W on one bridge,
// each guest end in its own namespace:
//
//	A: ga ── veth ── host: va ─┐
//	B: gb ── veth ── host: vb ─┼─ bridge (learning off on vb: frames to B
//	W: gw ── veth ── host: vw ─┘  are flooded, so W sees them tagged)
type groupRig struct {
	t          *testing.T
	host       *testenv.NS
	ns         map[string]*testenv.NS // by member: a, b, w
	mac        map[string]net.HardwareAddr
	a, b       *Port
	sockA      *testenv.PacketSock
	auxB, auxW *auxSock
}

func newGroupRig(t *testing.T, opts Options) *groupRig {
	t.Helper()
	requireFor(t, opts.Path, opts.Attach)
	base := testenv.UniqueName("rgc")
	r := &groupRig{t: t, host: testenv.NewNS(t, base+"-h"), ns: map[string]*testenv.NS{},
		mac: map[string]net.HardwareAddr{}}
	for i, m := range []string{"a", "b", "w"} {
		r.ns[m] = testenv.NewNS(t, base+"-"+m)
		r.mac[m] = net.HardwareAddr{0x02, 0x72, 0x67, 0x63, 0x00, byte(i + 1)}
	}
	r.in(r.host, r.buildHost)
	for _, m := range []string{"a", "b", "w"} {
		r.in(r.ns[m], func() error { return guestEnd("g"+m, r.mac[m]) })
		if err := testenv.WaitOperUp(r.ns[m], "g"+m, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := testenv.WaitOperUp(r.host, "v"+m, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	pinRoot := testenv.PinRoot(t, "rgc")
	for _, m := range []string{"a", "b"} {
		o := opts
		o.Name, o.Port, o.PinRoot = testenv.UniqueName("rgc"+m), "v"+m, pinRoot
		var p *Port
		r.in(r.host, func() (err error) { p, err = Attach(o); return err })
		t.Cleanup(func() { r.in(r.host, p.Detach) })
		if m == "a" {
			r.a = p
		} else {
			r.b = p
		}
	}
	must(t, r.a.SetGroupPeers([]net.HardwareAddr{r.mac["b"]}))
	must(t, r.b.SetGroupPeers([]net.HardwareAddr{r.mac["a"]}))
	var err error
	if r.sockA, err = testenv.OpenPacketSock(r.ns["a"], "ga"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.sockA.Close() })
	r.auxB, r.auxW = openAuxSock(t, r.ns["b"], "gb"), openAuxSock(t, r.ns["w"], "gw")
	return r
}

func (r *groupRig) buildHost() error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br"}}
	if err := netlink.LinkAdd(br); err != nil {
		return err
	}
	for _, m := range []string{"a", "b", "w"} {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v" + m, MasterIndex: br.Index},
			PeerName: "g" + m, PeerNamespace: netlink.NsFd(int(r.ns[m].Handle()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth v%s: %w", m, err)
		}
		lk, err := netlink.LinkByName("v" + m)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lk); err != nil {
			return err
		}
		if m == "b" {
			if err := netlink.LinkSetLearning(lk, false); err != nil {
				return err
			}
		}
	}
	return netlink.LinkSetUp(br)
}

// guestEnd sets a guest end's MAC, turns IPv6 off (no stray frames) and
// brings it up.
func guestEnd(name string, mac net.HardwareAddr) error {
	lk, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetHardwareAddr(lk, mac); err != nil {
		return err
	}
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0o644)
	return netlink.LinkSetUp(lk)
}

func (r *groupRig) in(ns *testenv.NS, fn func() error) {
	r.t.Helper()
	if err := ns.Do(fn); err != nil {
		r.t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// send sends seq from A's guest to dst.
func (r *groupRig) send(dst string, seq uint32) {
	r.t.Helper()
	f := frameFor(r.t, r.mac["a"], r.mac[dst], net.IP{10, 214, 0, 1}, net.IP{10, 214, 0, 2}, 300, seq)
	must(r.t, r.sockA.Send(f))
}

// auxSock is a receiving packet socket that reports a frame's offloaded
// VLAN tag (PACKET_AUXDATA): a frame's bytes never show it.
type auxSock struct{ fd int }

type auxFrame struct {
	frame      []byte
	tagged     bool // an offloaded tag, or a tag in the bytes
	tpid, vlan uint16
}

func openAuxSock(t *testing.T, ns *testenv.NS, ifname string) *auxSock {
	t.Helper()
	s := &auxSock{fd: -1}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons16(unix.ETH_P_ALL))
		if s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		return unix.Bind(s.fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

func htons16(v uint16) uint16 { return v<<8 | v>>8 }

// collect returns our test frames (UDP to port 5000) received within d.
func (s *auxSock) collect(t *testing.T, d time.Duration) map[uint32][]auxFrame {
	t.Helper()
	out := map[uint32][]auxFrame{}
	buf, oob := make([]byte, 1<<16), make([]byte, 256)
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return out
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		must(t, unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
		n, oobn, _, from, err := unix.Recvmsg(s.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		must(t, err)
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		f := auxFrame{frame: append([]byte(nil), buf[:n]...)}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		must(t, err)
		for _, m := range msgs {
			if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA ||
				len(m.Data) < int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				continue
			}
			aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
			if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
				f.tagged, f.tpid, f.vlan = true, aux.Vlan_tpid, aux.Vlan_tci&0xfff
			}
		}
		if n >= 18 && binary.BigEndian.Uint16(f.frame[12:]) == 0x88a8 {
			f.tagged, f.tpid, f.vlan = true, 0x88a8, binary.BigEndian.Uint16(f.frame[14:])&0xfff
		}
		for _, seq := range seqs([][]byte{untag(f.frame)}) {
			out[seq] = append(out[seq], f)
		}
	}
}

func untag(f []byte) []byte {
	if len(f) >= 18 && binary.BigEndian.Uint16(f[12:]) == 0x88a8 {
		return append(append([]byte(nil), f[:12]...), f[16:]...)
	}
	return f
}

// TestGroupRig: two members on one bridge, A at round 5 sending to B, on
// both capture paths (the ring one with the kern-ctx egress program, the
// redirect one with the portable): frames to a peer pass at once, tagged
// on the wire and untagged at the guest; B holds a later round's frame
// until its own round reaches it, logs an earlier round's as in transit;
// output to a non-peer stays under output commit; the no-hold control
// delivers at once; the 4095 -> 0 wrap orders rounds right.
func TestGroupRig(t *testing.T) {
	for _, o := range []Options{
		{Path: PathRing, InputLogKind: InputLogKernCtx},
		{Path: PathRedirect, InputLogKind: InputLogPortable},
	} {
		t.Run(o.Path.String(), func(t *testing.T) {
			o.InputLog, o.Group = true, true
			testGroupRig(t, o)
		})
	}
}

func testGroupRig(t *testing.T, opts Options) {
	r := newGroupRig(t, opts)
	must(t, r.a.SetRound(5))
	var q *HoldQueue
	r.in(r.host, func() (err error) { q, err = StartHoldQueue(r.b, 0, nil); return err })
	t.Cleanup(func() { q.Close() })
	inputLog := mustReader(t, r.b.InputLogRing())
	// wantLog checks that B's input log holds seq with colour and flags.
	wantLog := func(seq, colour uint32, internal bool) {
		t.Helper()
		for _, rec := range readAll(t, inputLog, 300*time.Millisecond) {
			if s := seqs([][]byte{rec.Frame}); len(s) == 1 && s[0] == seq {
				if rec.Hdr.Colour != colour || (rec.Hdr.Flags&FrameInternal != 0) != internal {
					t.Errorf("seq %d logged with colour %d flags %#x, want %d internal %v", seq, rec.Hdr.Colour, rec.Hdr.Flags, colour, internal)
				}
				return
			}
		}
		t.Errorf("seq %d not in B's input log", seq)
	}
	// atB checks that seq reached B's guest exactly once (or not), untagged.
	atB := func(seq uint32, want bool, d time.Duration) {
		t.Helper()
		got := r.auxB.collect(t, d)[seq]
		switch {
		case !want && len(got) != 0:
			t.Errorf("seq %d reached B's guest, want held", seq)
		case want && len(got) != 1:
			t.Errorf("seq %d reached B's guest %d times, want once", seq, len(got))
		case want && got[0].tagged:
			t.Errorf("seq %d reached B's guest with tag %#x/%d: the guest must never see the colour", seq, got[0].tpid, got[0].vlan)
		}
	}

	// Same round: delivered at once (no release of output commit ever runs
	// here), tagged 0x88a8/5 on the bridge.
	must(t, r.b.SetRound(5))
	r.send("b", 1)
	atB(1, true, 300*time.Millisecond)
	if w := r.auxW.collect(t, 100*time.Millisecond)[1]; len(w) != 1 || !w[0].tagged || w[0].tpid != 0x88a8 || w[0].vlan != 5 {
		t.Errorf("on the bridge seq 1 is %+v, want one frame tagged 0x88a8 VID 5", w)
	}
	wantLog(1, 5, true)

	// B behind: held until B's round reaches 5, then delivered once.
	must(t, r.b.SetRound(4))
	r.send("b", 2)
	atB(2, false, 300*time.Millisecond)
	if c, _ := r.b.Counters(); c.Held != 1 {
		t.Errorf("B held %d frames, want 1", c.Held)
	}
	must(t, r.b.SetRound(5))
	if _, err := q.Release(5); err != nil {
		t.Fatal(err)
	}
	atB(2, true, 500*time.Millisecond)
	wantLog(2, 5, true)

	// B ahead: in transit, delivered at once, logged with colour 5.
	must(t, r.b.SetRound(6))
	r.send("b", 3)
	atB(3, true, 300*time.Millisecond)
	wantLog(3, 5, true)
	if c, _ := r.b.Counters(); c.InTransit != 1 {
		t.Errorf("in transit %d, want 1", c.InTransit)
	}

	// A non-peer (W) gets nothing before commit: A's output is buffered.
	before, _ := r.a.Counters()
	r.send("w", 4)
	if w := r.auxW.collect(t, 300*time.Millisecond)[4]; len(w) != 0 {
		t.Errorf("non-peer W got seq 4 before any commit")
	}
	if after, _ := r.a.Counters(); after.Captured != before.Captured+1 || after.InternalSent != 3 {
		t.Errorf("A captured %d -> %d, sent internal %d; want one more captured, 3 internal", before.Captured, after.Captured, after.InternalSent)
	}

	// Negative control: B behind but no-hold: delivered at once.
	must(t, r.b.SetUnsafeNoHold(true))
	must(t, r.b.SetRound(4))
	r.send("b", 5)
	atB(5, true, 300*time.Millisecond)
	must(t, r.b.SetUnsafeNoHold(false))

	// The wrap: A at 4096 (colour 0) is ahead of B at 4095 ...
	must(t, r.a.SetRound(4096))
	must(t, r.b.SetRound(4095))
	r.send("b", 6)
	atB(6, false, 300*time.Millisecond)
	must(t, r.b.SetRound(4096))
	if _, err := q.Release(4096); err != nil {
		t.Fatal(err)
	}
	atB(6, true, 500*time.Millisecond)
	// ... and A at 4095 is behind B at 4096: in transit.
	must(t, r.a.SetRound(4095))
	r.send("b", 7)
	atB(7, true, 300*time.Millisecond)

	// B leaves the group's protection (round 0): what it held is
	// delivered, and nothing is held any more.
	must(t, r.a.SetRound(11))
	must(t, r.b.SetRound(10))
	r.send("b", 8)
	atB(8, false, 300*time.Millisecond)
	if _, err := q.ReleaseAll(); err == nil {
		t.Error("ReleaseAll at round 10 accepted: the program would hold the frames again")
	}
	must(t, r.b.SetRound(0))
	if n, err := q.ReleaseAll(); err != nil || n != 1 {
		t.Fatalf("ReleaseAll: %d, %v; want the one held frame", n, err)
	}
	atB(8, true, 500*time.Millisecond)
	must(t, r.a.SetRound(12))
	r.send("b", 9)
	atB(9, true, 300*time.Millisecond)
	if st := q.Stats(); st.Released != 3 || st.Frames != 0 || st.Dropped+st.SendErrors+st.BadRecords != 0 {
		t.Errorf("hold queue %+v, want 3 released, none left or lost", st)
	}
}
