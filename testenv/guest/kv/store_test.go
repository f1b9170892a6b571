// SPDX-License-Identifier: Apache-2.0

package kv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestHandle(t *testing.T) {
	s := NewStore()
	s.Dirtier = NewDirtier()
	for _, tc := range []struct{ req, want string }{
		{"GET a", "ERR not found"},
		{"SET a hello world", "OK 1"},
		{"GET a", "hello world"},
		{"INCR n", "1"},
		{"INCR n", "2"},
		{"SET n 41", "OK 4"},
		{"INCR n", "42"},
		{"INCR a", "ERR value of a is not an integer"},
		{"STATS", "keys=2 seq=5 dirty=0 dirtied=0"},
		{"DIRTY 100", "OK"},
		{"STATS", "keys=2 seq=5 dirty=100 dirtied=0"},
		{"DIRTY -1", "ERR usage: DIRTY n (0..8192 pages per 10 ms)"},
		{"DIRTY 8193", "ERR usage: DIRTY n (0..8192 pages per 10 ms)"},
		{"SET a", "ERR usage: SET key value"},
		{"GET a b", "ERR usage: GET key"},
		{"INCR", "ERR usage: INCR key"},
		{"set b lower\r", "OK 6"},
		{"GET b", "lower"},
		{"FLY", "ERR unknown command"},
		{"SET c x\ny", "ERR newline in request"},
		{"", "ERR unknown command"},
	} {
		if got := s.Handle(tc.req); got != tc.want {
			t.Errorf("Handle(%q) = %q, want %q", tc.req, got, tc.want)
		}
	}
}

func TestDirtyWithoutDirtier(t *testing.T) {
	if got := NewStore().Handle("DIRTY 1"); got != "ERR no dirtier" {
		t.Fatalf("got %q", got)
	}
}

func TestDirtierRuns(t *testing.T) {
	d := NewDirtier()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	d.SetRate(3)
	deadline := time.Now().Add(5 * time.Second)
	for d.Dirtied() < 30 && time.Now().Before(deadline) {
		time.Sleep(DirtyTick)
	}
	cancel()
	<-done
	if d.Dirtied() < 30 {
		t.Fatalf("dirtied %d pages in 5 s at 3 per tick", d.Dirtied())
	}
	if d.Dirtied()%3 != 0 {
		t.Fatalf("dirtied %d, not a multiple of the rate 3", d.Dirtied())
	}
}

// TestServeClient runs the server and the client over loopback.
func TestServeClient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore()
	errc := make(chan error, 1)
	go func() { errc <- Serve(l, s) }()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(conn)
	c.Timeout = 5 * time.Second
	defer c.Close()
	if seq, err := c.Set("k", "v w"); err != nil || seq != 1 {
		t.Fatalf("Set = %d, %v", seq, err)
	}
	if v, err := c.Get("k"); err != nil || v != "v w" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if _, err := c.Get("missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	for i := int64(1); i <= 3; i++ {
		if n, err := c.Incr("c"); err != nil || n != i {
			t.Fatalf("Incr = %d, %v; want %d", n, err, i)
		}
	}
	if err := c.Dirty(1); err == nil || !strings.Contains(err.Error(), "no dirtier") {
		t.Fatalf("Dirty without dirtier: %v", err)
	}
	st, err := c.Stats()
	if err != nil || st != (Stats{Keys: 2, Seq: 4}) {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	// An over-long line closes the connection instead of growing a buffer.
	if _, err := c.Do("SET x " + strings.Repeat("y", MaxLine)); err == nil {
		t.Fatal("over-long request answered")
	}
	l.Close()
	if err := <-errc; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestParseStats(t *testing.T) {
	got, err := ParseStats("keys=1 seq=2 dirty=3 dirtied=4")
	if err != nil || got != (Stats{1, 2, 3, 4}) {
		t.Fatalf("ParseStats = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "keys=1 seq=2 dirty=3", "keys=1 seq=2 dirty=3 dirtied=x", "keys=1 seq=2 dirty=3 dirtied=4 extra=5", "keys", "keys=1 keys=1 keys=1 keys=1"} {
		if _, err := ParseStats(bad); err == nil {
			t.Errorf("ParseStats(%q) accepted", bad)
		}
	}
}

func FuzzHandle(f *testing.F) {
	for _, s := range []string{"SET a b", "GET a", "INCR a", "DIRTY 5", "STATS", "set  x", "INCR 9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		s := NewStore()
		s.Dirtier = NewDirtier()
		r := s.Handle(line)
		if strings.Contains(r, "\n") {
			t.Fatalf("reply %q contains a newline", r)
		}
	})
}

func FuzzParseStats(f *testing.F) {
	f.Add("keys=1 seq=2 dirty=3 dirtied=4")
	f.Add("keys=1 keys=2")
	f.Fuzz(func(t *testing.T, line string) {
		st, err := ParseStats(line)
		if err != nil {
			return
		}
		again, err := ParseStats(formatStats(st))
		if err != nil || again != st {
			t.Fatalf("round trip of %+v: %+v, %v", st, again, err)
		}
	})
}

func formatStats(s Stats) string {
	return fmt.Sprintf("keys=%d seq=%d dirty=%d dirtied=%d", s.Keys, s.Seq, s.DirtyRate, s.Dirtied)
}
