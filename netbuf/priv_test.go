// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/dataplane"
)

var paths = []dataplane.CapturePath{dataplane.PathRing, dataplane.PathRedirect}

// clientRcvBuf is the receive buffer of the client's UDP sockets: a whole
// released burst arrives before the test reads, and small datagrams cost
// about 768 bytes of buffer each (skb truesize).
const clientRcvBuf = 16 << 20

// udpPair opens a UDP socket in the client namespace and one in the guest
// namespace connected to it.
func (r *nsRig) udpPair(tb testing.TB, port int) (guest *net.UDPConn, client *net.UDPConn) {
	tb.Helper()
	err := r.Client.Do(func() error {
		var err error
		client, err = net.ListenUDP("udp4", &net.UDPAddr{IP: r.ClientIP, Port: port})
		if err == nil {
			err = forceRcvBuf(client, clientRcvBuf)
		}
		return err
	})
	if err == nil {
		err = r.Guest.Do(func() error {
			var err error
			guest, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: r.ClientIP, Port: port})
			return err
		})
	}
	if err != nil {
		tb.Fatalf("udp sockets: %v", err)
	}
	tb.Cleanup(func() { guest.Close(); client.Close() })
	return guest, client
}

// forceRcvBuf sets c's receive buffer to n bytes with SO_RCVBUFFORCE and
// checks that it took. SetReadBuffer (SO_RCVBUF) is silently capped by
// net.core.rmem_max: 212992 on a stock Debian 12, where the client socket
// then held only 555 datagrams of a 2000-datagram release and dropped the
// rest (UDP RcvbufErrors) although the data plane released all 2000.
func forceRcvBuf(c *net.UDPConn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var got int
	cerr := rc.Control(func(fd uintptr) {
		if err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); err == nil {
			got, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		}
	})
	if err = errors.Join(cerr, err); err != nil {
		return fmt.Errorf("client receive buffer: %w", err)
	}
	if got < n { // the kernel reports twice the size asked for
		return fmt.Errorf("client receive buffer is %d bytes, want at least %d", got, n)
	}
	return nil
}

// sendSeq sends n datagrams carrying 0..n-1 (plus pad bytes).
func sendSeq(tb testing.TB, c *net.UDPConn, from, n, pad int) {
	tb.Helper()
	msg := make([]byte, 4+pad)
	for i := from; i < from+n; i++ {
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := c.Write(msg); err != nil {
			tb.Fatalf("send %d: %v", i, err)
		}
	}
}

// recvSeq reads datagrams until none arrives for quiet, and returns their
// sequence numbers.
func recvSeq(tb testing.TB, c *net.UDPConn, quiet time.Duration) []uint32 {
	tb.Helper()
	var out []uint32
	buf := make([]byte, 65536)
	for {
		if err := c.SetReadDeadline(time.Now().Add(quiet)); err != nil {
			tb.Fatal(err)
		}
		n, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		if n >= 4 {
			out = append(out, binary.BigEndian.Uint32(buf))
		}
	}
}

// recvSeqN reads datagrams until n arrived or within elapsed, then for a
// short quiet time more (so duplicates and extras show). Released frames
// may still be crossing the kernel when Release returns, and a loaded
// machine (a TCG guest on a busy host) can stall that for a while: the
// wait is bounded by within, not by a gap between datagrams.
func recvSeqN(tb testing.TB, c *net.UDPConn, n int, within time.Duration) []uint32 {
	tb.Helper()
	var out []uint32
	buf := make([]byte, 65536)
	deadline := time.Now().Add(within)
	for len(out) < n && time.Now().Before(deadline) {
		if err := c.SetReadDeadline(deadline); err != nil {
			tb.Fatal(err)
		}
		m, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		if m >= 4 {
			out = append(out, binary.BigEndian.Uint32(buf))
		}
	}
	return append(out, recvSeq(tb, c, 100*time.Millisecond)...)
}

func wantSeq(tb testing.TB, got []uint32, from, n int) {
	tb.Helper()
	if len(got) != n {
		tb.Fatalf("received %d datagrams, want %d", len(got), n)
	}
	for i, s := range got {
		if s != uint32(from+i) {
			tb.Fatalf("datagram %d carries seq %d, want %d (out of order)", i, s, from+i)
		}
	}
}

