// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BridgeRig is a guest, a host with a Linux bridge, and a client, each in
// its own network namespace:
//
//	guest: GuestIf (GuestIP) ── veth ── host: Port ─┐
//	                                                Bridge
//	client: ClientIf (ClientIP) ── veth ── host: ClientPort ─┘
//
// Port plays the guest's vif; the data plane attaches there.
type BridgeRig struct {
	Guest, Host, Client *NS

	Bridge, Port, ClientPort string // in Host
	GuestIf, ClientIf        string // in Guest and Client

	GuestMAC, ClientMAC net.HardwareAddr
	GuestIP, ClientIP   net.IP
}

// NewBridgeRig builds the rig with names starting with prefix (the
// caller's unique prefix, at most 5 characters); tb's cleanup removes it.
func NewBridgeRig(tb testing.TB, prefix string) *BridgeRig {
	tb.Helper()
	if len(prefix) > 5 {
		tb.Fatalf("rig prefix %q: at most 5 characters (interface names are limited to 15)", prefix)
	}
	base := UniqueName(prefix)
	r := &BridgeRig{
		Guest:  NewNS(tb, base+"-g"),
		Host:   NewNS(tb, base+"-h"),
		Client: NewNS(tb, base+"-c"),
		Bridge: prefix + "br0", Port: prefix + "vif0", ClientPort: prefix + "vcl0",
		GuestIf: prefix + "g0", ClientIf: prefix + "c0",
		GuestMAC:  net.HardwareAddr{0x02, 0x72, 0x64, 0x70, 0x00, 0x02},
		ClientMAC: net.HardwareAddr{0x02, 0x72, 0x64, 0x70, 0x00, 0x03},
		GuestIP:   net.IP{10, 213, 0, 2},
		ClientIP:  net.IP{10, 213, 0, 3},
	}
	if err := r.Host.Do(r.buildHost); err != nil {
		tb.Fatalf("build rig host: %v", err)
	}
	if err := r.Guest.Do(func() error { return endpoint(r.GuestIf, r.GuestMAC, r.GuestIP) }); err != nil {
		tb.Fatalf("build rig guest: %v", err)
	}
	if err := r.Client.Do(func() error { return endpoint(r.ClientIf, r.ClientMAC, r.ClientIP) }); err != nil {
		tb.Fatalf("build rig client: %v", err)
	}
	// Until linkwatch has activated a device's qdisc (up to a second after
	// carrier on), it silently drops what is sent: wait for operstate up.
	for _, l := range []struct {
		ns  *NS
		if_ string
	}{{r.Guest, r.GuestIf}, {r.Client, r.ClientIf}, {r.Host, r.Port}, {r.Host, r.ClientPort}, {r.Host, r.Bridge}} {
		if err := WaitOperUp(l.ns, l.if_, 5*time.Second); err != nil {
			tb.Fatal(err)
		}
	}
	return r
}

// WaitOperUp waits until ifname in ns is operationally up.
func WaitOperUp(ns *NS, ifname string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var state netlink.LinkOperState
		err := ns.Do(func() error {
			lk, err := netlink.LinkByName(ifname)
			if err == nil {
				state = lk.Attrs().OperState
			}
			return err
		})
		if err != nil {
			return err
		}
		if state == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s still %s after %v", ifname, ns.Name, state, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// buildHost runs in Host: the bridge and both veth pairs, peers created
// directly in the guest and client namespaces.
func (r *BridgeRig) buildHost() error {
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: r.Bridge}, MulticastSnooping: &off}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge: %w", err)
	}
	for _, p := range []struct {
		port, peer string
		ns         *NS
	}{{r.Port, r.GuestIf, r.Guest}, {r.ClientPort, r.ClientIf, r.Client}} {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: p.port, MasterIndex: br.Index},
			PeerName:      p.peer,
			PeerNamespace: netlink.NsFd(int(p.ns.Handle())),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", p.port, err)
		}
		lk, err := netlink.LinkByName(p.port)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMulticastOff(lk); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lk); err != nil {
			return err
		}
	}
	// No IGMP reports from the bridge itself: tests count every frame.
	if err := netlink.LinkSetMulticastOff(br); err != nil {
		return err
	}
	return netlink.LinkSetUp(br)
}

// endpoint configures an end of the rig: MAC, /24 address, up.
func endpoint(ifname string, mac net.HardwareAddr, ip net.IP) error {
	lk, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetHardwareAddr(lk, mac); err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}}
	if err := netlink.AddrAdd(lk, addr); err != nil {
		return err
	}
	return netlink.LinkSetUp(lk)
}

func linkUp(name string) error {
	lk, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lk)
}

// SetMTU sets the MTU of ifname in ns.
func SetMTU(ns *NS, ifname string, mtu int) error {
	return ns.Do(func() error {
		lk, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(lk, mtu)
	})
}

// FDBPorts returns the host interfaces on which the bridge learned mac.
func (r *BridgeRig) FDBPorts(mac net.HardwareAddr) ([]string, error) {
	var ports []string
	err := r.Host.Do(func() error {
		neighs, err := netlink.NeighList(0, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if n.HardwareAddr.String() != mac.String() {
				continue
			}
			lk, err := netlink.LinkByIndex(n.LinkIndex)
			if err != nil {
				return err
			}
			if lk.Attrs().MasterIndex != 0 { // a port entry, not the bridge's own
				ports = append(ports, lk.Attrs().Name)
			}
		}
		return nil
	})
	return ports, err
}
