// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/dataplane"
	"github.com/resilire/resilire/testenv"
)

// nsRig is three unnamed network namespaces: a guest (g0), a host with a
// bridge whose ports are the guest's veth peer (rnbvif) and the client's
// (rnbvcl), and a client (c0). Unnamed namespaces leave no global names;
// everything local is prefixed rnb. IPv6 is off everywhere so that every
// frame is accounted for.
type nsRig struct {
	guest, host, client netns.NsHandle
	guestIP, clientIP   net.IP
	guestMAC, clientMAC net.HardwareAddr
	pinRoot             string
}

const (
	rigPort = "rnbvif"
	rigVM   = "rnb-vm"
)

var rigSeq atomic.Int32

func newNSRig(tb testing.TB) *nsRig {
	tb.Helper()
	testenv.RequirePrivileged(tb)
	r := &nsRig{
		guestIP: net.IPv4(10, 78, 0, 2).To4(), clientIP: net.IPv4(10, 78, 0, 3).To4(),
		guestMAC: net.HardwareAddr{0x02, 0x72, 0x6e, 0x62, 0, 2}, clientMAC: net.HardwareAddr{0x02, 0x72, 0x6e, 0x62, 0, 3},
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err == nil {
		r.guest, err = netns.New()
	}
	if err == nil {
		r.host, err = netns.New()
	}
	if err == nil {
		r.client, err = netns.New()
	}
	if serr := netns.Set(orig); serr != nil {
		tb.Fatalf("cannot return to the test's netns: %v", serr) // the thread stays locked and dies
	}
	orig.Close()
	runtime.UnlockOSThread()
	tb.Cleanup(func() { r.guest.Close(); r.host.Close(); r.client.Close() })
	if err != nil {
		tb.Fatalf("create namespaces: %v", err)
	}
	if err := r.build(); err != nil {
		tb.Fatalf("build rig: %v", err)
	}
	r.pinRoot = mountBPFFS(tb)
	return r
}

// mountBPFFS mounts a private bpffs for the dataplane's pins.
func mountBPFFS(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), fmt.Sprintf("rnb-bpffs-%d", rigSeq.Add(1)))
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		tb.Fatalf("mount bpffs: %v", err)
	}
	tb.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return filepath.Join(dir, "resilire")
}

// do runs fn on a thread inside ns. Sockets created in fn stay in ns.
func (r *nsRig) do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err) // thread stays locked: it exits with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func (r *nsRig) build() error {
	h, err := netlink.NewHandleAt(r.host)
	if err != nil {
		return err
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "rnbbr0"}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	for _, p := range []struct {
		port, peer string
		ns         netns.NsHandle
		mac        net.HardwareAddr
		ip         net.IP
	}{{rigPort, "g0", r.guest, r.guestMAC, r.guestIP}, {"rnbvcl", "c0", r.client, r.clientMAC, r.clientIP}} {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.port, MasterIndex: 0}, PeerName: p.peer,
			PeerHardwareAddr: p.mac, PeerNamespace: netlink.NsFd(p.ns)}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth %s: %w", p.port, err)
		}
		lk, err := h.LinkByName(p.port)
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(lk, br); err != nil {
			return err
		}
		if err := h.LinkSetUp(lk); err != nil {
			return err
		}
		if err := r.do(p.ns, func() error { return setupEnd(p.peer, p.ip) }); err != nil {
			return fmt.Errorf("%s: %w", p.peer, err)
		}
	}
	if err := h.LinkSetUp(br); err != nil {
		return err
	}
	return r.do(r.host, func() error {
		// br_netfilter (loaded on this host) would run iptables on every
		// bridged frame; a Remus host's bridge does not need it, and it
		// would dominate the per-frame cost of release. Best effort: the
		// files exist only when the module is loaded.
		for _, f := range []string{"iptables", "ip6tables", "arptables"} {
			_ = os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-"+f, []byte("0"), 0o644)
		}
		return disableIPv6()
	})
}

// setupEnd configures a namespace's veth end: IPv6 off, address, up.
func setupEnd(name string, ip net.IP) error {
	if err := disableIPv6(); err != nil {
		return err
	}
	lk, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(lk, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}}); err != nil {
		return err
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	return netlink.LinkSetUp(lk)
}

func disableIPv6() error {
	for _, f := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/disable_ipv6", []byte("1"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// staticNeighbors adds permanent ARP entries on both ends, so traffic does
// not depend on (held) ARP exchanges.
func (r *nsRig) staticNeighbors(tb testing.TB) {
	tb.Helper()
	for _, e := range []struct {
		ns  netns.NsHandle
		dev string
		ip  net.IP
		mac net.HardwareAddr
	}{{r.guest, "g0", r.clientIP, r.clientMAC}, {r.client, "c0", r.guestIP, r.guestMAC}} {
		err := r.do(e.ns, func() error {
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
	var p *dataplane.Port
	err := r.do(r.host, func() (err error) {
		p, err = dataplane.Attach(dataplane.Options{Name: rigVM, Port: rigPort, Path: path, PinRoot: r.pinRoot})
		return err
	})
	testenv.SkipIfNotSupported(tb, err)
	if err != nil {
		tb.Fatalf("attach: %v", err)
	}
	tb.Cleanup(func() { r.do(r.host, func() error { return p.Detach() }) })
	return p
}

// attach attaches the data plane and starts a Buffer on it.
func (r *nsRig) attach(tb testing.TB, path dataplane.CapturePath, opts Options) (*dataplane.Port, *Buffer) {
	tb.Helper()
	p := r.attachPort(tb, path)
	var b *Buffer
	if err := r.do(r.host, func() (err error) { b, err = New(p, opts); return err }); err != nil {
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
	err := r.do(r.client, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		s.fd = fd
		lk, err := netlink.LinkByName("c0")
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
