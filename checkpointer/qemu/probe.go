// SPDX-License-Identifier: Apache-2.0

//go:build linux && amd64

package qemu

import (
	"fmt"
	"os/exec"

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
	fd, _, err := stealUffd(cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("injection refused: %w", err)
	}
	return unix.Close(fd)
}
