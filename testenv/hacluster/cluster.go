// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest"
	"github.com/resilire/resilire/testenv/guest/kv"
	"golang.org/x/sys/unix"
)

// Options shape a cluster. Zero fields take the documented defaults.
type Options struct {
	// Prefix names the namespaces, /dev/shm files and the VM (<= 8
	// characters). Required.
	Prefix string
	// Interval is the checkpoint interval (default 50 ms).
	Interval time.Duration
	// HeartbeatTimeout is how long the standby waits before fencing
	// (default 500 ms); the heartbeat interval is a fifth of it.
	HeartbeatTimeout time.Duration
	// UnsafeNoOutputCommit runs protect with --unsafe-no-output-commit.
	UnsafeNoOutputCommit bool
	// InputReplay attaches both ports with --input-log and runs protect
	// and standby with --input-replay (LLM input replay after failover).
	InputReplay bool
	// Unprotected boots the guest with no agents (baseline for benchmarks).
	Unprotected bool
	// Disk gives the guest a replicated ext4 disk (DiskMiB) running the
	// bank workload (guest.disk=bank): protect serves it and boots the
	// guest (--start-vm), the standby keeps the journaled copy.
	Disk bool
	// DiskMiB is the disk size (default 64).
	DiskMiB int
	// Reprotect runs the standby with --reprotect-to host-a: once the
	// guest runs on host-b, host-b protects it again as soon as host-a
	// returns as a standby (ReturnHostA).
	Reprotect bool
	// UnsafeReprotect runs the standby with --unsafe-no-output-commit:
	// once it protects the guest again, output is not held (the negative
	// control of TwoDeaths).
	UnsafeReprotect bool
	// FenceKeepsQEMU fences host-a by pulling its cables only: its QEMU
	// and pinned data plane stay, as a stale guest for its return.
	FenceKeepsQEMU bool
	// UnsafeNoDiskReplication runs both agents with
	// --unsafe-no-disk-replication (the negative control).
	UnsafeNoDiskReplication bool
	// Codec is --codec (default fgbi).
	Codec string
	// MemoryMiB is the guest RAM (default qemu.DefaultMemoryMiB).
	MemoryMiB int
	// ProtectFlags are appended to protect's command line (for example
	// --dirty-tracking hash).
	ProtectFlags []string
	// Binary is the resilire binary; empty builds one into RunDir.
	Binary string
	// AssetsDir caches the guest (default guest.DefaultDir()).
	AssetsDir string
	// RunDir holds configs, logs, sockets and the bpffs mount; empty makes
	// a temporary directory that Close removes.
	RunDir string
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// Cluster is a running protected guest on the two-host rig.
type Cluster struct {
	Rig    *testenv.Rig
	Opts   Options
	RunDir string
	Bin    string
	VM     string      // --vm of both agents
	CfgA   qemu.Config // primary QEMU (host-a)
	CfgB   qemu.Config // warm standby QEMU (host-b)
	PinA   string      // host-a's data-plane pin root
	PinB   string
	// ImgA and ImgB are the disk images of host-a and host-b (Disk only).
	ImgA, ImgB string

	ownRunDir bool
	bpfMount  string
	protect   *Agent
	standby   *Agent
	// agents are the agents of host-a and host-b once they came back as
	// standbys (nil: the original protect or standby still runs there);
	// retired are earlier ones, killed.
	agents  [2]*Agent
	retired []*Agent
	returns int
	fence   string
	fenceB  string
	// standbyRuns numbers the standby agent's log files.
	standbyRuns int
}

// GuestAddr is the guest's key-value server, host:port.
func (c *Cluster) GuestAddr() string {
	return net.JoinHostPort(c.Rig.GuestAddr.Addr().String(), strconv.Itoa(kv.Port))
}

// GuestMAC is the guest NIC's MAC address (the same on both hosts).
func (c *Cluster) GuestMAC() string {
	if c.CfgA.MAC == "" {
		return qemu.DefaultMAC
	}
	return c.CfgA.MAC
}

// Dial connects from the client namespace.
func (c *Cluster) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return testenv.DialIn(ctx, c.Rig.Client, network, addr)
}

