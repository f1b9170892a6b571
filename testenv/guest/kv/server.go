// SPDX-License-Identifier: Apache-2.0

package kv

import (
	"bufio"
	"errors"
	"net"
)

const (
	// MaxLine bounds a request line; longer lines close the connection.
	MaxLine = 64 << 10
	// Port is the guest's kv server port.
	Port = 7000
	// ReadyLine is what the guest prints on its console once it serves.
	ReadyLine = "SERVER READY"
)

// Serve accepts connections on l and answers each line with Store.Handle
// until l is closed.
func Serve(l net.Listener, s *Store) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go serveConn(c, s)
	}
}

func serveConn(c net.Conn, s *Store) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), MaxLine)
	w := bufio.NewWriter(c)
	for sc.Scan() {
		if _, err := w.WriteString(s.Handle(sc.Text()) + "\n"); err != nil {
			return
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}
