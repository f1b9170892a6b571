// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// RigConfig names and addresses the two-host rig. Zero fields take the
// defaults documented on each field.
type RigConfig struct {
	// Prefix starts every namespace and interface name (at most 8
	// characters, so that interface names fit in 15). Required.
	Prefix string
	// LAN is the client network (default 10.77.0.0/24): host-a's bridge
	// is .1, host-b's .2, the guest .10, the client .100.
	LAN netip.Prefix
	// Replication is the host-a <-> host-b link (default 10.78.0.0/30).
	Replication netip.Prefix
}

// Host is one simulated physical host: a network namespace with a bridge on
// the LAN, the guest's tap as a bridge port, and one end of the
// replication link.
type Host struct {
	Netns   string     // namespace name
	Bridge  string     // LAN bridge inside Netns
	Tap     string     // guest port (a tap on Bridge) for this host's QEMU
	Uplink  string     // veth from Bridge to the LAN switch
	Addr    netip.Addr // address on Bridge
	RepLink string     // replication link interface
	RepAddr netip.Addr // address on RepLink
}

// Rig is the two-host test network:
//
//	client ─┐
//	        ├─ switch ─┬─ host-a: bridge ── tap (primary guest)  ── rep ─┐
//	        │          └─ host-b: bridge ── tap (standby guest)  ── rep ─┘
//
// The switch lives in its own namespace so that taking host-a's links down
// leaves client and host-b connected.
type Rig struct {
	Prefix     string
	A, B       Host
	Client     string     // client namespace
	ClientAddr netip.Addr // client's LAN address
	ClientIf   string
	Switch     string       // switch namespace
	GuestAddr  netip.Prefix // the guest's address, for guest.ip=
	namespaces []string
}

