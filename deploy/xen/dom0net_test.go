// SPDX-License-Identifier: Apache-2.0

// Tests of the dom0 provisioning scripts both Xen rigs run. dom0-net.sh is
// plain Linux networking, so it runs here for real, in a namespace, on
// veths standing in for the dom0's NICs; the nested Xen rig runs it in
// real dom0s (make xen-smoke).
package xen_test

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/testenv"
)

func run(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "sh"}, args...)...).CombinedOutput()
	return string(out), err
}

// ipv4 lists the IPv4 addresses (CIDR) of the named link in ns.
func ipv4(t *testing.T, ns *testenv.NS, name string) (master string, addrs []string) {
	t.Helper()
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if m := l.Attrs().MasterIndex; m != 0 {
			ml, err := netlink.LinkByIndex(m)
			if err != nil {
				return err
			}
			master = ml.Attrs().Name
		}
		as, err := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range as {
			addrs = append(addrs, a.IPNet.String())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return master, addrs
}

// The service NIC becomes a port of xenbr0 and its address moves to the
// bridge; the replication NIC gets its address; a second run (the Vagrant
// rig runs it at every boot) changes nothing; a missing NIC is an error
// that names it.
func TestDom0Net(t *testing.T) {
	testenv.RequirePrivileged(t)
	ns := testenv.NewNS(t, testenv.UniqueName("dom0net"))
	err := ns.Do(func() error {
		for _, n := range []string{"svc0", "rep0"} {
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n}, PeerName: n + "p"}); err != nil {
				return err
			}
		}
		svc, err := netlink.LinkByName("svc0")
		if err != nil {
			return err
		}
		a, _ := netlink.ParseAddr("192.168.57.11/24")
		return netlink.AddrAdd(svc, a)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if out, err := run(ns.Name, "dom0-net.sh", "svc0", "rep0", "10.2.0.1/24"); err != nil {
			t.Fatalf("run %d: %v: %s", i+1, err, out)
		}
		if m, a := ipv4(t, ns, "svc0"); m != "xenbr0" || len(a) != 0 {
			t.Fatalf("run %d: svc0: master %q, addresses %v; want a port of xenbr0 without an address", i+1, m, a)
		}
		if _, a := ipv4(t, ns, "xenbr0"); strings.Join(a, ",") != "192.168.57.11/24" {
			t.Fatalf("run %d: xenbr0 addresses %v, want the service address", i+1, a)
		}
		if m, a := ipv4(t, ns, "rep0"); m != "" || strings.Join(a, ",") != "10.2.0.1/24" {
			t.Fatalf("run %d: rep0: master %q, addresses %v", i+1, m, a)
		}
		if err := ns.Do(func() error {
			br, err := net.InterfaceByName("xenbr0")
			if err == nil && br.Flags&net.FlagUp == 0 {
				t.Errorf("run %d: xenbr0 is down", i+1)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run(ns.Name, "dom0-net.sh", "nosuch0")
	if err == nil || !strings.Contains(out, "no interface nosuch0") {
		t.Fatalf("a missing NIC: %v: %q", err, out)
	}
	out, err = run(ns.Name, "dom0-net.sh", "svc0", "rep0")
	if err == nil || !strings.Contains(out, "needs an address") {
		t.Fatalf("a replication NIC without an address: %v: %q", err, out)
	}
}
