// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/dataplane"
	"github.com/resilire/resilire/testenv"
)

// nsRig is testenv's bridge rig (guest, host with a bridge, client; names
// prefixed rnb) plus a private pin root for the data plane.
type nsRig struct {
	*testenv.BridgeRig
	pinRoot string
}

const rigVM = "rnb-vm"

func newNSRig(tb testing.TB) *nsRig {
	tb.Helper()
	testenv.RequirePrivileged(tb)
	r := &nsRig{BridgeRig: testenv.NewBridgeRig(tb, "rnb"), pinRoot: testenv.PinRoot(tb, "rnb")}
	err := r.Host.Do(func() error {
		// br_netfilter (loaded on this host) would run iptables on every
		// bridged frame; a Remus host's bridge does not need it, and it
		// would dominate the per-frame cost of release. Best effort: the
		// files exist only when the module is loaded.
		for _, f := range []string{"iptables", "ip6tables", "arptables"} {
			_ = os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-"+f, []byte("0"), 0o644)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// staticNeighbors adds permanent ARP entries on both ends, so traffic does
// not depend on (held) ARP exchanges.
func (r *nsRig) staticNeighbors(tb testing.TB) {
	tb.Helper()
	for _, e := range []struct {
		ns  *testenv.NS
		dev string
		ip  net.IP
		mac net.HardwareAddr
	}{{r.Guest, r.GuestIf, r.ClientIP, r.ClientMAC}, {r.Client, r.ClientIf, r.GuestIP, r.GuestMAC}} {
		err := e.ns.Do(func() error {
			lk, err := netlink.LinkByName(e.dev)
			if err != nil {
				return err
			}
			return netlink.NeighSet(&netlink.Neigh{LinkIndex: lk.Attrs().Index, State: netlink.NUD_PERMANENT,
				IP: e.ip, HardwareAddr: e.mac, Family: unix.AF_INET})
		})
		if err != nil {
			tb.Fatalf("static neighbor: %v", err)
		}
	}
}

// attachPort attaches the data plane to the guest port (buffer mode).
func (r *nsRig) attachPort(tb testing.TB, path dataplane.CapturePath) *dataplane.Port {
	tb.Helper()
	if path == dataplane.PathRing {
		testenv.RequireFeature(tb, testenv.FeatureRingPath, testenv.ProbeRingPath())
	}
	var p *dataplane.Port
	err := r.Host.Do(func() (err error) {
		p, err = dataplane.Attach(dataplane.Options{Name: rigVM, Port: r.Port, Path: path, PinRoot: r.pinRoot})
		return err
	})
	if err != nil {
		tb.Fatalf("attach: %v", err)
	}
	tb.Cleanup(func() {
		if err := r.Host.Do(func() error { return p.Detach() }); err != nil {
			tb.Error(err)
		}
	})
	return p
}

// attach attaches the data plane and starts a Buffer on it.
func (r *nsRig) attach(tb testing.TB, path dataplane.CapturePath, opts Options) (*dataplane.Port, *Buffer) {
	tb.Helper()
	p := r.attachPort(tb, path)
	var b *Buffer
	if err := r.Host.Do(func() (err error) { b, err = New(p, opts); return err }); err != nil {
		tb.Fatalf("netbuf: %v", err)
	}
	tb.Cleanup(func() { b.Close() })
	return p, b
}

// sniffer counts frames from the guest's MAC arriving at the client's c0.
type sniffer struct {
	fd int
}

func (r *nsRig) sniff(tb testing.TB) *sniffer {
	tb.Helper()
	s := &sniffer{}
	err := r.Client.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		s.fd = fd
		lk, err := netlink.LinkByName(r.ClientIf)
		if err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lk.Attrs().Index})
	})
	if err != nil {
		tb.Fatalf("sniffer: %v", err)
	}
	tb.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// frames returns the frames from mac received within d.
func (s *sniffer) frames(mac net.HardwareAddr, d time.Duration) [][]byte {
	var out [][]byte
	buf := make([]byte, 70000)
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return out
		}
		pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, int(left.Milliseconds())+1); n <= 0 {
			continue
		}
		n, _, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
		if err != nil || n < 14 {
			continue
		}
		if net.HardwareAddr(buf[6:12]).String() == mac.String() {
			out = append(out, append([]byte(nil), buf[:n]...))
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestClientRcvBufNotCapped: the client sockets get their whole receive
// buffer whatever net.core.rmem_max says, so a test counts what the data
// plane released, not what a capped socket buffer kept.
func TestClientRcvBufNotCapped(t *testing.T) {
	r := newNSRig(t)
	_, c := r.udpPair(t, 7014)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	if cerr := rc.Control(func(fd uintptr) { got, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); cerr != nil || err != nil {
		t.Fatal(cerr, err)
	}
	if got < clientRcvBuf {
		t.Fatalf("client SO_RCVBUF %d, want at least %d", got, clientRcvBuf)
	}
}