// NewRig builds the rig, first removing leftovers of an earlier run with
// the same prefix. Close removes it.
func NewRig(cfg RigConfig) (_ *Rig, err error) {
	p := cfg.Prefix
	if p == "" || len(p) > 8 || strings.ContainsAny(p, " /") {
		return nil, fmt.Errorf("rig prefix %q: want 1..8 characters, no spaces or slashes", p)
	}
	if !cfg.LAN.IsValid() {
		cfg.LAN = netip.MustParsePrefix("10.77.0.0/24")
	}
	if !cfg.Replication.IsValid() {
		cfg.Replication = netip.MustParsePrefix("10.78.0.0/30")
	}
	lan, rep := cfg.LAN.Masked(), cfg.Replication.Masked()
	if lan.Bits() > 24 || rep.Bits() > 30 || !lan.Addr().Is4() || !rep.Addr().Is4() {
		return nil, fmt.Errorf("rig: want an IPv4 LAN of /24 or larger and a replication link of /30 or larger")
	}
	r := &Rig{
		Prefix: p,
		A: Host{Netns: p + "-host-a", Bridge: p + "a-br", Tap: p + "a-tap", Uplink: p + "a-up",
			Addr: nth(lan, 1), RepLink: p + "a-rep", RepAddr: nth(rep, 1)},
		B: Host{Netns: p + "-host-b", Bridge: p + "b-br", Tap: p + "b-tap", Uplink: p + "b-up",
			Addr: nth(lan, 2), RepLink: p + "b-rep", RepAddr: nth(rep, 2)},
		Client:     p + "-client",
		ClientAddr: nth(lan, 100),
		ClientIf:   p + "c-eth",
		Switch:     p + "-switch",
		GuestAddr:  netip.PrefixFrom(nth(lan, 10), lan.Bits()),
	}
	r.namespaces = []string{r.A.Netns, r.B.Netns, r.Client, r.Switch}
	if err := r.removeNamespaces(); err != nil {
		return nil, fmt.Errorf("leftovers of an earlier rig: %w", err)
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	return r, r.build(lan.Bits(), rep.Bits())
}

func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (r *Rig) build(lanBits, repBits int) error {
	var b batch
	for _, ns := range r.namespaces {
		b.add("netns add %s", ns)
		b.add("-n %s link set lo up", ns)
	}
	sw := r.Prefix + "-lan"
	b.add("-n %s link add %s type bridge", r.Switch, sw)
	b.add("-n %s link set %s up", r.Switch, sw)
	for i, h := range []Host{r.A, r.B} {
		peer := fmt.Sprintf("%s%c-sw", r.Prefix, 'a'+i)
		b.addHostLAN(h.Netns, h.Bridge, netip.PrefixFrom(h.Addr, lanBits), h.Uplink, r.Switch, peer, sw)
		b.add("-n %s tuntap add dev %s mode tap", h.Netns, h.Tap)
		b.add("-n %s link set %s master %s", h.Netns, h.Tap, h.Bridge)
		b.add("-n %s link set %s up", h.Netns, h.Tap)
	}
	cpeer := r.Prefix + "c-sw"
	b.add("-n %s link add %s type veth peer name %s netns %s", r.Client, r.ClientIf, cpeer, r.Switch)
	b.add("-n %s addr add %s/%d dev %s", r.Client, r.ClientAddr, lanBits, r.ClientIf)
	b.add("-n %s link set %s up", r.Client, r.ClientIf)
	b.add("-n %s link set %s master %s", r.Switch, cpeer, sw)
	b.add("-n %s link set %s up", r.Switch, cpeer)
	b.add("-n %s link add %s type veth peer name %s netns %s", r.A.Netns, r.A.RepLink, r.B.RepLink, r.B.Netns)
	for _, h := range []Host{r.A, r.B} {
		b.add("-n %s addr add %s/%d dev %s", h.Netns, h.RepAddr, repBits, h.RepLink)
		b.add("-n %s link set %s up", h.Netns, h.RepLink)
	}
	if err := b.run(); err != nil {
		return err
	}
	// veth carrier comes up asynchronously (linkwatch may take a second);
	// the rig is ready when every cable is up.
	links := [][2]string{
		{r.A.Netns, r.A.Uplink}, {r.B.Netns, r.B.Uplink}, {r.Client, r.ClientIf},
		{r.Switch, r.Prefix + "a-sw"}, {r.Switch, r.Prefix + "b-sw"}, {r.Switch, cpeer},
		{r.A.Netns, r.A.RepLink}, {r.B.Netns, r.B.RepLink},
	}
	return waitOperUp(links, 5*time.Second)
}

// waitOperUp polls until every (namespace, interface) is operationally up.
func waitOperUp(links [][2]string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, l := range links {
		for {
			out, err := exec.Command("ip", "-n", l[0], "-o", "link", "show", "dev", l[1]).Output()
			if err == nil && bytes.Contains(out, []byte(" state UP ")) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s in %s not up after %v: %s", l[1], l[0], limit, bytes.TrimSpace(out))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// batch collects ip(8) commands and runs them in order, stopping at the
// first failure. (`ip -batch` cannot switch namespaces per line.)
type batch struct{ lines []string }

func (b *batch) add(format string, args ...any) {
	b.lines = append(b.lines, fmt.Sprintf(format, args...))
}

// addHostLAN gives host namespace ns a bridge with address addr, cabled by
// a veth (uplink in ns, peer in switchNS) to the switch's bridge sw.
func (b *batch) addHostLAN(ns, bridge string, addr netip.Prefix, uplink, switchNS, peer, sw string) {
	b.add("-n %s link add %s type bridge", ns, bridge)
	b.add("-n %s addr add %s dev %s", ns, addr, bridge)
	b.add("-n %s link set %s up", ns, bridge)
	b.add("-n %s link add %s type veth peer name %s netns %s", ns, uplink, peer, switchNS)
	b.add("-n %s link set %s master %s", ns, uplink, bridge)
	b.add("-n %s link set %s up", ns, uplink)
	b.add("-n %s link set %s master %s", switchNS, peer, sw)
	b.add("-n %s link set %s up", switchNS, peer)
}

func (b *batch) run() error {
	for _, l := range b.lines {
		if out, err := exec.Command("ip", strings.Fields(l)...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", l, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// Close deletes the rig's namespaces, and with them every interface in
// them. Processes still running inside keep their namespace alive until
// they exit; stop them first.
func (r *Rig) Close() error { return r.removeNamespaces() }

func (r *Rig) removeNamespaces() error {
	var errs []error
	for _, ns := range r.namespaces {
		if _, err := os.Stat("/run/netns/" + ns); err != nil {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", ns, err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// SetHostLinks takes a host's uplink and replication link down (a dead or
// unplugged host) or back up.
func (r *Rig) SetHostLinks(h Host, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	var b batch
	b.add("-n %s link set %s %s", h.Netns, h.Uplink, state)
	b.add("-n %s link set %s %s", h.Netns, h.RepLink, state)
	return b.run()
}

// SetReplicationLink cuts (up=false) or restores the replication link
// only, leaving both hosts on the LAN: a partition.
func (r *Rig) SetReplicationLink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	var b batch
	b.add("-n %s link set %s %s", r.A.Netns, r.A.RepLink, state)
	b.add("-n %s link set %s %s", r.B.Netns, r.B.RepLink, state)
	return b.run()
}

// Command returns a command that runs name inside namespace ns (through
// `ip netns exec`, which execs name: the process's pid is name's).
func Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run runs name inside ns and returns its combined output.
func Run(ctx context.Context, ns, name string, args ...string) ([]byte, error) {
	out, err := Command(ctx, ns, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s in %s: %w: %s", name, ns, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// IPBatch runs ip(8) command lines (without the leading "ip") in order,
// stopping at the first failure: for rigs other than Rig.
type IPBatch struct{ b batch }

// Add appends one command line.
func (b *IPBatch) Add(format string, args ...any) { b.b.add(format, args...) }

// AddHostLAN gives host namespace ns a bridge with address addr, cabled by
// a veth (uplink in ns, peer in switchNS) to the switch's bridge sw.
func (b *IPBatch) AddHostLAN(ns, bridge string, addr netip.Prefix, uplink, switchNS, peer, sw string) {
	b.b.addHostLAN(ns, bridge, addr, uplink, switchNS, peer, sw)
}

// Run runs the lines.
func (b *IPBatch) Run() error { return b.b.run() }

// WaitLinksUp polls until every (namespace, interface) is operationally up.
func WaitLinksUp(links [][2]string, limit time.Duration) error { return waitOperUp(links, limit) }
