// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// server is a DB served on a loopback listener.
type server struct {
	db   *DB
	l    net.Listener
	done chan error
}

// startServer opens the database at path and serves it on addr
// ("127.0.0.1:0" for any port).
func startServer(t *testing.T, path, addr string) *server {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	s := &server{db: db, l: l, done: make(chan error, 1)}
	go func() { s.done <- db.Serve(l) }()
	return s
}

// stop closes the listener (which closes the connections) and the database.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.l.Close()
	if err := <-s.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := s.db.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func dial(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := Dial(t.Context(), nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func audit(t *testing.T, c *Client) Audit {
	t.Helper()
	a, err := c.Audit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if a.Sum != Accounts*InitialBalance || a.Accounts != Accounts || a.Integrity != "ok" {
		t.Fatalf("audit: sum %d, %d accounts, integrity %q", a.Sum, a.Accounts, a.Integrity)
	}
	return a
}

func TestServe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bank.db")
	s := startServer(t, path, "127.0.0.1:0")
	addr := s.l.Addr().String()
	c := dial(t, addr)
	ctx := t.Context()
	if a := audit(t, c); len(a.Transfers) != 0 {
		t.Fatalf("new bank has transfers %v", a.Transfers)
	}
	if err := c.Transfer(ctx, 1, 0, 1, 600); err != nil {
		t.Fatal(err)
	}
	// The same id again is acknowledged without applying it twice: account
	// 0 would otherwise be refused (400 left) and 1 reach 2200.
	if err := c.Transfer(ctx, 1, 0, 1, 600); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if err := c.Transfer(ctx, 2, 0, 2, 401); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("overdraft: %v, want ErrInsufficient", err)
	}
	if err := c.Transfer(ctx, 3, 0, 2, 400); err != nil {
		t.Fatal(err)
	}
	// Ids above 2^63 survive SQLite's signed integers.
	big := uint64(1<<64 - 1)
	if err := c.Transfer(ctx, big, 5, 6, 1); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]bool{1: true, 3: true, big: true}
	if a := audit(t, c); !equal(a.Transfers, want) {
		t.Fatalf("transfers %v, want %v", a.Transfers, want)
	}
	if err := c.Transfer(ctx, 4, 0, 1, 1); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("empty account: %v, want ErrInsufficient", err)
	}
	// Malformed requests get ERR and leave the connection usable.
	for _, bad := range []struct {
		src, dst int
		amount   int64
	}{{0, 0, 1}, {-1, 1, 1}, {0, Accounts, 1}, {1, 2, 0}, {1, 2, -5}} {
		if err := c.Transfer(ctx, 9, bad.src, bad.dst, bad.amount); !errors.Is(err, ErrServer) {
			t.Errorf("transfer %+v: %v, want ErrServer", bad, err)
		}
	}
	s.stop(t)

	// Reopened, the bank keeps everything, and a second Open adds nothing.
	s = startServer(t, path, "127.0.0.1:0")
	defer s.stop(t)
	c = dial(t, s.l.Addr().String())
	if a := audit(t, c); !equal(a.Transfers, want) {
		t.Fatalf("after reopen: transfers %v, want %v", a.Transfers, want)
	}
	if err := c.Transfer(ctx, 3, 0, 2, 400); err != nil {
		t.Fatalf("retry after reopen: %v", err)
	}
	if err := c.Transfer(ctx, 5, 0, 2, 1); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("account 0 after reopen: %v, want ErrInsufficient", err)
	}
}

func TestOpenWAL(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "bank.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	var sync int
	if err := db.sql.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := db.sql.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 {
		t.Fatalf("journal_mode %s synchronous %d", mode, sync)
	}
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}

// A database error is answered with ERR, never OK.
func TestDatabaseErrorIsErr(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "bank.db"), "127.0.0.1:0")
	defer s.stop(t)
	c := dial(t, s.l.Addr().String())
	if _, err := s.db.sql.Exec("DROP TABLE transfers"); err != nil {
		t.Fatal(err)
	}
	if err := c.Transfer(t.Context(), 1, 0, 1, 1); !errors.Is(err, ErrServer) {
		t.Fatalf("transfer without a transfers table: %v, want ErrServer", err)
	}
	if _, err := c.Audit(t.Context()); !errors.Is(err, ErrServer) {
		t.Fatalf("audit without a transfers table: %v, want ErrServer", err)
	}
}

// Hostile input is answered with ERR; an overlong line also ends the
// connection.
func TestServeMalformed(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "bank.db"), "127.0.0.1:0")
	defer s.stop(t)
	conn, err := net.Dial("tcp", s.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	for _, req := range []string{"", "X", "T 1 2 3", "T x 1 2 3", "T 1 1 2 99999999999999999999", "A A", "T 1 2 3 4 5", "\x00\xff"} {
		if _, err := conn.Write([]byte(req + "\n")); err != nil {
			t.Fatal(err)
		}
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, "ERR ") {
			t.Fatalf("%q: reply %q, %v", req, l, err)
		}
	}
	if _, err := conn.Write([]byte(strings.Repeat("T", 2*MaxLine) + "\n")); err != nil {
		t.Fatal(err)
	}
	if l, err := r.ReadString('\n'); err != nil || l != "ERR line too long\n" {
		t.Fatalf("long line: reply %q, %v", l, err)
	}
	if l, err := r.ReadString('\n'); err == nil {
		t.Fatalf("connection still open after a long line: %q", l)
	}
}

// Cancelling the context interrupts a request waiting for its reply.
func TestClientCancel(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(5 * time.Second) // never answers
		}
	}()
	c := dial(t, l.Addr().String())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Transfer(ctx, 1, 0, 1, 1); err == nil {
		t.Fatal("Transfer without a reply succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Transfer returned after %v", d)
	}
}

func equal(a, b map[uint64]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
