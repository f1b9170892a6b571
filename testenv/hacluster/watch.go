// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/resilire/resilire/dataplane/packet"
	"github.com/resilire/resilire/testenv"
)

// Watcher records when frames from one source MAC arrive on an interface
// (a packet socket, as tcpdump would see them): on the switch's port of a
// host it shows when that host's copy of the guest emitted output.
type Watcher struct {
	sock *packet.Socket
	mac  net.HardwareAddr
	mu   sync.Mutex
	seen []time.Time
	stop chan struct{}
	done chan struct{}
}

// WatchSource starts recording frames received on ifname in ns whose
// source address is mac. Stop ends it.
func WatchSource(ns, ifname string, mac net.HardwareAddr) (*Watcher, error) {
	w := &Watcher{mac: mac, stop: make(chan struct{}), done: make(chan struct{})}
	err := testenv.InNetns(ns, func() (err error) { w.sock, err = packet.Open(ifname, true); return err })
	if err != nil {
		return nil, fmt.Errorf("watch %s in %s: %w", ifname, ns, err)
	}
	go w.loop()
	return w, nil
}

func (w *Watcher) loop() {
	defer close(w.done)
	defer w.sock.Close()
	buf := make([]byte, 2048)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		n, outgoing, err := w.sock.Receive(buf, 50*time.Millisecond)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return
		}
		if outgoing || n < 12 || !bytes.Equal(buf[6:12], w.mac) {
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
