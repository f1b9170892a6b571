// SPDX-License-Identifier: Apache-2.0

package xenrig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/resilire/resilire/testenv"
)

// NIC is one virtio NIC of a host, on a tap that exists in Netns.
type NIC struct {
	Tap string
	MAC string
}

// HostConfig describes one nested Xen host.
type HostConfig struct {
	Name      string
	Images    Images
	Dir       string // the host's work directory: disk overlay, share, logs
	Netns     string // namespace QEMU runs in (where the taps are); "" = this one
	NICs      []NIC
	MemMiB    int // the whole host (default 2560)
	Dom0MiB   int // dom0's share (default 1024)
	CPUs      int // default 2
	BootLimit time.Duration
}

// Host is a running nested Xen host.
type Host struct {
	cfg   HostConfig
	Share string // the host side of dom0's /share
	cmd   *exec.Cmd
	done  chan struct{}

	mu  sync.Mutex
	seq int
}

// Serial is the path of the host's serial log (Xen and dom0 console).
func (h *Host) Serial() string { return filepath.Join(h.cfg.Dir, "serial.log") }

// Name is the host's name.
func (h *Host) Name() string { return h.cfg.Name }

// Pid is the QEMU process id.
func (h *Host) Pid() int { return h.cmd.Process.Pid }

// Boot starts the host and waits until its dom0 serves the command queue.
func Boot(ctx context.Context, cfg HostConfig) (*Host, error) {
	if cfg.MemMiB == 0 {
		cfg.MemMiB = 2560
	}
	if cfg.Dom0MiB == 0 {
		cfg.Dom0MiB = 1024
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.BootLimit == 0 {
		cfg.BootLimit = 4 * time.Minute
	}
	h := &Host{cfg: cfg, Share: filepath.Join(cfg.Dir, "share"), done: make(chan struct{})}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(h.Share, "q"), 0o755); err != nil {
		return nil, err
	}
	overlay := filepath.Join(cfg.Dir, "dom0.qcow2")
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
		"-b", cfg.Images.Root(), overlay).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dom0 overlay: %w: %s", err, out)
	}
	// dom0 gets pCPU 0 alone and the guest pCPU 1 (dom0Setup's GUEST_CPUS): under
	// QEMU TCG's emulation of SVM, a guest that shares its pCPU with dom0
	// crashes now and then (docs/xen.md, "Known problem").
	dom0CPUs := "dom0_max_vcpus=1 dom0_vcpus_pin"
	if Unpinned() {
		dom0CPUs = "dom0_max_vcpus=" + strconv.Itoa(cfg.CPUs)
	}
	xenArgs := fmt.Sprintf("dom0_mem=%dM,max:%dM %s console=com1 com1=115200,8n1 guest_loglvl=all noreboot",
		cfg.Dom0MiB, cfg.Dom0MiB, dom0CPUs)
	dom0Args := "console=hvc0 earlyprintk=xen root=LABEL=dom0root rw init=/sbin/xeninit RIG_HOST=" + cfg.Name
	args := []string{"-name", cfg.Name, "-machine", "pc", "-accel", "tcg,thread=multi,tb-size=256",
		"-cpu", "qemu64,+svm,+npt", "-m", strconv.Itoa(cfg.MemMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-display", "none", "-monitor", "none", "-no-reboot", "-serial", "file:" + h.Serial(),
		"-kernel", cfg.Images.Xen(), "-append", xenArgs,
		"-initrd", cfg.Images.Kernel() + " " + dom0Args + "," + cfg.Images.Initrd(),
		"-drive", "file=" + overlay + ",if=virtio,format=qcow2",
		"-virtfs", "local,path=" + h.Share + ",mount_tag=share,security_model=none,id=share"}
	for i, n := range cfg.NICs {
		args = append(args, "-netdev", fmt.Sprintf("tap,id=n%d,ifname=%s,script=no,downscript=no", i, n.Tap),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=%s", i, n.MAC))
	}
	name, argv := "qemu-system-x86_64", args
	if cfg.Netns != "" {
		name, argv = "ip", append([]string{"netns", "exec", cfg.Netns, "qemu-system-x86_64"}, args...)
	}
	log, err := os.Create(filepath.Join(cfg.Dir, "qemu.log"))
	if err != nil {
		return nil, err
	}
	h.cmd = exec.Command(name, argv...)
	h.cmd.Stdout, h.cmd.Stderr = log, log
	// Killed with the test process, never left behind.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", cfg.Name, err)
	}
	go func() { _ = h.cmd.Wait(); log.Close(); close(h.done) }()
	if err := h.waitSerial(ctx, "XENINIT: ready", cfg.BootLimit); err != nil {
		h.Kill()
		return nil, err
	}
	return h, nil
}

// waitSerial waits until the serial log holds marker.
func (h *Host) waitSerial(ctx context.Context, marker string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if b, _ := os.ReadFile(h.Serial()); bytes.Contains(b, []byte(marker)) {
			return nil
		}
		select {
		case <-h.done:
			return fmt.Errorf("%s: QEMU exited during boot: %s; serial: %s", h.cfg.Name, h.qemuLog(), h.serialTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q after %v; serial: %s", h.cfg.Name, marker, limit, h.serialTail())
		}
	}
}

func (h *Host) qemuLog() string {
	b, _ := os.ReadFile(filepath.Join(h.cfg.Dir, "qemu.log"))
	return strings.TrimSpace(string(tail(b, 600)))
}

func (h *Host) serialTail() string {
	b, _ := os.ReadFile(h.Serial())
	return string(tail(b, 1500))
}

// ErrCommand is a dom0 command that exited non-zero.
var ErrCommand = errors.New("dom0 command failed")

// Run runs script with sh in dom0 and returns its output (stdout and
// stderr). A non-zero exit is an error wrapping ErrCommand, with the
// output. Commands run concurrently; one that outlives limit is left
// running and reported as timed out.
func (h *Host) Run(ctx context.Context, limit time.Duration, script string) (string, error) {
	h.mu.Lock()
	h.seq++
	base := filepath.Join(h.Share, "q", strconv.Itoa(h.seq))
	h.mu.Unlock()
	if err := os.WriteFile(base+".tmp", []byte(script+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(base+".tmp", base+".cmd"); err != nil {
		return "", err
	}
	deadline := time.Now().Add(limit)
	for {
		if rc, err := os.ReadFile(base + ".rc"); err == nil {
			out, _ := os.ReadFile(base + ".out")
			code := strings.TrimSpace(string(rc))
			if code != "0" {
				return string(out), fmt.Errorf("%s: %q exit %s: %w: %s", h.cfg.Name, firstLine(script), code, ErrCommand, tail(out, 1500))
			}
			return string(out), nil
		}
		select {
		case <-h.done:
			return "", fmt.Errorf("%s: host is down (running %q)", h.cfg.Name, firstLine(script))
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(base + ".out")
			return string(out), fmt.Errorf("%s: %q still running after %v: %s", h.cfg.Name, firstLine(script), limit, tail(out, 1500))
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// Kill ends the host at once (kill -9 of its QEMU: the host's death) and
// waits until the process is gone.
func (h *Host) Kill() {
	if h.cmd.Process != nil {
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
	}
}

// PeakRSS is the high-water mark of the host's QEMU resident memory in
// bytes (VmHWM), 0 once it has exited.
func (h *Host) PeakRSS() uint64 { return testenv.PeakRSS(h.Pid()) }

// Alive reports whether the host's QEMU still runs.
func (h *Host) Alive() bool {
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}
