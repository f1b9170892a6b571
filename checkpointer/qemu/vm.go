// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// VM is a running QEMU process and its QMP connection.
type VM struct {
	cfg    Config
	cmd    *exec.Cmd // nil when attached to a QEMU another process started
	pid    int
	mon    *monitor
	stderr *syncBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // exit status, valid once exited is closed
}

// Start launches QEMU for cfg and connects to its QMP socket. A standby
// waits (-incoming defer -S) for Standby.Activate; its MemPath must
// already hold the replica. For a primary, a stale RAM file is removed so
// the guest boots from zeroed memory. Stale serial and QMP files are
// always removed: a leftover "ready" line would fool WaitSerial.
func Start(ctx context.Context, cfg Config, standby bool) (_ *VM, err error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for _, f := range []string{cfg.SerialPath, cfg.QMPPath} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if standby {
		fi, err := os.Stat(cfg.MemPath)
		if err != nil {
			return nil, fmt.Errorf("standby RAM file: %w", err)
		}
		if uint64(fi.Size()) != cfg.MemoryBytes() {
			return nil, fmt.Errorf("standby RAM file %s: %d bytes, want %d", cfg.MemPath, fi.Size(), cfg.MemoryBytes())
		}
	} else if err := os.Remove(cfg.MemPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	argv := append([]string{cfg.Binary}, cfg.Args(standby)...)
	if cfg.Netns != "" {
		// ip execs QEMU after entering the namespace: same pid.
		argv = append([]string{"ip", "netns", "exec", cfg.Netns}, argv...)
	}
	v := &VM{cfg: cfg, stderr: &syncBuffer{}, exited: make(chan struct{})}
	v.cmd = exec.Command(argv[0], argv[1:]...)
	v.cmd.Stdout, v.cmd.Stderr = v.stderr, v.stderr
	// Own process group: a terminal's ^C goes to the test, not the guest.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cfg.KillWithParent {
		v.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Binary, err)
	}
	v.pid = v.cmd.Process.Pid
	go func() { v.err = v.cmd.Wait(); close(v.exited) }()
	defer func() {
		if err != nil {
			_ = v.Kill() // err, the start failure, is what the caller needs
		}
	}()
	if v.mon, err = v.connect(ctx); err != nil {
		return nil, err
	}
	if err := v.mon.setupMigration(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// connect waits for the QMP socket, failing early if QEMU exits.
func (v *VM) connect(ctx context.Context) (*monitor, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(v.cfg.QMPPath); err == nil {
			if mon, err := dialMonitor(v.cfg.QMPPath, time.Second); err == nil {
				return mon, nil
			}
		}
		select {
		case <-v.exited:
			return nil, fmt.Errorf("%s exited before QMP came up: %v: %s", v.cfg.Name, v.err, v.Stderr())
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: QMP socket %s: %w", v.cfg.Name, v.cfg.QMPPath, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Attach connects to a QEMU started earlier (by Start in another process,
// for example an agent that crashed and restarted) through its QMP socket
// and pid file. Exited then closes when the QMP connection ends.
func Attach(ctx context.Context, cfg Config) (*VM, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(cfg.PIDPath())
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", cfg.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("attach %s: bad pid file %q", cfg.Name, b)
	}
	mon, err := dialMonitor(cfg.QMPPath, time.Second)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", cfg.Name, err)
	}
	v := &VM{cfg: cfg, pid: pid, mon: mon, stderr: &syncBuffer{}, exited: make(chan struct{})}
	go func() { <-mon.closed; v.err = errors.New("qmp connection closed"); close(v.exited) }()
	if err := mon.setupMigration(ctx); err != nil {
		mon.close()
		return nil, err
	}
	return v, nil
}

// Config returns the VM's configuration (defaults filled in).
func (v *VM) Config() Config { return v.cfg }

// Pid is QEMU's process id.
func (v *VM) Pid() int { return v.pid }

// Exited is closed when the QEMU process has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// Stderr returns what QEMU printed so far.
func (v *VM) Stderr() string { return v.stderr.String() }

// Status returns QEMU's run state (query-status).
func (v *VM) Status(ctx context.Context) (string, error) { return v.mon.status(ctx) }

// Kill sends SIGKILL (host death) and waits for the process to go. It is
// safe to call more than once.
func (v *VM) Kill() error {
	select {
	case <-v.exited:
		return nil
	default:
	}
	var err error
	if v.cmd != nil {
		err = v.cmd.Process.Signal(syscall.SIGKILL)
	} else {
		err = syscall.Kill(v.pid, syscall.SIGKILL)
	}
	if err != nil && !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", v.cfg.Name, err)
	}
	select {
	case <-v.exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("kill %s: pid %d still there after 10 s", v.cfg.Name, v.pid)
	}
	if v.mon != nil {
		v.mon.close()
	}
	return nil
}

// Detach closes the QMP connection and leaves QEMU running, as a crash of
// the controlling process would; Attach reconnects.
func (v *VM) Detach() { v.mon.close() }

// WaitSerial waits until the guest console contains line (for example
// "SERVER READY"), failing if QEMU exits first.
func (v *VM) WaitSerial(ctx context.Context, line string) error {
	want := []byte(line)
	for {
		if b, err := os.ReadFile(v.cfg.SerialPath); err == nil && bytes.Contains(b, want) {
			return nil
		}
		select {
		case <-v.exited:
			b, _ := os.ReadFile(v.cfg.SerialPath)
			return fmt.Errorf("%s exited before %q: %v; console: %q; stderr: %s", v.cfg.Name, line, v.err, lastLines(b, 10), v.Stderr())
		case <-ctx.Done():
			b, _ := os.ReadFile(v.cfg.SerialPath)
			return fmt.Errorf("%s: waiting for %q: %w; console: %q", v.cfg.Name, line, ctx.Err(), lastLines(b, 10))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// syncBuffer is a bytes.Buffer safe for the exec copier and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 { // bound a chatty QEMU
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
