// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// QMP names of the file descriptors passed with getfd.
const (
	saveFD    = "resilire-save"
	restoreFD = "resilire-restore"
)

// pipe returns a pipe whose ends are blocking descriptors (os.Pipe's are
// non-blocking, which QEMU's migration code does not expect).
func pipe() (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	return os.NewFile(uintptr(p[0]), "state-r"), os.NewFile(uintptr(p[1]), "state-w"), nil
}

// saveState runs an outgoing migration (device state only, the guest
// stopped) into a pipe and returns the stream.
func saveState(ctx context.Context, mon *monitor) ([]byte, error) {
	r, w, err := pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	_, err = mon.runWithFile(ctx, "getfd", map[string]string{"fdname": saveFD}, w)
	w.Close() // QEMU has its own copy now; ours would keep the pipe open
	if err != nil {
		return nil, err
	}
	type result struct {
		b   []byte
		err error
	}
	read := make(chan result, 1)
	go func() {
		var buf bytes.Buffer
		buf.Grow(512 << 10) // the state is ~370 KB
		_, err := buf.ReadFrom(r)
		read <- result{buf.Bytes(), err}
	}()
	mon.drainMigration()
	if _, err := mon.run(ctx, "migrate", map[string]string{"uri": "fd:" + saveFD}); err != nil {
		r.Close() // unblock the reader
		return nil, err
	}
	if err := mon.waitMigration(ctx); err != nil {
		r.Close()
		return nil, err
	}
	// QEMU closes its end when the migration completes.
	select {
	case res := <-read:
		if res.err != nil {
			return nil, fmt.Errorf("read device state: %w", res.err)
		}
		if len(res.b) == 0 {
			return nil, fmt.Errorf("%w: empty device state", ErrMigration)
		}
		return res.b, nil
	case <-ctx.Done():
		r.Close()
		return nil, fmt.Errorf("read device state: %w", ctx.Err())
	}
}

// restoreState feeds state to an incoming migration through a pipe and
// waits for it to complete. QEMU is then paused (the source was stopped
// when its state was saved).
func restoreState(ctx context.Context, mon *monitor, state []byte) error {
	r, w, err := pipe()
	if err != nil {
		return err
	}
	_, err = mon.runWithFile(ctx, "getfd", map[string]string{"fdname": restoreFD}, r)
	r.Close()
	if err != nil {
		w.Close()
		return err
	}
	written := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, bytes.NewReader(state))
		w.Close()
		written <- err
	}()
	mon.drainMigration()
	if _, err := mon.run(ctx, "migrate-incoming", map[string]string{"uri": "fd:" + restoreFD}); err != nil {
		w.Close()
		return err
	}
	if err := mon.waitMigration(ctx); err != nil {
		w.Close()
		return err
	}
	// QEMU accepted the state. A write error now can only be EPIPE from
	// QEMU closing its end after reading the stream's end marker.
	if err := <-written; err != nil && !errors.Is(err, unix.EPIPE) {
		return fmt.Errorf("write device state: %w", err)
	}
	return nil
}
