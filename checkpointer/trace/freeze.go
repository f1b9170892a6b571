// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Freeze selects how the recorder pauses the process.
type Freeze string

// Freeze modes.
const (
	// FreezeSIGSTOP sends SIGSTOP and waits until every thread is stopped;
	// SIGCONT resumes. Works unprivileged on one's own processes.
	FreezeSIGSTOP Freeze = "sigstop"
	// FreezeCgroup moves the process into a cgroup of its own and uses the
	// cgroup v2 freezer (cgroup.freeze), or the v1 freezer controller when
	// no cgroup2 hierarchy is mounted. Needs root; the process is moved back
	// when recording ends. Unlike SIGSTOP it is invisible to the process
	// and its parent.
	FreezeCgroup Freeze = "cgroup"
)

// errExited reports that the traced process has gone; recording then ends.
var errExited = errors.New("process exited")

// stopTimeout bounds the wait for a process to reach the stopped state
// (every thread of it: on a loaded host, 2 s was seen to fall short).
const stopTimeout = 10 * time.Second

// freezer pauses and resumes one process.
type freezer interface {
	freeze() error
	thaw() error
	close() error
}

func newFreezer(mode Freeze, pid int) (freezer, error) {
	switch mode {
	case "", FreezeSIGSTOP:
		return &sigstop{pid: pid}, nil
	case FreezeCgroup:
		return newCgroupFreezer(pid)
	}
	return nil, fmt.Errorf("freeze mode %q: want %q or %q", mode, FreezeSIGSTOP, FreezeCgroup)
}

type sigstop struct{ pid int }

func (s *sigstop) freeze() error {
	if err := syscall.Kill(s.pid, syscall.SIGSTOP); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return errExited
		}
		return fmt.Errorf("sigstop: %w", err)
	}
	deadline := time.Now().Add(stopTimeout)
	for wait := 20 * time.Microsecond; ; wait = min(2*wait, time.Millisecond) {
		stopped, err := allThreadsStopped(s.pid)
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped after %v", s.pid, stopTimeout)
		}
		time.Sleep(wait)
	}
}

func (s *sigstop) thaw() error {
	if err := syscall.Kill(s.pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sigcont: %w", err)
	}
	return nil
}

func (s *sigstop) close() error { return s.thaw() }

// allThreadsStopped reads the state of every thread of pid: 'T' (stopped)
// or 't' (traced) counts as stopped; a zombie or vanished process as exited.
func allThreadsStopped(pid int) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, errExited
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // the thread exited meanwhile
		}
		st, err := statState(string(b))
		if err != nil {
			return false, err
		}
		switch st {
		case 'T', 't':
		case 'Z', 'X':
			if t.Name() == fmt.Sprint(pid) {
				return false, errExited
			}
		default:
			return false, nil
		}
	}
	return true, nil
}

// statState returns the state field of a /proc/.../stat line: the first
// non-space after the last ')' (the comm field may itself hold parentheses).
func statState(stat string) (byte, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0, fmt.Errorf("bad stat line %q", stat)
	}
	return stat[i+2], nil
}

// cgroupFreezer freezes a cgroup created for the process.
type cgroupFreezer struct {
	pid    int
	dir    string // the cgroup created for the process
	home   string // the cgroup it came from, to move it back
	v2     bool
	frozen bool
}

func newCgroupFreezer(pid int) (*cgroupFreezer, error) {
	root, v2, err := freezerRoot()
	if err != nil {
		return nil, err
	}
	home, err := procCgroup(pid, v2)
	if err != nil {
		return nil, err
	}
	c := &cgroupFreezer{pid: pid, dir: filepath.Join(root, fmt.Sprintf("resilire-trace-%d", pid)), home: filepath.Join(root, home), v2: v2}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup freezer: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(fmt.Sprint(pid)), 0); err != nil {
		os.Remove(c.dir)
		return nil, fmt.Errorf("cgroup freezer: move process: %w", err)
	}
	return c, nil
}

// freezerRoot finds a cgroup2 mount, else the v1 freezer hierarchy.
func freezerRoot() (string, bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, fmt.Errorf("cgroup freezer: %w", err)
	}
	defer f.Close()
	v1 := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent dev root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		a, b := strings.Fields(pre), strings.Fields(post)
		if !ok || len(a) < 5 || len(b) < 3 {
			continue
		}
		switch {
		case b[0] == "cgroup2":
			return a[4], true, nil
		case b[0] == "cgroup" && v1 == "" && strings.Contains(","+b[2]+",", ",freezer,"):
			v1 = a[4]
		}
	}
	if v1 == "" {
		return "", false, errors.New("cgroup freezer: no cgroup2 or v1 freezer hierarchy mounted")
	}
	return v1, false, nil
}

// procCgroup returns pid's cgroup path in the v2 or v1 freezer hierarchy.
func procCgroup(pid int, v2 bool) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("cgroup freezer: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if (v2 && f[0] == "0" && f[1] == "") || (!v2 && strings.Contains(","+f[1]+",", ",freezer,")) {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("cgroup freezer: process %d has no cgroup in the freezer hierarchy", pid)
}

// control names the control file, the value to write, the state file and
// the state to wait for, to freeze or thaw.
func (c *cgroupFreezer) control(frozen bool) (file, val, state, want string) {
	switch {
	case c.v2 && frozen:
		return "cgroup.freeze", "1", "cgroup.events", "frozen 1"
	case c.v2:
		return "cgroup.freeze", "0", "cgroup.events", "frozen 0"
	case frozen:
		return "freezer.state", "FROZEN", "freezer.state", "FROZEN"
	}
	return "freezer.state", "THAWED", "freezer.state", "THAWED"
}

func (c *cgroupFreezer) set(frozen bool) error {
	file, val, state, want := c.control(frozen)
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte(val), 0); err != nil {
		return fmt.Errorf("cgroup freezer: write %s: %w", file, err)
	}
	c.frozen = frozen
	deadline := time.Now().Add(stopTimeout)
	for wait := 20 * time.Microsecond; ; wait = min(2*wait, time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(c.dir, state))
		if err != nil {
			return fmt.Errorf("cgroup freezer: %w", err)
		}
		if strings.Contains(string(b), want) {
			return nil
		}
		if strings.Contains(string(b), "populated 0") {
			return errExited
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup freezer: %s not %q after %v", state, want, stopTimeout)
		}
		time.Sleep(wait)
	}
}

func (c *cgroupFreezer) freeze() error { return c.set(true) }
func (c *cgroupFreezer) thaw() error   { return c.set(false) }

// close thaws, moves the process back where it was and removes the cgroup.
func (c *cgroupFreezer) close() error {
	var errs []error
	if c.frozen {
		if err := c.thaw(); err != nil && !errors.Is(err, errExited) {
			errs = append(errs, err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.home, "cgroup.procs"), []byte(fmt.Sprint(c.pid)), 0); err != nil && !errors.Is(err, syscall.ESRCH) {
		errs = append(errs, fmt.Errorf("cgroup freezer: move process back: %w", err))
	}
	for range 50 { // rmdir fails with EBUSY until the move is seen
		if err := os.Remove(c.dir); err == nil || os.IsNotExist(err) {
			return errors.Join(errs...)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.Join(append(errs, fmt.Errorf("cgroup freezer: remove %s", c.dir))...)
}
