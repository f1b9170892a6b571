// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"errors"
	"os"
	"time"

	"github.com/resilire/resilire/dataplane/packet"
)

// PacketSock is the product's packet socket opened on one interface of a
// test namespace: it sends raw frames and collects received ones (a
// tcpdump without tcpdump).
type PacketSock struct {
	*packet.Socket
}

// OpenPacketSock opens a receiving packet socket on ifname in ns. The
// socket stays in ns; its methods may run on any thread.
func OpenPacketSock(ns *NS, ifname string) (*PacketSock, error) {
	var s *packet.Socket
	if err := ns.Do(func() (err error) { s, err = packet.Open(ifname, true); return err }); err != nil {
		return nil, err
	}
	return &PacketSock{s}, nil
}

// Collect returns every frame received (not sent) on the interface within d,
// stopping early once max frames arrived (max <= 0: no limit).
func (s *PacketSock) Collect(d time.Duration, max int) ([][]byte, error) {
	deadline := time.Now().Add(d)
	buf := make([]byte, 1<<17)
	var frames [][]byte
	for max <= 0 || len(frames) < max {
		n, outgoing, err := s.Receive(buf, time.Until(deadline))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return frames, err
		}
		if !outgoing {
			frames = append(frames, append([]byte(nil), buf[:n]...))
		}
	}
	return frames, nil
}
