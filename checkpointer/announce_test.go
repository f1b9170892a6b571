// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/resilire/resilire/dataplane"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/sim"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/resilire/resilire/checkpointer/codec"
)

type captureSender struct {
	mu     sync.Mutex
	frames [][]byte
}

func (c *captureSender) SendFrame(f []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, append([]byte(nil), f...))
	return nil
}

type recPort struct {
	mu     sync.Mutex
	passed bool
	order  *[]string
}

func (p *recPort) Pass() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.passed = true
	*p.order = append(*p.order, "pass")
	return nil
}

type orderSender struct {
	captureSender
	order *[]string
}

func (s *orderSender) SendFrame(f []byte) error {
	*s.order = append(*s.order, "arp")
	return s.captureSender.SendFrame(f)
}

// Failover switches the port to pass, then announces the guest with
// gratuitous ARP: broadcast, from the guest MAC, sender = target = guest IP.
func TestFailoverAnnouncesGuest(t *testing.T) {
	var order []string
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	ip := net.ParseIP("10.77.0.10")
	snd := &orderSender{order: &order}
	port := &recPort{order: &order}
	replica := sim.NewReplica(testMem)
	sb := &fakeStandby{replica: replica}
	sb.before = func() error { order = append(order, "activate"); return nil }
	b, addr, _ := startBackup(t, checkpointer.BackupConfig{VM: "vm1", Replica: replica, Standby: sb, Codec: codec.Raw{},
		HeartbeatTimeout: 200 * time.Millisecond, Failover: checkpointer.FailoverConfig{Fence: checkpointer.CommandFencer{Command: "true"},
			Port: port, Announce: &dataplane.Announcer{MAC: mac, IP: ip, Sender: snd, Count: 2, Gap: time.Millisecond}}})
	tp := dialTestPrimary(t, addr, nil)
	commitFirst(t, tp)
	tp.conn.Close()
	<-b.Activated()
	waitFor(t, 2*time.Second, "announcements", func() bool {
		snd.mu.Lock()
		defer snd.mu.Unlock()
		return len(snd.frames) == 2
	})
	if len(order) != 4 || order[0] != "activate" || order[1] != "pass" || order[2] != "arp" {
		t.Fatalf("failover order %v", order)
	}
	pkt := gopacket.NewPacket(snd.frames[0], layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || arp == nil {
		t.Fatalf("not an ARP frame: %v", pkt)
	}
	if eth.DstMAC.String() != "ff:ff:ff:ff:ff:ff" || eth.SrcMAC.String() != mac.String() {
		t.Fatalf("ethernet %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	if arp.Operation != layers.ARPRequest || net.IP(arp.SourceProtAddress).String() != "10.77.0.10" ||
		net.IP(arp.DstProtAddress).String() != "10.77.0.10" || net.HardwareAddr(arp.SourceHwAddress).String() != mac.String() {
		t.Fatalf("arp %+v", arp)
	}
}
