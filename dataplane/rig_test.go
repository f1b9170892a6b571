// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/resilire/resilire/testenv"
)

// rigEnv is a bridge rig with the data plane attached to its guest port.
type rigEnv struct {
	t       *testing.T
	rig     *testenv.BridgeRig
	pinRoot string
	port    *Port
	guest   *testenv.PacketSock // on the guest's interface
	client  *testenv.PacketSock // on the client's interface
}

// newRigEnv builds the rig and attaches with opts (Name, Port and PinRoot
// are filled in). Cleanup detaches and removes everything.
func newRigEnv(t *testing.T, opts Options) *rigEnv {
	t.Helper()
	requireFor(t, opts.Path, opts.Attach)
	e := &rigEnv{t: t, rig: testenv.NewBridgeRig(t, "rdp")}
	e.pinRoot = testenv.PinRoot(t, "rdp")
	var err error
	if e.guest, err = testenv.OpenPacketSock(e.rig.Guest, e.rig.GuestIf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.guest.Close() })
	if e.client, err = testenv.OpenPacketSock(e.rig.Client, e.rig.ClientIf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.client.Close() })
	opts.Name, opts.Port, opts.PinRoot = testenv.UniqueName("rdp"), e.rig.Port, e.pinRoot
	e.port = e.attach(opts)
	t.Cleanup(func() {
		if e.port != nil {
			e.inHost(e.port.Detach)
		}
	})
	return e
}

func (e *rigEnv) attach(opts Options) *Port {
	e.t.Helper()
	var p *Port
	e.inHost(func() (err error) { p, err = Attach(opts); return err })
	return p
}

// inHost runs fn in the host namespace, failing the test on error.
func (e *rigEnv) inHost(fn func() error) {
	e.t.Helper()
	if err := e.rig.Host.Do(fn); err != nil {
		e.t.Fatal(err)
	}
}

// guestFrame is a UDP frame guest -> client carrying seq.
func (e *rigEnv) guestFrame(size int, seq uint32) []byte {
	return frameFor(e.t, e.rig.GuestMAC, e.rig.ClientMAC, e.rig.GuestIP, e.rig.ClientIP, size, seq)
}

// sendFromGuest sends frames seq first..first+n-1, gap apart.
func (e *rigEnv) sendFromGuest(first, n int, gap time.Duration) {
	e.t.Helper()
	for i := first; i < first+n; i++ {
		if err := e.guest.Send(e.guestFrame(200, uint32(i))); err != nil {
			e.t.Fatalf("guest send %d: %v", i, err)
		}
		time.Sleep(gap)
	}
}

// kernelUDPFromGuest makes the guest's own stack send UDP to the client:
// with a cold ARP cache this emits ARP requests first.
func (e *rigEnv) kernelUDPFromGuest(n int) {
	e.t.Helper()
	var c net.Conn
	err := e.rig.Guest.Do(func() (err error) {
		c, err = net.Dial("udp4", net.JoinHostPort(e.rig.ClientIP.String(), "9"))
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		c.Write([]byte("kernel udp")) // errors are fine: the frame may sit in the ARP queue
	}
}

// seqs returns the sequence numbers of our test frames among frames, in
// arrival order.
func seqs(frames [][]byte) []uint32 {
	var out []uint32
	for _, f := range frames {
		pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.NoCopy)
		udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok || udp.DstPort != 5000 || len(udp.Payload) < 4 {
			continue
		}
		out = append(out, binary.BigEndian.Uint32(udp.Payload))
	}
	return out
}

func isARP(f []byte) bool {
	return len(f) >= 14 && binary.BigEndian.Uint16(f[12:]) == uint16(layers.EthernetTypeARP)
}

// drainRing reads every record available in ring within d.
func drainRing(t *testing.T, p *Port, d time.Duration) []*Record {
	t.Helper()
	rd, err := ringbuf.NewReader(p.CaptureRing())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	return readAll(t, rd, d)
}

func readAll(t *testing.T, rd *ringbuf.Reader, d time.Duration) []*Record {
	t.Helper()
	var recs []*Record
	rd.SetDeadline(time.Now().Add(d))
	for {
		raw, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return recs
		}
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseRecord(raw.RawSample)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &r)
	}
}

// vnetHdr builds the virtio-net header for a record (no GSO in these tests).
func vnetHdr(r *Record) []byte {
	h := make([]byte, VnetHdrLen)
	if r.Hdr.IpSummed == ChecksumPartial {
		h[0] = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
		binary.LittleEndian.PutUint16(h[6:], r.Hdr.CsumStart)
		binary.LittleEndian.PutUint16(h[8:], r.Hdr.CsumOffset)
	}
	return h
}

// openTap opens a queue of the port's tap in the host namespace.
func (e *rigEnv) openTap() *os.File {
	e.t.Helper()
	var f *os.File
	e.inHost(func() (err error) {
		if f, err = e.port.OpenTapQueue(); err != nil {
			return err
		}
		e.t.Cleanup(func() { f.Close() })
		return e.port.WaitTapUp(5 * time.Second)
	})
	return f
}

// readTap reads every frame (with its vnet header) the tap hands out within d.
func readTap(t *testing.T, f *os.File, d time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 1<<17)
	f.SetReadDeadline(time.Now().Add(d))
	for {
		n, err := f.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

func (e *rigEnv) counters() Counters {
	e.t.Helper()
	c, err := e.port.Counters()
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// collectAsync collects client frames for d in the background.
func (e *rigEnv) collectAsync(d time.Duration) func() [][]byte {
	ch := make(chan [][]byte, 1)
	go func() {
		frames, err := e.client.Collect(d, 0)
		if err != nil {
			e.t.Error(err)
		}
		ch <- frames
	}()
	return func() [][]byte { return <-ch }
}

func mustReader(t *testing.T, m *ebpf.Map) *ringbuf.Reader {
	t.Helper()
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return rd
}
