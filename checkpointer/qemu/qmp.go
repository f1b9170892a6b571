// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// ErrMigration is returned when QEMU reports a failed or cancelled
// migration (saving or restoring device state).
var ErrMigration = errors.New("qemu: migration failed")

// monitor is a QMP connection (go-qemu's SocketMonitor, which can pass a
// file descriptor with a command) plus a reader of asynchronous events
// that keeps MIGRATION status changes.
type monitor struct {
	m       *qmp.SocketMonitor
	mig     chan string   // MIGRATION event statuses, in order
	closed  chan struct{} // closed when the event stream ends (QEMU gone)
	dropped atomic.Uint64 // statuses dropped because nobody drained mig
}

// dialMonitor connects to a QMP socket and completes the handshake.
func dialMonitor(path string, timeout time.Duration) (*monitor, error) {
	m, err := qmp.NewSocketMonitor("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	if err := m.Connect(); err != nil {
		_ = m.Disconnect() // the handshake error is the one to report
		return nil, fmt.Errorf("qmp handshake: %w", err)
	}
	events, err := m.Events(context.Background())
	if err != nil {
		_ = m.Disconnect() // the events error is the one to report
		return nil, fmt.Errorf("qmp events: %w", err)
	}
	mon := &monitor{m: m, mig: make(chan string, 256), closed: make(chan struct{})}
	go mon.readEvents(events)
	return mon, nil
}

// readEvents must keep draining: the library delivers events and command
// replies from one reader, so a stalled event consumer would stall replies.
func (mon *monitor) readEvents(events <-chan qmp.Event) {
	defer close(mon.closed)
	for ev := range events {
		if ev.Event != "MIGRATION" {
			continue
		}
		status, _ := ev.Data["status"].(string)
		select {
		case mon.mig <- status:
		default:
			mon.dropped.Add(1)
		}
	}
}

// run executes one command; args may be nil.
func (mon *monitor) run(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	return mon.runWithFile(ctx, cmd, args, nil)
}

// runWithFile executes a command, passing f (if non-nil) as SCM_RIGHTS
// ancillary data with it, as getfd needs.
func (mon *monitor) runWithFile(ctx context.Context, cmd string, args any, f *os.File) (json.RawMessage, error) {
	b, err := json.Marshal(qmp.Command{Execute: cmd, Args: args})
	if err != nil {
		return nil, err
	}
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := mon.m.RunWithFile(b, f)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, r.err)
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
		}
		if err := json.Unmarshal(r.out, &resp); err != nil {
			return nil, fmt.Errorf("qmp %s: reply %q: %w", cmd, r.out, err)
		}
		return resp.Return, nil
	case <-ctx.Done():
		// The command may still complete; the caller treats the VM as
		// broken. Closing the connection unblocks the library.
		mon.close()
		return nil, fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
}

// drainMigration forgets statuses of earlier migrations.
func (mon *monitor) drainMigration() {
	for {
		select {
		case <-mon.mig:
		default:
			return
		}
	}
}

// waitMigration waits for the current migration to complete.
func (mon *monitor) waitMigration(ctx context.Context) error {
	for {
		select {
		case s := <-mon.mig:
			switch s {
			case "completed":
				return nil
			case "failed", "cancelled":
				return fmt.Errorf("%w: status %s", ErrMigration, s)
			}
		case <-mon.closed:
			return fmt.Errorf("%w: qmp connection closed", ErrMigration)
		case <-ctx.Done():
			return fmt.Errorf("wait for migration: %w", ctx.Err())
		}
	}
}

// setupMigration enables x-ignore-shared (guest RAM, shared, stays out of
// the stream; needed on both sides) and MIGRATION events, and lifts the
// default bandwidth limit.
func (mon *monitor) setupMigration(ctx context.Context) error {
	caps := map[string]any{"capabilities": []map[string]any{
		{"capability": "x-ignore-shared", "state": true},
		{"capability": "events", "state": true},
	}}
	if _, err := mon.run(ctx, "migrate-set-capabilities", caps); err != nil {
		return err
	}
	params := map[string]any{"max-bandwidth": int64(100) << 30, "downtime-limit": 1}
	_, err := mon.run(ctx, "migrate-set-parameters", params)
	return err
}

// status returns the run state from query-status ("running", "paused",
// "inmigrate", "postmigrate", ...).
func (mon *monitor) status(ctx context.Context) (string, error) {
	out, err := mon.run(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var s struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return "", fmt.Errorf("query-status %s: %w", out, err)
	}
	return s.Status, nil
}

// close disconnects; its error (a socket already gone) changes nothing for
// a monitor that is done.
func (mon *monitor) close() { _ = mon.m.Disconnect() }
