// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// PacketSock is an AF_PACKET socket bound to one interface of a test
// namespace: it sends raw frames and counts or collects received ones
// (a tcpdump without tcpdump).
type PacketSock struct {
	fd      int
	ifindex int
}

// OpenPacketSock opens a raw ETH_P_ALL socket on ifname in ns. The socket
// stays in ns; its methods may run on any thread.
func OpenPacketSock(ns *NS, ifname string) (*PacketSock, error) {
	s := &PacketSock{fd: -1}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		s.fd, s.ifindex = fd, ifi.Index
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the socket.
func (s *PacketSock) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// Send transmits one raw frame (from its Ethernet header).
func (s *PacketSock) Send(frame []byte) error {
	return unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.ifindex, Halen: 6})
}

// Collect returns every frame received (not sent) on the interface within d,
// stopping early once max frames arrived (max <= 0: no limit).
func (s *PacketSock) Collect(d time.Duration, max int) ([][]byte, error) {
	deadline := time.Now().Add(d)
	buf := make([]byte, 1<<17)
	var frames [][]byte
	for max <= 0 || len(frames) < max {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return frames, err
		}
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return frames, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		frames = append(frames, append([]byte(nil), buf[:n]...))
	}
	return frames, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