// Protect and Standby are the agents (nil when not running).
func (c *Cluster) Protect() *Agent { return c.protect }

// Standby is the backup agent.
func (c *Cluster) Standby() *Agent { return c.standby }

func (c *Cluster) logf(format string, args ...any) {
	if c.Opts.Log != nil {
		fmt.Fprintf(c.Opts.Log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// Setup builds everything and returns once the guest is protected (the
// first checkpoint acknowledged), or serving when Unprotected. On error
// everything built so far is removed.
func Setup(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Interval == 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.HeartbeatTimeout == 0 {
		o.HeartbeatTimeout = 500 * time.Millisecond
	}
	if o.Codec == "" {
		o.Codec = "fgbi"
	}
	if o.AssetsDir == "" {
		o.AssetsDir = guest.DefaultDir()
	}
	c := &Cluster{Opts: o, RunDir: o.RunDir, Bin: o.Binary, VM: o.Prefix + "-vm"}
	if c.RunDir == "" {
		if c.RunDir, err = os.MkdirTemp("", o.Prefix+"-run-"); err != nil {
			return nil, err
		}
		c.ownRunDir = true
	}
	defer func() {
		if err != nil {
			c.DumpLogs(os.Stderr)
			c.Close()
		}
	}()
	if err := c.prepare(ctx); err != nil {
		return c, err
	}
	if o.Disk {
		// The disk's export lives in protect, which boots the guest.
		if o.Unprotected {
			return c, errors.New("hacluster: a Disk cluster is always protected")
		}
		if err := c.StartStandby(ctx); err != nil {
			return c, err
		}
		return c, c.StartProtect(ctx)
	}
	if err := c.bootPrimary(ctx); err != nil {
		return c, err
	}
	if o.Unprotected {
		return c, nil
	}
	if err := c.StartStandby(ctx); err != nil {
		return c, err
	}
	return c, c.StartProtect(ctx)
}

// prepare builds the binary, guest assets, rig, bpffs, configs, data
// plane ports and fence script.
func (c *Cluster) prepare(ctx context.Context) error {
	if c.Bin == "" {
		c.Bin = filepath.Join(c.RunDir, "resilire")
		c.logf("building %s", c.Bin)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", c.Bin, "github.com/resilire/resilire").CombinedOutput()
		if err != nil {
			return fmt.Errorf("build resilire: %w: %s", err, out)
		}
	}
	assets, err := guest.Build(ctx, c.Opts.AssetsDir)
	if err != nil {
		return fmt.Errorf("guest assets: %w", err)
	}
	if c.Rig, err = testenv.NewRig(testenv.RigConfig{Prefix: c.Opts.Prefix}); err != nil {
		return err
	}
	// A private bpffs: `ip netns exec` remounts /sys, so pins under
	// /sys/fs/bpf would not be visible to the agents.
	c.bpfMount = filepath.Join(c.RunDir, "bpf")
	if err := os.MkdirAll(c.bpfMount, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpf", c.bpfMount, "bpf", 0, "mode=0700"); err != nil {
		c.bpfMount = ""
		return fmt.Errorf("mount bpffs: %w", err)
	}
	c.PinA, c.PinB = filepath.Join(c.bpfMount, "host-a"), filepath.Join(c.bpfMount, "host-b")
	shm := "/dev/shm/" + c.Opts.Prefix
	c.CfgA = assets.QEMUConfig(c.Opts.Prefix+"-a", shm+"-a.ram", c.Rig.A.Tap, c.Rig.A.Netns, c.RunDir, c.Rig.GuestAddr)
	if c.Opts.MemoryMiB > 0 {
		c.CfgA.MemoryMiB = c.Opts.MemoryMiB
	}
	c.CfgB = c.CfgA.ForHost(c.Opts.Prefix+"-b", shm+"-b.ram", c.Rig.B.Tap,
		filepath.Join(c.RunDir, c.Opts.Prefix+"-b.qmp"), filepath.Join(c.RunDir, c.Opts.Prefix+"-b.serial"), c.Rig.B.Netns)
	if c.Opts.Disk {
		if err := c.prepareDisks(ctx); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		cfg  qemu.Config
		name string
	}{{c.CfgA, "a.json"}, {c.CfgB, "b.json"}} {
		b, err := json.MarshalIndent(f.cfg, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(c.RunDir, f.name), b, 0o600); err != nil {
			return err
		}
	}
	if c.Opts.Unprotected {
		return nil
	}
	for _, h := range []struct {
		host testenv.Host
		pin  string
	}{{c.Rig.A, c.PinA}, {c.Rig.B, c.PinB}} {
		if err := os.MkdirAll(h.pin, 0o700); err != nil {
			return err
		}
		attach := []string{"dataplane", "--pin-root", h.pin, "attach", "--vm", c.VM, "--port", h.host.Tap}
		if c.Opts.InputReplay {
			attach = append(attach, "--input-log")
		}
		if out, err := testenv.Run(ctx, h.host.Netns, c.Bin, attach...); err != nil {
			return fmt.Errorf("attach data plane in %s: %w", h.host.Netns, err)
		} else {
			c.logf("%s: %s", h.host.Netns, trimNL(out))
		}
	}
	c.fence, c.fenceB = filepath.Join(c.RunDir, "fence.sh"), filepath.Join(c.RunDir, "fence-b.sh")
	if err := os.WriteFile(c.fence, []byte(fenceScript(c.CfgA, c.Rig.A, c.Opts.FenceKeepsQEMU)), 0o700); err != nil {
		return err
	}
	return os.WriteFile(c.fenceB, []byte(fenceScript(c.CfgB, c.Rig.B, false)), 0o700)
}

// fenceScript stops a host: its QEMU dies (unless keepQEMU) and its cables
// are pulled.
func fenceScript(cfg qemu.Config, h testenv.Host, keepQEMU bool) string {
	kill := fmt.Sprintf("kill -9 \"$(cat %s 2>/dev/null)\" 2>/dev/null\n", cfg.PIDPath())
	if keepQEMU {
		kill = "# its QEMU is left running (a switch-port fence)\n"
	}
	return fmt.Sprintf("#!/bin/sh\n# fence %s\n%sip -n %s link set %s down\nip -n %s link set %s down\n"+
		"echo \"fenced $RESILIRE_PEER at epoch $RESILIRE_EPOCH ($RESILIRE_REASON)\"\nexit 0\n",
		h.Netns, kill, h.Netns, h.Uplink, h.Netns, h.RepLink)
}

func trimNL(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}

// bootPrimary starts QEMU in host-a, waits for the server and lets go of
// QMP (the protect agent takes the one QMP connection).
func (c *Cluster) bootPrimary(ctx context.Context) error {
	cfg := c.CfgA
	cfg.KillWithParent = true
	t0 := time.Now()
	vm, err := qemu.Start(ctx, cfg, false)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := vm.WaitSerial(bctx, kv.ReadyLine); err != nil {
		_ = vm.Kill() // the boot failure is the error to report
		return err
	}
	c.logf("primary guest up in %v (pid %d)", time.Since(t0).Round(time.Millisecond), vm.Pid())
	vm.Detach()
	return nil
}

// StartStandby starts `resilire standby` in host-b: it creates the replica
// file, starts the warm standby QEMU and blocks host-b's port.
func (c *Cluster) StartStandby(ctx context.Context) error {
	args := c.standbyArgs(1, c.Opts.Reprotect, false)
	if c.Opts.Disk && c.Opts.UnsafeNoDiskReplication {
		args = append(args, "--unsafe-no-disk-replication")
	}
	if c.Opts.Reprotect && c.Opts.UnsafeReprotect {
		args = append(args, "--unsafe-no-output-commit")
	}
	c.standbyRuns++
	a, err := startAgent(c.Rig.B.Netns, c.Bin, filepath.Join(c.RunDir, fmt.Sprintf("standby-%d.log", c.standbyRuns)), args)
	if err != nil {
		return err
	}
	c.standby = a
	return a.WaitStatus(ctx, 30*time.Second, func(s Status) bool { return s.State != "" })
}

// StartProtect starts `resilire protect` in host-a and waits for the first
// acknowledged checkpoint.
func (c *Cluster) StartProtect(ctx context.Context) error {
	hb := c.Opts.HeartbeatTimeout
	args := []string{"protect", "--vm", c.VM, "--backup", netip.AddrPortFrom(c.Rig.B.RepAddr, 7470).String(),
		"--interval", c.Opts.Interval.String(), "--heartbeat-interval", (hb / 5).String(), "--heartbeat-timeout", hb.String(),
		"--codec", c.Opts.Codec, "--no-progress", "--domain", "qemu", "--qemu-config", filepath.Join(c.RunDir, "a.json"),
		"--dataplane", "--pin-root", c.PinA, "--metrics-addr", "127.0.0.1:9470"}
	if c.Opts.UnsafeNoOutputCommit {
		args = append(args, "--unsafe-no-output-commit")
	}
	if c.Opts.InputReplay {
		args = append(args, "--input-replay")
	}
	if c.Opts.Reprotect {
		// After a switchover away from host-a, protect serves as its standby.
		args = append(args, "--listen", netip.AddrPortFrom(c.Rig.A.RepAddr, 7470).String(), "--fence-cmd", c.fenceB, "--peer", "host-b")
	}
	if c.Opts.Disk {
		args = append(args, "--start-vm", "--disk-image", c.ImgA, "--disk-socket", c.CfgA.DiskSocket)
		if c.Opts.UnsafeNoDiskReplication {
			args = append(args, "--unsafe-no-disk-replication")
		}
	}
	args = append(args, c.Opts.ProtectFlags...)
	a, err := startAgent(c.Rig.A.Netns, c.Bin, filepath.Join(c.RunDir, "protect.log"), args)
	if err != nil {
		return err
	}
	c.protect = a
	t0 := time.Now()
	if err := a.WaitStatus(ctx, 60*time.Second, func(s Status) bool { return s.Epoch > 0 }); err != nil {
		return fmt.Errorf("first checkpoint: %w", err)
	}
	c.logf("protected: first checkpoint acknowledged after %v", time.Since(t0).Round(time.Millisecond))
	if c.Opts.Disk {
		if err := c.waitConsole(ctx, c.CfgA.SerialPath, kv.ReadyLine, 90*time.Second); err != nil {
			return err
		}
		c.logf("guest up with its disk after %v", time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

// DumpLogs copies the agents' logs to w.
func (c *Cluster) DumpLogs(w io.Writer) {
	for _, a := range append([]*Agent{c.standby, c.protect, c.agents[0], c.agents[1]}, c.retired...) {
		if a != nil {
			a.DumpLog(w)
		}
	}
}

// Close kills the agents and both QEMUs and removes the namespaces, RAM
// files, pins and (if it made it) the run directory.
func (c *Cluster) Close() error {
	var errs []error
	for _, a := range append([]*Agent{c.protect, c.standby, c.agents[0], c.agents[1]}, c.retired...) {
		if a != nil {
			if err := a.Kill(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, cfg := range []qemu.Config{c.CfgA, c.CfgB} {
		if cfg.QMPPath != "" {
			if err := killPidFile(cfg.PIDPath()); err != nil {
				errs = append(errs, err)
			}
			os.Remove(cfg.MemPath)
		}
	}
	if c.Rig != nil {
		errs = append(errs, c.Rig.Close())
	}
	if c.bpfMount != "" {
		if err := unix.Unmount(c.bpfMount, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", c.bpfMount, err))
		}
	}
	if c.ownRunDir {
		errs = append(errs, os.RemoveAll(c.RunDir))
	}
	return errors.Join(errs...)
}
