// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/resilire/resilire/testenv"
	"golang.org/x/sys/unix"
)

// Watcher records when frames from one source MAC arrive on an interface
// (an AF_PACKET tap, as tcpdump would see them): on the switch's port of a
// host it shows when that host's copy of the guest emitted output.
type Watcher struct {
	fd   int
	mac  net.HardwareAddr
	mu   sync.Mutex
	seen []time.Time
	stop chan struct{}
	done chan struct{}
}

// WatchSource starts recording frames received on ifname in ns whose
// source address is mac. Stop ends it.
func WatchSource(ns, ifname string, mac net.HardwareAddr) (*Watcher, error) {
	w := &Watcher{fd: -1, mac: mac, stop: make(chan struct{}), done: make(chan struct{})}
	err := testenv.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		w.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind %s: %w", ifname, err)
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if w.fd >= 0 {
			unix.Close(w.fd)
		}
		return nil, fmt.Errorf("watch %s in %s: %w", ifname, ns, err)
	}
	go w.loop()
	return w, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (w *Watcher) loop() {
	defer close(w.done)
	defer unix.Close(w.fd)
	buf := make([]byte, 2048)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(w.fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_OUTGOING || n < 12 || !bytes.Equal(buf[6:12], w.mac) {
			continue
		}
		w.mu.Lock()
		w.seen = append(w.seen, time.Now())
		w.mu.Unlock()
	}
}

// Seen returns the arrival times recorded so far.
func (w *Watcher) Seen() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Time(nil), w.seen...)
}

// Stop ends the reader (within its 50 ms receive timeout), which closes
// the socket.
func (w *Watcher) Stop() {
	close(w.stop)
	select {
	case <-w.done:
	case <-time.After(time.Second):
	}
}
