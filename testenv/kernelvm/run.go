// SPDX-License-Identifier: Apache-2.0

package kernelvm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// MaxMemoryMiB caps the VM's memory (CI machines are shared).
const MaxMemoryMiB = 2048

// Options configure Run. The zero value runs DefaultPackages on
// DefaultKernel with 1536 MiB, 2 vCPUs and a 15-minute limit.
type Options struct {
	Root          string // module root; "" finds go.mod from the working directory
	CacheDir      string // kernel cache; "" is <Root>/testenv/assets/kernelvm
	KernelPackage string // "" is DefaultKernel
	Packages      []Package
	Modules       []string // "" is DefaultModules
	MemoryMiB     int
	CPUs          int
	Timeout       time.Duration // the whole run: build, boot and tests
	// Output receives the guest's report port live (test -v output); nil
	// discards it.
	Output io.Writer
	// ConsoleLog receives a copy of the kernel console; "" is
	// <CacheDir>/console.log.
	ConsoleLog string
	Logger     *slog.Logger // nil discards
}

func (o *Options) defaults() error {
	if o.Root == "" {
		root, err := moduleRoot(".")
		if err != nil {
			return err
		}
		o.Root = root
	}
	if o.CacheDir == "" {
		o.CacheDir = filepath.Join(o.Root, "testenv", "assets", "kernelvm")
	}
	if o.ConsoleLog == "" {
		o.ConsoleLog = filepath.Join(o.CacheDir, "console.log")
	}
	if o.KernelPackage == "" {
		o.KernelPackage = DefaultKernel
	}
	if len(o.Packages) == 0 {
		o.Packages = DefaultPackages
	}
	if len(o.Modules) == 0 {
		o.Modules = DefaultModules
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 1536
	}
	if o.MemoryMiB > MaxMemoryMiB {
		return fmt.Errorf("vm memory %d MiB is over the %d MiB cap", o.MemoryMiB, MaxMemoryMiB)
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Minute
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run builds the tests and the initramfs, boots the kernel in QEMU (TCG)
// and returns the parsed report. The error is for what kept the tests
// from running or finishing (build failure, timeout, a dead VM); test
// failures are in the report (Report.OK). Temporary files are removed.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	log := o.Logger
	k, err := FetchKernel(ctx, o.CacheDir, o.KernelPackage, log)
	if err != nil {
		return nil, err
	}
	mods, err := ModuleOrder(k.ModDir, o.Modules)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "kernelvm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	rep := &Report{}
	m := Manifest{Modules: mods}
	var files []file
	build := time.Now()
	initBin, err := buildInit(ctx, o.Root, work)
	if err != nil {
		return nil, err
	}
	// A hung test binary panics with its goroutines a minute before the
	// VM is killed, so the report says where it hung.
	jobTimeout := int(max(o.Timeout-time.Minute, 30*time.Second).Seconds())
	for _, p := range o.Packages {
		j, f, err := buildTests(ctx, o.Root, work, p, jobTimeout)
		if errors.Is(err, errNoTests) {
			log.Info("no test files", "package", p.Dir)
			rep.Results = append(rep.Results, &Result{Name: filepath.ToSlash(filepath.Clean(p.Dir)), NoTests: true})
			continue
		}
		if err != nil {
			return nil, err
		}
		m.Jobs = append(m.Jobs, j)
		files = append(files, f...)
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := writeInitramfs(initrd, initBin, k, m, files); err != nil {
		return nil, err
	}
	log.Info("built", "kernel", k.Release, "modules", len(mods), "jobs", len(m.Jobs), "dur", time.Since(build).Round(time.Millisecond))
	if len(m.Jobs) == 0 {
		rep.Done = true
		return rep, nil
	}
	boot := time.Now()
	err = runQEMU(ctx, o, k, initrd, work, &parser{rep: rep})
	log.Info("vm finished", "dur", time.Since(boot).Round(time.Second))
	return rep, err
}

// runQEMU boots the VM and feeds the report port's lines to p. The kernel
// console goes to a file (copied to o.ConsoleLog), the report port
// (ttyS1) to QEMU's stdout.
func runQEMU(ctx context.Context, o Options, k *Kernel, initrd, work string, p *parser) error {
	console := filepath.Join(work, "console.log")
	args := []string{
		"-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none",
		"-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max",
		"-smp", strconv.Itoa(o.CPUs), "-m", strconv.Itoa(o.MemoryMiB),
		"-kernel", k.Image, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 loglevel=4 rdinit=/init",
		"-chardev", "file,id=console,path=" + console, "-serial", "chardev:console",
		"-chardev", "stdio,id=report,signal=off", "-serial", "chardev:report",
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.Stdin = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintln(o.Output, sc.Text())
		p.line(sc.Text())
	}
	werr := cmd.Wait()
	if b, err := os.ReadFile(console); err == nil {
		_ = os.WriteFile(o.ConsoleLog, b, 0o644)
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("vm run: %w (limit %v)", ctx.Err(), o.Timeout)
	case werr != nil:
		return fmt.Errorf("qemu: %w: %s", werr, stderr.String())
	case !p.rep.Done && p.rep.InitError == "":
		return fmt.Errorf("vm stopped before running every test (kernel panic? see the console log): %s", tail(console, 20))
	}
	return nil
}

// limitedBuffer keeps the first 64 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if n := 64<<10 - len(l.b); n > 0 {
		l.b = append(l.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

// tail returns the last n lines of a file.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
