// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// pcapSnaplen covers the largest held frame (a 64 KiB GSO super-packet).
const pcapSnaplen = 262144

// WritePcap writes every frame currently held, oldest epoch first and in
// capture order, as a pcap file (Ethernet link type, nanosecond stamps of
// the capture). Nothing is released or dropped.
func (b *Buffer) WritePcap(w io.Writer) error {
	// wmu keeps Release and Discard from recycling the chunks the snapshot
	// points into; held frames are never modified in place.
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	var frames []frameRef
	for _, a := range b.ar.list {
		frames = append(frames, a.frames...)
	}
	b.mu.Unlock()

	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(pcapSnaplen, layers.LinkTypeEthernet); err != nil {
		return fmt.Errorf("pcap header: %w", err)
	}
	for _, f := range frames {
		frame := f.data[VnetHdrLen:]
		ci := gopacket.CaptureInfo{
			Timestamp:     time.Unix(0, f.tstamp+b.monoToWall),
			CaptureLength: len(frame),
			Length:        len(frame),
		}
		if err := pw.WritePacket(ci, frame); err != nil {
			return fmt.Errorf("pcap write: %w", err)
		}
	}
	return nil
}
