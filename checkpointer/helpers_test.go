// SPDX-License-Identifier: Apache-2.0

package checkpointer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// fakeStandby records what it was activated with and when.
type fakeStandby struct {
	mu        sync.Mutex
	replica   checkpointer.Replica
	activated bool
	state     []byte
	memHash   [32]byte
	before    func() error // checked at activation (e.g. fence ran)
	beforeErr error
}

func (f *fakeStandby) Activate(_ context.Context, state []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.activated {
		return errors.New("activated twice")
	}
	f.activated, f.state = true, append([]byte(nil), state...)
	f.memHash = sha256.Sum256(f.replica.Memory())
	if f.before != nil {
		f.beforeErr = f.before()
	}
	return nil
}

func (f *fakeStandby) Close() error { return nil }

func (f *fakeStandby) get() (bool, []byte, [32]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.activated, f.state, f.memHash, f.beforeErr
}

// startBackup runs a backup on a loopback port and stops it at cleanup.
func startBackup(t *testing.T, cfg checkpointer.BackupConfig) (*checkpointer.Backup, string, <-chan error) {
	t.Helper()
	if cfg.Listener == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Listener = ln
	}
	b, err := checkpointer.NewBackup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- b.Serve(ctx) }()
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			t.Logf("backup stopped: %v", err)
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("backup did not stop")
		}
	})
	return b, cfg.Listener.Addr().String(), errc
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustContain(t *testing.T, log, want string) {
	t.Helper()
	if !strings.Contains(log, want) {
		t.Fatalf("log lacks %q:\n%s", want, log)
	}
}

func readFileString(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}

// recvWithin waits for an agent's result, failing with every goroutine's
// stack instead of hanging when it does not come.
func recvWithin[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		t.Fatalf("%s did not finish within %v; goroutines:\n%s", what, d, buf[:runtime.Stack(buf, true)])
		panic("unreachable")
	}
}
