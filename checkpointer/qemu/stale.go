// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// RunningPid returns the pid of a QEMU started from cfg that still runs on
// this host: its pid file names a live process whose command line holds
// cfg's QMP socket. 0 means none (no pid file, a dead or reused pid).
func RunningPid(cfg Config) int {
	b, err := os.ReadFile(cfg.PIDPath())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(cmd, []byte("unix:"+cfg.QMPPath+",")) {
		return 0
	}
	if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && zombie(st) {
		return 0
	}
	return pid
}

// zombie reports a /proc/PID/stat of an exited, unreaped process.
func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// ErrStaleGuest is a QEMU of the VM still running where a standby is to
// start: the guest of a fenced primary that came back.
var ErrStaleGuest = errors.New("a QEMU of this VM is still running on this host")

// DestroyStale kills (SIGKILL) a QEMU of cfg still running on this host and
// waits until it is gone, at most timeout. Its RAM file and its output are
// stale: the guest lives elsewhere now.
func DestroyStale(cfg Config, timeout time.Duration) (pid int, err error) {
	pid = RunningPid(cfg)
	if pid == 0 {
		return 0, nil
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return pid, fmt.Errorf("kill stale QEMU %d: %w", pid, err)
	}
	// Gone means reaped or a zombie: a dying process loses its command
	// line (its memory) before its files, and with them the pid file's
	// lock that the next QEMU of this config needs.
	deadline := time.Now().Add(timeout)
	for {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || zombie(st) {
			break
		}
		if time.Now().After(deadline) {
			return pid, fmt.Errorf("stale QEMU %d still running %v after SIGKILL", pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A zombie leader's other threads may still hold its files: wait until
	// the pid file's lock, which the next QEMU takes, is free.
	for !pidFileFree(cfg.PIDPath()) {
		if time.Now().After(deadline) {
			return pid, fmt.Errorf("stale QEMU %d: its pid file %s still locked %v after SIGKILL", pid, cfg.PIDPath(), timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return pid, nil
}

// pidFileFree reports whether nobody holds a lock on the pid file (QEMU
// locks it for its lifetime); a missing file is free.
func pidFileFree(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return true
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		return false
	}
	lk.Type = unix.F_UNLCK
	_ = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	return true
}