// waitHeld waits (bounded) until the buffer holds n frames.
func waitHeld(tb testing.TB, b *Buffer, n int64) Stats {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := b.Stats()
		if s.HeldFrames+int64(s.Dropped) >= n || time.Now().After(deadline) {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHoldReleaseColdARP: with a cold ARP cache the guest's first frame is
// an ARP request. Nothing reaches the client before Release; Release(1)
// lets the ARP request out; the datagram, sent after the reply, belongs to
// epoch 2 and leaves only with Release(2).
func TestHoldReleaseColdARP(t *testing.T) {
	for _, path := range paths {
		t.Run(path.String(), func(t *testing.T) {
			r := newNSRig(t)
			_, b := r.attach(t, path, Options{})
			sn := r.sniff(t)
			g, c := r.udpPair(t, 7001)
			sendSeq(t, g, 0, 1, 16)
			if got := sn.frames(r.GuestMAC, 2*time.Second); len(got) != 0 {
				t.Fatalf("client saw %d frames from the guest before any release", len(got))
			}
			if s := b.Stats(); s.HeldFrames < 1 {
				t.Fatalf("nothing held: %+v", s)
			}
			e, err := b.Advance()
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Release(e); err != nil {
				t.Fatal(err)
			}
			got := sn.frames(r.GuestMAC, 500*time.Millisecond)
			if len(got) == 0 || layers.EthernetType(binary.BigEndian.Uint16(got[0][12:])) != layers.EthernetTypeARP {
				t.Fatalf("after Release(%d): %d frames, want the ARP request first", e, len(got))
			}
			for _, f := range got {
				if layers.EthernetType(binary.BigEndian.Uint16(f[12:])) != layers.EthernetTypeARP {
					t.Fatal("the datagram left with epoch 1, but it was sent after the ARP reply (epoch 2)")
				}
			}
			if e2, err := b.Advance(); err != nil || b.Release(e2) != nil {
				t.Fatalf("second epoch: %v", err)
			}
			wantSeq(t, recvSeqN(t, c, 1, 10*time.Second), 0, 1)
		})
	}
}

// TestHoldReleaseUDPInOrder: 2000 datagrams held for ~2 s with nothing
// reaching the client, then released in order.
func TestHoldReleaseUDPInOrder(t *testing.T) {
	for _, path := range paths {
		t.Run(path.String(), func(t *testing.T) {
			r := newNSRig(t)
			r.staticNeighbors(t)
			_, b := r.attach(t, path, Options{})
			sn := r.sniff(t)
			g, c := r.udpPair(t, 7002)
			const n = 2000
			sendSeq(t, g, 0, n, 60)
			if got := sn.frames(r.GuestMAC, 2*time.Second); len(got) != 0 {
				t.Fatalf("client saw %d frames before release", len(got))
			}
			if s := waitHeld(t, b, n); s.HeldFrames != n {
				t.Fatalf("held %d frames, want %d: %+v", s.HeldFrames, n, s)
			}
			e, _ := b.Advance()
			if err := b.Release(e); err != nil {
				t.Fatal(err)
			}
			wantSeq(t, recvSeqN(t, c, n, 10*time.Second), 0, n)
			if s := b.Stats(); s.Released != n || s.HeldFrames != 0 {
				t.Fatalf("stats: %+v", s)
			}
		})
	}
}

// TestReleaseKeepsPerFlowOrder: 8 interleaved UDP flows held, then released
// through 4 tap queues with pinned writers; every flow arrives complete and
// in order at the client's kernel.
func TestReleaseKeepsPerFlowOrder(t *testing.T) {
	for _, path := range paths {
		t.Run(path.String(), func(t *testing.T) { testReleaseKeepsPerFlowOrder(t, path) })
	}
}

func testReleaseKeepsPerFlowOrder(t *testing.T, path dataplane.CapturePath) {
	r := newNSRig(t)
	r.staticNeighbors(t)
	_, b := r.attach(t, path, Options{Queues: 4})
	const flows, per = 8, 500
	var gs, cs []*net.UDPConn
	for f := 0; f < flows; f++ {
		g, c := r.udpPair(t, 7400+f)
		gs, cs = append(gs, g), append(cs, c)
	}
	for i := 0; i < per; i++ {
		for f := 0; f < flows; f++ {
			sendSeq(t, gs[f], i, 1, 16)
		}
	}
	if s := waitHeld(t, b, flows*per); s.HeldFrames != flows*per {
		t.Fatalf("held %d frames: %+v", s.HeldFrames, s)
	}
	e, _ := b.Advance()
	if err := b.Release(e); err != nil {
		t.Fatal(err)
	}
	got := make([][]uint32, flows)
	for f := 0; f < flows; f++ {
		got[f] = recvSeqN(t, cs[f], per, 10*time.Second)
	}
	for f := 0; f < flows; f++ {
		if len(got[f]) != per {
			t.Errorf("flow %d: %d of %d datagrams; softnet drops %d; %+v", f, len(got[f]), per, softnetDrops(t), b.Stats())
		}
	}
	for f := 0; f < flows; f++ {
		wantSeq(t, got[f], 0, per)
	}
}

// softnetDrops is the kernel's count of frames dropped because a CPU's
// backlog queue was full (/proc/net/softnet_stat, second column, all CPUs).
func softnetDrops(tb testing.TB) uint64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		tb.Logf("softnet_stat: %v", err)
		return 0
	}
	var sum uint64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			v, _ := strconv.ParseUint(f[1], 16, 64)
			sum += v
		}
	}
	return sum
}
