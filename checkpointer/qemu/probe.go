// SPDX-License-Identifier: Apache-2.0

//go:build linux && amd64

package qemu

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// probeInjection injects a userfaultfd into a child process of ours (sleep)
// and takes it with pidfd_getfd, as protect does with QEMU: it fails where
// ptrace or pidfd_getfd is refused (Yama, seccomp, missing capabilities).
func probeInjection() error {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("probe child: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Inject only once the child sleeps: right after exec it may still be
	// in the dynamic loader, with less of its code mapped.
	waitSleeping(cmd.Process.Pid, 2*time.Second)
	fd, _, err := stealUffd(cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("injection refused: %w", err)
	}
	return unix.Close(fd)
}

// waitSleeping waits up to d for pid to be in an interruptible sleep (state
// S in /proc/PID/stat): for the probe child, its nanosleep.
func waitSleeping(pid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'S' {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
