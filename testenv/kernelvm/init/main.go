// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/resilire/resilire/testenv/kernelvm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func main() {
	out := io.Writer(os.Stdout)
	err := mountAll()
	if err == nil {
		// The report port; the console (ttyS0) keeps the kernel's messages.
		if f, ferr := os.OpenFile(kernelvm.ReportDevice, os.O_WRONLY|unix.O_NOCTTY, 0); ferr == nil {
			out = f
		} else {
			fmt.Printf("init: no report port, using the console: %v\n", ferr)
		}
		err = run(out)
	}
	if err != nil {
		fmt.Fprintln(out, kernelvm.FailLine(err))
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run(out io.Writer) error {
	b, err := os.ReadFile(kernelvm.ManifestPath)
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	var m kernelvm.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("parse manifest: %w", err)
	}
	for _, mod := range m.Modules {
		if err := loadModule(filepath.Join(kernelvm.ModulesDir, mod)); err != nil {
			return err
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	fmt.Fprintf(out, "init: kernel %s, %d modules loaded\n", unix.ByteSliceToString(u.Release[:]), len(m.Modules))
	for _, j := range m.Jobs {
		runJob(out, j)
	}
	fmt.Fprintln(out, kernelvm.DoneLine())
	return nil
}

// runJob runs one test binary with its output on out and reports its end.
func runJob(out io.Writer, j kernelvm.Job) {
	fmt.Fprintln(out, kernelvm.BeginLine(j.Name))
	start := time.Now()
	// The package directory exists in the archive only if it has testdata.
	if err := os.MkdirAll(j.Dir, 0o755); err != nil {
		fmt.Fprintf(out, "init: %v\n", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(j.TimeoutSec)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, j.Binary, j.Args...)
	cmd.Dir = j.Dir
	cmd.Env = append([]string{"PATH=/bin", "HOME=/tmp", "TMPDIR=/tmp", "RESILIRE_TEST_PRIVILEGED=1"}, j.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		fmt.Fprintf(out, "init: run %s: %v\n", j.Name, err)
		code = -1
	}
	if ctx.Err() != nil {
		fmt.Fprintf(out, "init: %s killed after %ds\n", j.Name, j.TimeoutSec)
	}
	fmt.Fprintln(out, kernelvm.EndLine(j.Name, code, time.Since(start).Round(time.Millisecond).String()))
}

func loadModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(file), err)
	}
	return nil
}

// mountAll mounts what the tests and the BPF loader expect.
func mountAll() error {
	for _, m := range []struct{ fstype, dir string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"},
		{"bpf", "/sys/fs/bpf"}, {"debugfs", "/sys/kernel/debug"},
		{"tracefs", "/sys/kernel/tracing"}, {"cgroup2", "/sys/fs/cgroup"},
		{"tmpfs", "/tmp"}, {"tmpfs", "/run"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}
