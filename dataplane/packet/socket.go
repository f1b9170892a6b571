// SPDX-License-Identifier: Apache-2.0

package packet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is an AF_PACKET socket bound to one interface: the one
// place the product sends raw frames (gratuitous ARP, input replay) and
// the rigs watch a port. Needs CAP_NET_RAW. It stays in the network
// namespace it was opened in; its methods may run on any thread.
type Socket struct {
	fd      int
	ifindex int
	iface   string
}

// Open opens a raw socket bound to iface. With receive set it
// also receives every frame on iface (ETH_P_ALL), else it only sends.
func Open(iface string, receive bool) (*Socket, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", iface, err)
	}
	var proto uint16
	if receive {
		proto = htons(unix.ETH_P_ALL)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", iface, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("bind packet socket to %s: %w", iface, err)
	}
	return &Socket{fd: fd, ifindex: ifi.Index, iface: iface}, nil
}

// Send transmits one frame, from its Ethernet header, on the interface.
// On a tap, a transmitted frame goes to the tap's reader: the guest.
func (s *Socket) Send(frame []byte) error {
	if len(frame) < 14 {
		return errors.New("frame shorter than an ethernet header")
	}
	if _, err := unix.Write(s.fd, frame); err != nil {
		return fmt.Errorf("send %d-byte frame on %s: %w", len(frame), s.iface, err)
	}
	return nil
}

// SetMark sets the skb mark of the frames sent from now on (SO_MARK,
// CAP_NET_ADMIN): the data plane's programs recognise frames the product
// sends by it.
func (s *Socket) SetMark(mark uint32) error {
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		return fmt.Errorf("mark %#x on packet socket of %s: %w", mark, s.iface, err)
	}
	return nil
}

// SendFrame is Send, for the Announcer.
func (s *Socket) SendFrame(frame []byte) error { return s.Send(frame) }

// Receive reads the next frame received or sent on the interface into buf
// within timeout; outgoing tells which. It returns os.ErrDeadlineExceeded
// when nothing came.
func (s *Socket) Receive(buf []byte, timeout time.Duration) (n int, outgoing bool, err error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, false, os.ErrDeadlineExceeded
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return 0, false, fmt.Errorf("receive timeout on %s: %w", s.iface, err)
		}
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("receive on %s: %w", s.iface, err)
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		return n, ok && ll.Pkttype == unix.PACKET_OUTGOING, nil
	}
}

// Close releases the socket.
func (s *Socket) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
