// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/dataplane"
	"github.com/resilire/resilire/netbuf"
	"github.com/resilire/resilire/testenv"
)

// gatedGuest is a simulated guest whose network sender stops while the
// guest is paused, like a real vCPU: the sender holds gate for reading
// around each datagram, Pause takes it for writing.
type gatedGuest struct {
	*SimDomain
	gate sync.RWMutex
	mu   sync.Mutex
	sent int
}

func (g *gatedGuest) Pause(ctx context.Context) error { g.gate.Lock(); return g.SimDomain.Pause(ctx) }
func (g *gatedGuest) Resume(ctx context.Context) error {
	err := g.SimDomain.Resume(ctx)
	g.gate.Unlock()
	return err
}

func (g *gatedGuest) sentCount() int { g.mu.Lock(); defer g.mu.Unlock(); return g.sent }

// epochOutput wraps the real netbuf: at each Advance (guest paused) it
// records how many datagrams the guest had sent, so datagram seq belongs to
// the first epoch e with sentAt[e] > seq.
type epochOutput struct {
	OutputCommit
	guest    *gatedGuest
	mu       sync.Mutex
	sentAt   map[uint64]int
	released uint64
}

func (o *epochOutput) Advance() (uint64, error) {
	e, err := o.OutputCommit.Advance()
	o.mu.Lock()
	o.sentAt[e] = o.guest.sentCount()
	o.mu.Unlock()
	return e, err
}

func (o *epochOutput) Release(e uint64) error {
	o.mu.Lock()
	o.released = e
	o.mu.Unlock()
	return o.OutputCommit.Release(e)
}

// applyClock records when the backup applied each epoch, after a delay
// that makes every ACK late.
type applyClock struct {
	RawCodec
	mu sync.Mutex
	at map[uint64]time.Time
}

type clockDecoder struct {
	Decoder
	c *applyClock
}

type clockStaged struct {
	Staged
	c *applyClock
}

func (c *applyClock) NewDecoder(memSize uint64) (Decoder, error) {
	d, err := c.RawCodec.NewDecoder(memSize)
	return clockDecoder{d, c}, err
}

func (d clockDecoder) Decode(r io.Reader, replica []byte) (Staged, error) {
	s, err := d.Decoder.Decode(r, replica)
	if err != nil {
		return nil, err
	}
	time.Sleep(30 * time.Millisecond)
	return clockStaged{s, d.c}, nil
}

func (s clockStaged) Apply(replica []byte) {
	s.Staged.Apply(replica)
	s.c.mu.Lock()
	s.c.at[s.Epoch()] = time.Now()
	s.c.mu.Unlock()
}

