// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunLoad(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "bank.db"), "127.0.0.1:0")
	defer s.stop(t)
	addr := s.l.Addr().String()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var acked atomic.Int64
	r := RunLoad(ctx, LoadOptions{Addr: addr, Conns: 4, acked: &acked})
	t.Logf("acked %d, unresolved %d, refused %d, reconnects %d, errors %d",
		len(r.Acked), len(r.Unresolved), r.Refused, r.Reconnects, r.Errors)
	if len(r.Acked) == 0 || len(r.Latencies) != len(r.Acked) || len(r.AckedAt) != len(r.Acked) || acked.Load() != int64(len(r.Acked)) {
		t.Fatalf("%d acked, %d latencies, %d ack times, %d counted", len(r.Acked), len(r.Latencies), len(r.AckedAt), acked.Load())
	}
	if r.Errors != 0 || r.Reconnects != 0 {
		t.Errorf("%d errors, %d reconnects without a fault", r.Errors, r.Reconnects)
	}
	if v := Check(r, audit(t, dial(t, addr))); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
}

// A background load counts its acknowledgements while it runs, Stop
// returns what RunLoad would have, and a second Stop returns at once.
func TestStartStop(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "bank.db"), "127.0.0.1:0")
	defer s.stop(t)
	addr := s.l.Addr().String()
	b := Start(t.Context(), LoadOptions{Addr: addr, Conns: 2})
	deadline := time.Now().Add(10 * time.Second)
	for b.Acked() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d transfers acknowledged after 10s", b.Acked())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := b.Stop()
	if n := b.Acked(); len(r.Acked) < 5 || int64(len(r.Acked)) != n {
		t.Fatalf("Stop returned %d acknowledged, the counter says %d", len(r.Acked), n)
	}
	if again := b.Stop(); len(again.Acked) != 0 {
		t.Fatalf("second Stop returned %d acknowledged", len(again.Acked))
	}
	if v := Check(r, audit(t, dial(t, addr))); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
}

// The server goes away mid-load (listener and connections closed, database
// closed) and comes back on the same address and database: the load
// reconnects, resolves its pending transfers, and nothing is lost.
func TestRunLoadServerRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bank.db")
	s := startServer(t, path, "127.0.0.1:0")
	addr := s.l.Addr().String()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	res := make(chan LoadResult, 1)
	go func() { res <- RunLoad(ctx, LoadOptions{Addr: addr, Conns: 4, Timeout: time.Second}) }()
	time.Sleep(600 * time.Millisecond)
	s.stop(t)
	// While the server is away: what is committed so far.
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var before int
	if err := db.sql.QueryRow("SELECT count(*) FROM transfers").Scan(&before); err != nil {
		t.Fatal(err)
	}
	db.Close()
	time.Sleep(200 * time.Millisecond)
	s = startServer(t, path, addr)
	defer s.stop(t)
	r := <-res
	t.Logf("acked %d, unresolved %d, refused %d, reconnects %d, errors %d",
		len(r.Acked), len(r.Unresolved), r.Refused, r.Reconnects, r.Errors)
	if r.Reconnects < 4 {
		t.Errorf("%d reconnects, want at least one per connection", r.Reconnects)
	}
	if len(r.Acked) <= before {
		t.Errorf("%d acked, %d committed before the restart: no progress after it", len(r.Acked), before)
	}
	if v := Check(r, audit(t, dial(t, addr))); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
}

// AuditFile reads a closed database (as copied out of a disk image) the way
// the server's audit does, and refuses a missing file instead of creating
// an empty bank.
func TestAuditFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), File)
	s := startServer(t, path, "127.0.0.1:0")
	addr := s.l.Addr().String()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	r := RunLoad(ctx, LoadOptions{Addr: addr, Conns: 2})
	s.stop(t) // waits for the handlers: a transfer sent as the load ended is in or out for good
	a, err := AuditFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Sum != Accounts*InitialBalance || a.Accounts != Accounts || a.Integrity != "ok" || len(a.Transfers) < len(r.Acked) {
		t.Fatalf("file audit: sum %d, %d accounts, integrity %q, %d transfers for %d acked", a.Sum, a.Accounts, a.Integrity, len(a.Transfers), len(r.Acked))
	}
	if v := Check(r, a); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
	if _, err := AuditFile(filepath.Join(t.TempDir(), "none.db")); err == nil {
		t.Fatal("AuditFile of a missing file succeeded")
	}
}
