// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/testenv"
)

// Status is an agent's /status.
type Status = checkpointer.Status

// Agent is one resilire agent process inside a host's namespace. Its
// stdout and stderr go to LogPath.
type Agent struct {
	Netns   string
	LogPath string
	// StatusAddr is the agent's --metrics-addr inside Netns
	// (127.0.0.1:9470 unless set right after the start).
	StatusAddr string
	cmd        *exec.Cmd
	exited     chan struct{}
	err        error
	http       *http.Client
}

func startAgent(ns, bin, logPath string, args []string) (*Agent, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Not bound to a context: the agent lives until Kill, like a daemon.
	cmd := testenv.Command(context.Background(), ns, bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", args[0], ns, err)
	}
	a := &Agent{Netns: ns, LogPath: logPath, StatusAddr: "127.0.0.1:9470", cmd: cmd, exited: make(chan struct{})}
	a.http = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return testenv.DialIn(ctx, ns, network, addr)
		},
		DisableKeepAlives: true,
	}}
	go func() { a.err = cmd.Wait(); close(a.exited) }()
	return a, nil
}

// Pid is the agent's process id.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Exited is closed when the agent process has exited.
func (a *Agent) Exited() <-chan struct{} { return a.exited }

// Err is the exit status once Exited is closed.
func (a *Agent) Err() error { return a.err }

// Kill sends SIGKILL and waits (bounded) for the process to go.
func (a *Agent) Kill() error {
	select {
	case <-a.exited:
		return nil
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL) // fails only if it already exited; the wait tells
	select {
	case <-a.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("agent pid %d still there 10 s after SIGKILL", a.Pid())
	}
}

// Status fetches /status from the agent's metrics address (StatusAddr
// inside its namespace).
func (a *Agent) Status(ctx context.Context) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.StatusAddr+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&st); err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// WaitStatus polls /status until ok accepts it, the agent exits, or limit
// passes.
func (a *Agent) WaitStatus(ctx context.Context, limit time.Duration, ok func(Status) bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last Status
	var lastErr error
	for {
		st, err := a.Status(ctx)
		if err == nil && ok(st) {
			return nil
		}
		if err == nil {
			last = st
		}
		lastErr = err
		select {
		case <-a.exited:
			return fmt.Errorf("agent exited: %v; log:\n%s", a.err, a.tail(30))
		case <-ctx.Done():
			return fmt.Errorf("agent status %+v (last error %v): %w; log:\n%s", last, lastErr, ctx.Err(), a.tail(30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (a *Agent) tail(n int) string {
	b, _ := os.ReadFile(a.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// DumpLog writes the agent's log (last 200 lines) to w.
func (a *Agent) DumpLog(w io.Writer) {
	fmt.Fprintf(w, "==== %s ====\n%s\n", a.LogPath, a.tail(200))
}

// killPidFile SIGKILLs the process named by a pid file, if any, and waits
// (bounded) until it is gone.
func killPidFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("pid file %s: %q", path, b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	for i := 0; i < 500; i++ {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		// A zombie of ours is reaped by its Wait goroutine; others by init.
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("pid %d still alive 5 s after SIGKILL", pid)
}

// PeakRSS is the agent process's peak resident memory (VmHWM), 0 if
// unknown (the agent runs under `ip netns exec`, which execs it: same pid).
func (a *Agent) PeakRSS() uint64 { return testenv.PeakRSS(a.Pid()) }

// AnonRSS is the agent's resident anonymous memory now (testenv.AnonRSS).
func (a *Agent) AnonRSS() uint64 { return testenv.AnonRSS(a.Pid()) }
