// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// virtio-net header values (include/uapi/linux/virtio_net.h).
const (
	vnetFlagNeedsCsum = 1
	vnetGSOTCPv4      = 1
	vnetGSOECN        = 0x80
	skbGSOTCPv4       = 1 << 0
	skbGSOTCPECN      = 1 << 2
)

// TestTCPThroughRelease streams TCP from the guest to the client through a
// minimal release loop (every held frame re-injected at once), proving that
// GSO super-packets and partial checksums survive capture: path A by the
// record's metadata, path B by the tap's own virtio-net header.
func TestTCPThroughRelease(t *testing.T) {
	for _, path := range []CapturePath{PathRing, PathRedirect} {
		t.Run(path.String(), func(t *testing.T) { testTCPThroughRelease(t, path) })
	}
}

func testTCPThroughRelease(t *testing.T, path CapturePath) {
	e := newRigEnv(t, Options{Path: path, RingBytes: 8 << 20})
	tap := e.openTap()
	ctx, cancel := context.WithCancel(context.Background())
	var gso, partial atomic.Int64
	loopDone := make(chan error, 1)
	go func() { loopDone <- e.releaseLoop(ctx, tap, &gso, &partial) }()
	defer func() {
		cancel()
		if err := <-loopDone; err != nil {
			t.Errorf("release loop: %v", err)
		}
	}()

	data := bytes.Repeat([]byte("resilire output commit "), 4<<20/23)
	var ln net.Listener
	if err := e.rig.Guest.Do(func() (err error) { ln, err = net.Listen("tcp4", e.rig.GuestIP.String()+":7000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(data) // the reader checks what arrived
	}()
	var conn net.Conn
	err := e.rig.Client.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp4", e.rig.GuestIP.String()+":7000", 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read %d of %d bytes: %v", len(got), len(data), err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("received %d bytes, differing from the %d sent", len(got), len(data))
	}
	c := e.counters()
	t.Logf("%s: captured %d, injected %d, GSO frames %d, partial-checksum frames %d", path, c.Captured, c.Injected, gso.Load(), partial.Load())
	if gso.Load() == 0 || partial.Load() == 0 {
		t.Errorf("no GSO (%d) or CHECKSUM_PARTIAL (%d) frame was held: metadata path untested", gso.Load(), partial.Load())
	}
	if c.RingFull != 0 || c.TooBig != 0 || c.Errors != 0 {
		t.Errorf("drops while streaming: %+v", c)
	}
}

// releaseLoop re-injects every held frame until ctx ends.
func (e *rigEnv) releaseLoop(ctx context.Context, tap *os.File, gso, partial *atomic.Int64) error {
	if e.port.Path() == PathRedirect {
		buf := make([]byte, 1<<17)
		for ctx.Err() == nil {
			if err := tap.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
				return err
			}
			n, err := tap.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				return err
			}
			if buf[1] != 0 {
				gso.Add(1)
			}
			if buf[0]&vnetFlagNeedsCsum != 0 {
				partial.Add(1)
			}
			if _, err := tap.Write(buf[:n]); err != nil {
				return err
			}
		}
		return nil
	}
	rd, err := ringbuf.NewReader(e.port.CaptureRing())
	if err != nil {
		return err
	}
	defer rd.Close()
	for ctx.Err() == nil {
		rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
		raw, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return err
		}
		r, err := ParseRecord(raw.RawSample)
		if err != nil {
			return err
		}
		if r.Hdr.GsoSize != 0 {
			gso.Add(1)
			if r.Hdr.GsoType&skbGSOTCPv4 == 0 || r.Hdr.GsoSegs < 2 {
				return fmt.Errorf("GSO record without SKB_GSO_TCPV4 or segments: %+v", r.Hdr)
			}
		}
		if r.Hdr.IpSummed == ChecksumPartial {
			partial.Add(1)
		}
		if _, err := tap.Write(append(gsoVnetHdr(&r), r.Frame...)); err != nil {
			return err
		}
	}
	return nil
}

// gsoVnetHdr builds the virtio-net header for an IPv4 TCP record, the way
// netbuf does: checksum fields from the record, GSO type from the frame.
func gsoVnetHdr(r *Record) []byte {
	h := vnetHdr(r)
	if r.Hdr.GsoSize == 0 {
		return h
	}
	pkt := gopacket.NewPacket(r.Frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil {
		return h
	}
	h[1] = vnetGSOTCPv4
	if r.Hdr.GsoType&skbGSOTCPECN != 0 {
		h[1] |= vnetGSOECN
	}
	binary.LittleEndian.PutUint16(h[2:], uint16(14+len(ip.Contents)+len(tcp.Contents)))
	binary.LittleEndian.PutUint16(h[4:], r.Hdr.GsoSize)
	return h
}
