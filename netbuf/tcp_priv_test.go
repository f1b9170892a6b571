// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// epochLoop advances and releases every interval (commit delay 0), as the
// checkpointer does after the backup's ack, until ctx ends.
func epochLoop(ctx context.Context, b *Buffer, interval time.Duration) <-chan error {
	errc := make(chan error, 1)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				errc <- nil
				return
			case <-t.C:
			}
			e, err := b.Advance()
			if err == nil {
				err = b.Release(e)
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	return errc
}

// tcpTransfer sends n pseudo-random bytes from the sender's namespace to a
// listener in the receiver's and returns both sides' SHA-256.
func (r *nsRig) tcpTransfer(tb testing.TB, fromGuest bool, n int64, timeout time.Duration) (sent, got [32]byte) {
	tb.Helper()
	srvNS, cliNS, srvIP := r.Client, r.Guest, r.ClientIP
	if !fromGuest {
		srvNS, cliNS, srvIP = r.Guest, r.Client, r.GuestIP
	}
	var ln net.Listener
	if err := srvNS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(srvIP.String(), "7100"))
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	var rerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			rerr = err
			return
		}
		defer c.Close()
		if rerr = c.SetDeadline(time.Now().Add(timeout)); rerr != nil {
			return
		}
		h := sha256.New()
		m, err := io.Copy(h, c)
		if err == nil && m != n {
			err = fmt.Errorf("received %d bytes, want %d", m, n)
		}
		rerr = err
		copy(got[:], h.Sum(nil))
	}()
	var conn net.Conn
	err := cliNS.Do(func() (err error) {
		d := net.Dialer{Timeout: timeout}
		conn, err = d.Dial("tcp4", ln.Addr().String())
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), n), h)
	if _, err := io.Copy(conn, src); err != nil {
		tb.Fatalf("send: %v", err)
	}
	conn.Close()
	wg.Wait()
	if rerr != nil {
		tb.Fatalf("receive: %v", rerr)
	}
	copy(sent[:], h.Sum(nil))
	return sent, got
}

// TestTCPThroughHold: bulk TCP in both directions through 10 ms epochs,
// bytes verified; guest->client must carry GSO super-packets whole.
func TestTCPThroughHold(t *testing.T) {
	for _, path := range paths {
		for _, fromGuest := range []bool{true, false} {
			name := fmt.Sprintf("%s/guest-to-client=%v", path, fromGuest)
			t.Run(name, func(t *testing.T) {
				r := newNSRig(t)
				_, b := r.attach(t, path, Options{})
				ctx, cancel := context.WithCancel(context.Background())
				loop := epochLoop(ctx, b, 10*time.Millisecond)
				sent, got := r.tcpTransfer(t, fromGuest, 32<<20, 30*time.Second)
				cancel()
				if err := <-loop; err != nil {
					t.Fatal(err)
				}
				if sent != got {
					t.Fatal("received bytes differ from the sent ones")
				}
				s := b.Stats()
				t.Logf("%+v", s)
				if fromGuest && s.HeldGSO == 0 {
					t.Fatalf("no GSO super-packet was held: %+v", s)
				}
				if s.WriteErrors != 0 || s.Malformed != 0 {
					t.Fatalf("errors: %+v", s)
				}
			})
		}
	}
}
