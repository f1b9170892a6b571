// SPDX-License-Identifier: Apache-2.0

package kvload

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// kvServer is a loopback key-value server speaking the guest's protocol,
// dropping one connection (to prove reconnects are counted).
type kvServer struct {
	ln      net.Listener
	mu      sync.Mutex
	m       map[string]string
	dropped bool
	seq     int
	// rollbackAt, when non-zero, rewinds the write sequence by 5 once it
	// reaches that value, as a server restored from an old checkpoint would.
	rollbackAt int
}

func startKV(t *testing.T) *kvServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &kvServer{ln: ln, m: map[string]string{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *kvServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		s.mu.Lock()
		var reply string
		switch {
		case len(f) == 3 && f[0] == "SET":
			s.m[f[1]] = f[2]
			s.seq++
			if s.rollbackAt != 0 && s.seq == s.rollbackAt {
				s.seq -= 5
				s.rollbackAt = 0
			}
			reply = fmt.Sprintf("OK %d", s.seq)
			if s.seq == 5 && !s.dropped {
				s.dropped = true
				s.mu.Unlock()
				return // connection dies before the reply
			}
		case len(f) == 2 && f[0] == "GET":
			reply = s.m[f[1]]
		default:
			reply = "ERR"
		}
		s.mu.Unlock()
		fmt.Fprintln(c, reply)
	}
}

func TestRunVerifyAndReconnect(t *testing.T) {
	s := startKV(t)
	opts := Options{Addr: s.ln.Addr().String(), Duration: 5 * time.Second, Think: time.Millisecond, Timeout: time.Second, MaxRequests: 20}
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reconnects != 1 {
		t.Errorf("reconnects = %d, want 1 (server dropped one connection)", res.Reconnects)
	}
	if len(res.Acked) != 19 {
		t.Errorf("acked %d, want 19 (one reply was lost with the connection)", len(res.Acked))
	}
	lost, err := Verify(context.Background(), opts, res.Acked)
	if err != nil || len(lost) != 0 {
		t.Fatalf("verify: lost %v, err %v", lost, err)
	}
	if res.Inconsistent != 0 {
		t.Errorf("inconsistent replies %d on a server that never rolls back", res.Inconsistent)
	}
	sum := res.Summarize()
	if sum.Requests != 20 || sum.Acked != 19 || sum.P50 <= 0 || sum.Max < sum.P50 {
		t.Errorf("summary %+v", sum)
	}
	png := filepath.Join(t.TempDir(), "timeline.png")
	if err := res.Plot(png, "test", 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Fatalf("plot not written: %v", err)
	}
}

func TestVerifyDetectsLoss(t *testing.T) {
	s := startKV(t)
	opts := Options{Addr: s.ln.Addr().String(), Duration: 5 * time.Second, Think: time.Millisecond, Timeout: time.Second, MaxRequests: 3}
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.m = map[string]string{} // the "backup" never had these writes
	s.mu.Unlock()
	lost, err := Verify(context.Background(), opts, res.Acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != len(res.Acked) || len(lost) == 0 {
		t.Fatalf("lost %d of %d acked; want all", len(lost), len(res.Acked))
	}
}

func TestRollbackDetected(t *testing.T) {
	s := startKV(t)
	s.rollbackAt = 8 // after the 8th write the server "fails over" to older state
	opts := Options{Addr: s.ln.Addr().String(), Duration: 5 * time.Second, Think: time.Millisecond, Timeout: time.Second, MaxRequests: 12}
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inconsistent == 0 {
		t.Fatalf("a write sequence number going backwards was not counted (last %d)", res.LastSeq)
	}
}

func TestSummarizeOutage(t *testing.T) {
	t0 := time.Unix(100, 0)
	r := &Result{Samples: []Sample{
		{Start: t0, Latency: time.Millisecond, OK: true},
		{Start: t0.Add(10 * time.Millisecond), Latency: 2 * time.Second, OK: false},
		{Start: t0.Add(3 * time.Second), Latency: time.Millisecond, OK: true},
	}}
	s := r.Summarize()
	want := 3*time.Second + time.Millisecond - time.Millisecond
	if s.Outage != want || s.OutageAt != time.Millisecond {
		t.Fatalf("outage %v at %v, want %v at 1ms", s.Outage, s.OutageAt, want)
	}
}