// End to end with the real data plane (pipelined epoch loop): a guest namespace sends numbered
// UDP datagrams during epochs through the BPF capture and netbuf; the
// backup's ACKs are late. No datagram of epoch e reaches the client before
// the backup applied checkpoint e, and every datagram of released epochs
// arrives, once and in order.
func TestEndToEndOutputCommit(t *testing.T) {
	testenv.RequirePrivileged(t)
	rig := testenv.NewBridgeRig(t, "ren")
	for _, e := range []struct {
		ns  *testenv.NS
		dev string
		ip  net.IP
		mac net.HardwareAddr
	}{{rig.Guest, rig.GuestIf, rig.ClientIP, rig.ClientMAC}, {rig.Client, rig.ClientIf, rig.GuestIP, rig.GuestMAC}} {
		if err := e.ns.Do(func() error {
			lk, err := netlink.LinkByName(e.dev)
			if err != nil {
				return err
			}
			return netlink.NeighSet(&netlink.Neigh{LinkIndex: lk.Attrs().Index, State: netlink.NUD_PERMANENT,
				IP: e.ip, HardwareAddr: e.mac, Family: unix.AF_INET})
		}); err != nil {
			t.Fatal(err)
		}
	}
	pinRoot := testenv.PinRoot(t, "ren")
	var port *dataplane.Port
	var buf *netbuf.Buffer
	err := rig.Host.Do(func() (err error) {
		if port, err = dataplane.Attach(dataplane.Options{Name: "ren-e2e", Port: rig.Port, PinRoot: pinRoot}); err != nil {
			return err
		}
		buf, err = netbuf.New(port, netbuf.Options{})
		return err
	})
	if err != nil {
		t.Fatalf("data plane: %v", err)
	}
	t.Cleanup(func() { buf.Close(); rig.Host.Do(port.Detach) })

	var gconn, cconn *net.UDPConn
	if err := rig.Client.Do(func() (err error) {
		cconn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: rig.ClientIP, Port: 7471})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cconn.Close()
	if err := rig.Guest.Do(func() (err error) {
		gconn, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: rig.ClientIP, Port: 7471})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer gconn.Close()

	guest := &gatedGuest{SimDomain: NewSimDomain(SimConfig{Name: "ren-e2e", MemSize: 1 << 20, Seed: 2, WritesPerMs: 20, HotPages: 64})}
	guest.Start()
	defer guest.Stop()
	out := &epochOutput{OutputCommit: buf, guest: guest, sentAt: map[uint64]int{}}
	codec := &applyClock{at: map[uint64]time.Time{}}
	replica := NewSimReplica(guest.MemorySize())
	_, addr, _ := startBackup(t, BackupConfig{VM: "ren-e2e", Replica: replica, Standby: &fakeStandby{replica: replica},
		Codec: codec, HeartbeatTimeout: 5 * time.Second})
	p, err := NewPrimary(PrimaryConfig{Domain: guest, Output: out, Codec: codec, Dial: dialer(addr), Interval: 20 * time.Millisecond,
		Pipeline: true})
	if err != nil {
		t.Fatal(err)
	}

	type arrival struct {
		seq int
		at  time.Time
	}
	var arrivals []arrival
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		b := make([]byte, 64)
		for {
			cconn.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := cconn.Read(b)
			if err != nil {
				return
			}
			if n >= 4 {
				arrivals = append(arrivals, arrival{int(binary.BigEndian.Uint32(b)), time.Now()})
			}
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	const total = 600
	for i := 0; i < total; i++ { // about 1.2 s of traffic, a datagram every 2 ms
		guest.gate.RLock()
		var d [4]byte
		binary.BigEndian.PutUint32(d[:], uint32(i))
		if _, err := gconn.Write(d[:]); err != nil {
			guest.gate.RUnlock()
			t.Fatal(err)
		}
		guest.mu.Lock()
		guest.sent = i + 1
		guest.mu.Unlock()
		guest.gate.RUnlock()
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the last epochs commit
	cancel()
	if err := recvWithin(t, runDone, 20*time.Second, "primary"); err != nil {
		t.Fatal(err)
	}
	recvWithin(t, recvDone, 20*time.Second, "receiver")

	out.mu.Lock()
	defer out.mu.Unlock()
	codec.mu.Lock()
	defer codec.mu.Unlock()
	epochOf := func(seq int) uint64 {
		var best uint64
		for e, n := range out.sentAt {
			if n > seq && (best == 0 || e < best) {
				best = e
			}
		}
		return best
	}
	lastReleased := out.released
	mustArrive := out.sentAt[lastReleased-1] // one epoch of slack: a frame may be stamped one epoch late
	if mustArrive < total/2 || len(out.sentAt) < 10 {
		t.Fatalf("too little protected traffic: %d datagrams in %d epochs", mustArrive, len(out.sentAt))
	}
	for i, a := range arrivals {
		if a.seq != i {
			t.Fatalf("arrival %d is datagram %d: lost, duplicated or reordered", i, a.seq)
		}
		e := epochOf(a.seq)
		applied, ok := codec.at[e]
		if e == 0 || !ok || !applied.Before(a.at) {
			t.Fatalf("datagram %d of epoch %d reached the client at %v, before the backup applied it (%v, %v)",
				a.seq, e, a.at.Format(time.StampMicro), applied.Format(time.StampMicro), ok)
		}
	}
	if len(arrivals) < mustArrive {
		t.Fatalf("%d datagrams arrived, want every one of the %d sent before epoch %d", len(arrivals), mustArrive, lastReleased-1)
	}
	t.Logf("%d datagrams in %d epochs, all after their checkpoint was applied; released up to epoch %d",
		len(arrivals), len(out.sentAt), lastReleased)
}
