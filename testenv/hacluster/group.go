// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"bufio"
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
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/dataplane"
	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest"
	"github.com/resilire/resilire/testenv/guest/xbank"
)

// GroupOptions shape a VDEchp group rig. Zero fields take the defaults.
type GroupOptions struct {
	// Prefix names the namespaces, /dev/shm files and VMs (<= 6
	// characters). Required.
	Prefix string
	// Interval is the group's round interval (default 200 ms).
	Interval time.Duration
	// Uncoloured leaves internal frames under output commit (no
	// --group-peer-mac): per-VM Remus on every port.
	Uncoloured bool
	// UnsafeNoHold runs the members with --unsafe-no-colour-hold (the
	// negative control of the colour hold).
	UnsafeNoHold bool
	// UDP runs the workload's credits over UDP, each sent once: a credit
	// in transit across the group's cut is lost unless the backups replay
	// it from the input log.
	UDP bool
	// UnsafeNoInputReplay runs the backups without --input-replay (the
	// negative control of the in-transit log).
	UnsafeNoInputReplay bool
	// Reprotect adds host-d: the backups on host-c protect the guests they
	// resume to standbys on host-d (--reprotect-to), so that a second
	// group (Reprotect) survives host-c's death.
	Reprotect bool
	// UnsafeReprotectNoHold protects the guests again with
	// --unsafe-no-colour-hold (the negative control of the second group).
	UnsafeReprotectNoHold bool
	// RestartCoordinator kills the coordinator's process before the host
	// (RestartCoordinator) and starts a new one.
	RestartCoordinator bool
	// HangCoordinator hangs the coordinator before the host kill, with a
	// standby coordinator beside it that takes the group over
	// (Group.HangCoordinator).
	HangCoordinator bool
	// UnsafeEarlyCommit runs the coordinator with --unsafe-early-commit
	// (external output one round sooner; measurements only).
	UnsafeEarlyCommit bool
	// OnBackupLoss is the members' --on-backup-loss (empty: the agents'
	// default, block).
	OnBackupLoss string
	// StopTheWorld runs the coordinator with --stop-the-world (the
	// VNsnap-style baseline: every guest stays paused until all captured
	// the round).
	StopTheWorld bool
	// Unprotected boots the guests with no agents and no data plane (the
	// baseline of the latency comparison).
	Unprotected bool
	// Stagger delays member k's rounds by k x Stagger (default 80 ms), so
	// that frames from a member past round r reach one not yet there in
	// nearly every round; negative: none.
	Stagger time.Duration
	// Binary is the resilire binary; empty builds one into the run dir.
	Binary string
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// groupHost is one simulated host of the group rig.
type groupHost struct {
	name, ns, bridge, uplink string
	addr                     netip.Addr
	pin                      string
}

// GroupVM is one member of the group.
type GroupVM struct {
	Name    string
	Addr    netip.Addr
	MAC     string
	Primary int // index of its primary host (its backup is on host-c)
	cfgP    qemu.Config
	cfgB    qemu.Config
	cfgD    qemu.Config // its standby on host-d (Reprotect)
	protect *Agent
	standby *Agent
	spare   *Agent // its standby on host-d (Reprotect)
}

// Group is a VDEchp group on three hosts: vm0 and vm1 on host-a, vm2 on
// host-b, every backup and the coordinator on host-c; a client on the
// LAN. Every guest runs the xbank workload toward the others.
//
//	client ─┐
//	        ├─ switch ─┬─ host-a: bridge ── vm0, vm1 (primaries)
//	        │          ├─ host-b: bridge ── vm2 (primary)
//	        │          └─ host-c: bridge ── vm0', vm1', vm2' (warm standbys), coordinator
type Group struct {
	Opts   GroupOptions
	RunDir string
	Bin    string
	Hosts  []groupHost // a, b, c (and d with Reprotect)
	VMs    []*GroupVM
	Client string
	Coord  *Agent
	// coords are every coordinator started (Coord among them).
	coords []*Agent

	switchNS   string
	namespaces []string
	bpfMount   string
	pings      [3]pingConn
	// second says the group was protected again (Reprotect): its members
	// run on host-c, their backups and its coordinator on host-d.
	second bool
}

// pingConn is the client's connection to one guest for Ping.
type pingConn struct {
	c net.Conn
	r *bufio.Reader
}

const groupLAN = "10.81.0."

func (g *Group) logf(format string, args ...any) {
	if g.Opts.Log != nil {
		fmt.Fprintf(g.Opts.Log, "%s group: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

// SetupGroup builds the rig, boots the three guests, starts every backup
// and member agent and the coordinator, and waits for the first rounds.
func SetupGroup(ctx context.Context, o GroupOptions) (_ *Group, err error) {
	if o.Prefix == "" || len(o.Prefix) > 6 {
		return nil, fmt.Errorf("group prefix %q: want 1..6 characters", o.Prefix)
	}
	if o.Interval == 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.Stagger == 0 {
		o.Stagger = 80 * time.Millisecond
	}
	g := &Group{Opts: o, Bin: o.Binary}
	if g.RunDir, err = os.MkdirTemp("", o.Prefix+"-group-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			g.DumpLogs(os.Stderr)
			g.Close()
		}
	}()
	if err := g.prepare(ctx); err != nil {
		return g, err
	}
	for _, vm := range g.VMs {
		if err := g.boot(ctx, vm); err != nil {
			return g, err
		}
	}
	if o.Unprotected {
		return g, g.resume(ctx)
	}
	for i, vm := range g.VMs {
		if g.Opts.Reprotect {
			if err := g.startSpare(ctx, i, vm); err != nil {
				return g, err
			}
		}
		if err := g.startStandby(ctx, i, vm, vm.Name+"-standby.log"); err != nil {
			return g, err
		}
	}
	for i, vm := range g.VMs {
		if err := g.startProtect(ctx, i, vm); err != nil {
			return g, err
		}
	}
	if err := g.startCoordinator(ctx, "coordinator.log"); err != nil {
		return g, err
	}
	return g, g.resume(ctx)
}

func (g *Group) prepare(ctx context.Context) error {
	if g.Bin == "" {
		g.Bin = filepath.Join(g.RunDir, "resilire")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", g.Bin, "github.com/resilire/resilire").CombinedOutput(); err != nil {
			return fmt.Errorf("build resilire: %w: %s", err, out)
		}
	}
	assets, err := guest.Build(ctx, guest.DefaultDir())
	if err != nil {
		return fmt.Errorf("guest assets: %w", err)
	}
	p := g.Opts.Prefix
	g.switchNS, g.Client = p+"-gsw", p+"-gcl"
	names := []string{"a", "b", "c"}
	if g.Opts.Reprotect {
		names = append(names, "d")
	}
	g.namespaces = []string{g.switchNS, g.Client}
	for i, h := range names {
		g.Hosts = append(g.Hosts, groupHost{name: "host-" + h, ns: p + "-g" + h, bridge: p + h + "-br", uplink: p + h + "-up",
			addr: netip.MustParseAddr(fmt.Sprintf("%s%d", groupLAN, i+1))})
		g.namespaces = append(g.namespaces, g.Hosts[i].ns)
	}
	g.removeNamespaces()
	var peers []netip.Addr
	for i := range 3 {
		peers = append(peers, netip.MustParseAddr(fmt.Sprintf("%s%d", groupLAN, 10+i)))
	}
	for i := range 3 {
		vm := &GroupVM{Name: fmt.Sprintf("%s-vm%d", p, i), Addr: peers[i], MAC: fmt.Sprintf("52:54:00:52:53:%02x", i+1), Primary: i / 2}
		g.VMs = append(g.VMs, vm)
	}
	if err := g.buildNet(); err != nil {
		return err
	}
	g.bpfMount = filepath.Join(g.RunDir, "bpf")
	if err := os.MkdirAll(g.bpfMount, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpf", g.bpfMount, "bpf", 0, "mode=0700"); err != nil {
		g.bpfMount = ""
		return fmt.Errorf("mount bpffs: %w", err)
	}
	for i := range g.Hosts {
		g.Hosts[i].pin = filepath.Join(g.bpfMount, g.Hosts[i].name)
		if err := os.MkdirAll(g.Hosts[i].pin, 0o700); err != nil {
			return err
		}
	}
	shm := "/dev/shm/" + p + "-g"
	for i, vm := range g.VMs {
		hp, hc := g.Hosts[vm.Primary], g.Hosts[2]
		cfg := assets.QEMUConfig(vm.Name+"-p", fmt.Sprintf("%s%d-p.ram", shm, i), g.tap(vm.Primary, i), hp.ns, g.RunDir,
			netip.PrefixFrom(vm.Addr, 24))
		cfg.MAC = vm.MAC
		cfg.Append += " " + xbank.Config{Index: i, Peers: peers, UDP: g.Opts.UDP}.Cmdline()
		vm.cfgP = cfg
		vm.cfgB = cfg.ForHost(vm.Name+"-b", fmt.Sprintf("%s%d-b.ram", shm, i), g.tap(2, i),
			filepath.Join(g.RunDir, vm.Name+"-b.qmp"), filepath.Join(g.RunDir, vm.Name+"-b.serial"), hc.ns)
		files := []struct {
			cfg  qemu.Config
			file string
		}{{vm.cfgP, vm.Name + "-p.json"}, {vm.cfgB, vm.Name + "-b.json"}}
		if g.Opts.Reprotect {
			vm.cfgD = cfg.ForHost(vm.Name+"-d", fmt.Sprintf("%s%d-d.ram", shm, i), g.tap(3, i),
				filepath.Join(g.RunDir, vm.Name+"-d.qmp"), filepath.Join(g.RunDir, vm.Name+"-d.serial"), g.Hosts[3].ns)
			files = append(files, struct {
				cfg  qemu.Config
				file string
			}{vm.cfgD, vm.Name + "-d.json"})
		}
		for _, f := range files {
			b, err := json.MarshalIndent(f.cfg, "", "  ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(g.RunDir, f.file), b, 0o600); err != nil {
				return err
			}
		}
		if g.Opts.Unprotected {
			continue
		}
		for _, hi := range g.hostsOf(vm) {
			h, tap := g.Hosts[hi], g.tap(hi, i)
			out, err := testenv.Run(ctx, h.ns, g.Bin, "dataplane", "--pin-root", h.pin, "attach", "--vm", vm.Name, "--port", tap, "--input-log", "--group")
			if err != nil {
				return fmt.Errorf("attach data plane of %s in %s: %w", vm.Name, h.ns, err)
			}
			g.logf("%s: %s", h.name, strings.TrimSpace(string(out)))
		}
		fence := fmt.Sprintf("#!/bin/sh\n# fence %s's primary: its QEMU dies\nkill -9 \"$(cat %s 2>/dev/null)\" 2>/dev/null\n"+
			"echo \"fenced %s at epoch $RESILIRE_EPOCH ($RESILIRE_REASON)\"\nexit 0\n", vm.Name, vm.cfgP.PIDPath(), vm.Name)
		if err := os.WriteFile(g.fence(i), []byte(fence), 0o700); err != nil {
			return err
		}
		if g.Opts.Reprotect { // host-d's standby fences the guest resumed on host-c
			fence := fmt.Sprintf("#!/bin/sh\nkill -9 \"$(cat %s 2>/dev/null)\" 2>/dev/null\necho \"fenced %s on host-c\"\nexit 0\n", vm.cfgB.PIDPath(), vm.Name)
			if err := os.WriteFile(g.fence(10+i), []byte(fence), 0o700); err != nil {
				return err
			}
		}
	}
	return nil
}

// hostsOf is the hosts where vm has a port: its primary's, host-c (its
// backup) and host-d (Reprotect).
func (g *Group) hostsOf(vm *GroupVM) []int {
	if g.Opts.Reprotect {
		return []int{vm.Primary, 2, 3}
	}
	return []int{vm.Primary, 2}
}

func (g *Group) tap(host, vm int) string {
	return fmt.Sprintf("%s%c%d-tap", g.Opts.Prefix, 'a'+host, vm)
}
func (g *Group) fence(i int) string { return filepath.Join(g.RunDir, fmt.Sprintf("fence-%d.sh", i)) }

func (g *Group) buildNet() error {
	var b testenv.IPBatch
	for _, ns := range g.namespaces {
		b.Add("netns add %s", ns)
		b.Add("-n %s link set lo up", ns)
	}
	sw := g.Opts.Prefix + "-glan"
	b.Add("-n %s link add %s type bridge", g.switchNS, sw)
	b.Add("-n %s link set %s up", g.switchNS, sw)
	var links [][2]string
	for i, h := range g.Hosts {
		peer := fmt.Sprintf("%s%c-gsw", g.Opts.Prefix, 'a'+i)
		b.AddHostLAN(h.ns, h.bridge, netip.PrefixFrom(h.addr, 24), h.uplink, g.switchNS, peer, sw)
		links = append(links, [2]string{h.ns, h.uplink}, [2]string{g.switchNS, peer})
	}
	for i, vm := range g.VMs {
		for _, h := range g.hostsOf(vm) {
			tap := g.tap(h, i)
			b.Add("-n %s tuntap add dev %s mode tap", g.Hosts[h].ns, tap)
			b.Add("-n %s link set %s master %s", g.Hosts[h].ns, tap, g.Hosts[h].bridge)
			b.Add("-n %s link set %s up", g.Hosts[h].ns, tap)
		}
	}
	cif, cpeer := g.Opts.Prefix+"cl-eth", g.Opts.Prefix+"cl-sw"
	b.Add("-n %s link add %s type veth peer name %s netns %s", g.Client, cif, cpeer, g.switchNS)
	b.Add("-n %s addr add %s100/24 dev %s", g.Client, groupLAN, cif)
	b.Add("-n %s link set %s up", g.Client, cif)
	b.Add("-n %s link set %s master %s", g.switchNS, cpeer, sw)
	b.Add("-n %s link set %s up", g.switchNS, cpeer)
	links = append(links, [2]string{g.Client, cif}, [2]string{g.switchNS, cpeer})
	if err := b.Run(); err != nil {
		return err
	}
	return testenv.WaitLinksUp(links, 5*time.Second)
}

func (g *Group) boot(ctx context.Context, vm *GroupVM) error {
	cfg := vm.cfgP
	cfg.KillWithParent = true
	t0 := time.Now()
	q, err := qemu.Start(ctx, cfg, false)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := q.WaitSerial(bctx, xbank.ReadyLine); err != nil {
		_ = q.Kill()
		return fmt.Errorf("%s: %w", vm.Name, err)
	}
	g.logf("%s up on %s in %v", vm.Name, g.Hosts[vm.Primary].name, time.Since(t0).Round(time.Millisecond))
	q.Detach()
	return nil
}

func (g *Group) startStandby(ctx context.Context, i int, vm *GroupVM, log string) error {
	hc := g.Hosts[2]
	args := []string{"standby", "--vm", vm.Name, "--listen", netip.AddrPortFrom(hc.addr, uint16(7470+i)).String(),
		"--fence-cmd", g.fence(i), "--fence-timeout", "10s", "--peer", g.Hosts[vm.Primary].name,
		"--heartbeat-interval", "200ms", "--heartbeat-timeout", "1s", "--codec", "fgbi",
		"--domain", "qemu", "--qemu-config", filepath.Join(g.RunDir, vm.Name+"-b.json"),
		"--dataplane", "--pin-root", hc.pin,
		"--announce-iface", hc.bridge, "--guest-mac", vm.MAC, "--guest-ip", vm.Addr.String(),
		"--group-listen", netip.AddrPortFrom(hc.addr, uint16(7490+i)).String(),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", 9470+i)}
	if !g.Opts.UnsafeNoInputReplay {
		args = append(args, "--input-replay")
	}
	if g.Opts.Reprotect {
		args = append(args, "--reprotect-to", netip.AddrPortFrom(g.Hosts[3].addr, uint16(7570+i)).String())
		args = append(args, g.peerMACs(vm)...)
		if g.Opts.UnsafeReprotectNoHold {
			args = append(args, "--unsafe-no-colour-hold")
		}
	}
	a, err := g.startAgent(hc.ns, log, args, 9470+i)
	if err != nil {
		return err
	}
	vm.standby = a
	return a.WaitStatus(ctx, 30*time.Second, func(s Status) bool { return s.State != "" })
}

// peerMACs are the --group-peer-mac flags of vm's agents.
func (g *Group) peerMACs(vm *GroupVM) []string {
	var args []string
	for _, peer := range g.VMs {
		if peer != vm {
			args = append(args, "--group-peer-mac", peer.MAC)
		}
	}
	return args
}

// startSpare starts vm's standby on host-d (Reprotect): the backup of the
// guest once host-c resumed it and protects it again.
func (g *Group) startSpare(ctx context.Context, i int, vm *GroupVM) error {
	hd := g.Hosts[3]
	args := []string{"standby", "--vm", vm.Name, "--listen", netip.AddrPortFrom(hd.addr, uint16(7570+i)).String(),
		"--fence-cmd", g.fence(10 + i), "--fence-timeout", "10s", "--peer", g.Hosts[2].name,
		"--heartbeat-interval", "200ms", "--heartbeat-timeout", "1s", "--codec", "fgbi",
		"--domain", "qemu", "--qemu-config", filepath.Join(g.RunDir, vm.Name+"-d.json"),
		"--dataplane", "--pin-root", hd.pin, "--input-replay",
		"--announce-iface", hd.bridge, "--guest-mac", vm.MAC, "--guest-ip", vm.Addr.String(),
		"--group-listen", netip.AddrPortFrom(hd.addr, uint16(7590+i)).String(),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", 9570+i)}
	a, err := g.startAgent(hd.ns, vm.Name+"-spare.log", args, 9570+i)
	if err != nil {
		return err
	}
	vm.spare = a
	return a.WaitStatus(ctx, 30*time.Second, func(s Status) bool { return s.State != "" })
}

// Reprotected waits until every guest the group resumed on host-c is
// protected again to its standby on host-d, then starts the second
// group's coordinator on host-d (members: the agents on host-c) and waits
// for its rounds.
func (g *Group) Reprotected(ctx context.Context, limit time.Duration) error {
	if !g.Opts.Reprotect {
		return errors.New("group: built without Reprotect")
	}
	t0 := time.Now()
	for _, vm := range g.VMs {
		if err := vm.standby.WaitStatus(ctx, limit, func(s Status) bool { return s.Role == "primary" && s.State == "protected" }); err != nil {
			return fmt.Errorf("%s not protected again: %w", vm.Name, err)
		}
	}
	g.logf("every guest protected again to host-d after %v", time.Since(t0).Round(time.Millisecond))
	g.second = true
	if err := g.startCoordinator(ctx, "coordinator-d.log"); err != nil {
		return err
	}
	g.logf("second group's rounds running, coordinator on host-d")
	return nil
}

func (g *Group) startProtect(ctx context.Context, i int, vm *GroupVM) error {
	h := g.Hosts[vm.Primary]
	args := []string{"protect", "--vm", vm.Name, "--backup", netip.AddrPortFrom(g.Hosts[2].addr, uint16(7470+i)).String(),
		"--heartbeat-interval", "200ms", "--heartbeat-timeout", "1s", "--codec", "fgbi", "--no-progress",
		"--domain", "qemu", "--qemu-config", filepath.Join(g.RunDir, vm.Name+"-p.json"),
		"--dataplane", "--pin-root", h.pin, "--input-replay",
		"--group-listen", netip.AddrPortFrom(h.addr, uint16(7480+i)).String(),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", 9480+i)}
	if g.Opts.OnBackupLoss != "" {
		args = append(args, "--on-backup-loss", g.Opts.OnBackupLoss)
	}
	if !g.Opts.Uncoloured {
		args = append(args, g.peerMACs(vm)...)
		if g.Opts.UnsafeNoHold {
			args = append(args, "--unsafe-no-colour-hold")
		}
	}
	a, err := g.startAgent(h.ns, vm.Name+"-protect.log", args, 9480+i)
	if err != nil {
		return err
	}
	vm.protect = a
	t0 := time.Now()
	if err := a.WaitStatus(ctx, 90*time.Second, func(s Status) bool { return s.Epoch > 0 }); err != nil {
		return fmt.Errorf("%s first checkpoint: %w", vm.Name, err)
	}
	g.logf("%s protected after %v", vm.Name, time.Since(t0).Round(time.Millisecond))
	return nil
}

// startAgent starts an agent in ns whose --metrics-addr is 127.0.0.1:port
// (args end with it), logging to log in the run directory.
func (g *Group) startAgent(ns, log string, args []string, port int) (*Agent, error) {
	a, err := startAgent(ns, g.Bin, filepath.Join(g.RunDir, log), args)
	if err != nil {
		return nil, err
	}
	a.StatusAddr = fmt.Sprintf("127.0.0.1:%d", port)
	return a, nil
}

// RestartCoordinator kills the coordinator's process (SIGKILL, mid-round
// or not) and starts a new one with the same flags: it must go on from the
// members' rounds.
func (g *Group) RestartCoordinator(ctx context.Context) error {
	if err := g.Coord.Kill(); err != nil {
		return err
	}
	g.logf("coordinator killed")
	if err := g.startCoordinator(ctx, "coordinator-2.log"); err != nil {
		return err
	}
	g.logf("coordinator restarted")
	return nil
}

// HangCoordinator hangs the coordinator's process (SIGSTOP: its
// connections stay open) with a standby coordinator (--takeover-after)
// watching beside it on host-c, which must not lead while the old one
// runs, and must once it hangs. Then the old one runs again (SIGCONT): it
// must find itself superseded and exit. The standby is the group's
// coordinator from then on. It returns the time from the hang to the
// standby's first committed round.
func (g *Group) HangCoordinator(ctx context.Context) (time.Duration, error) {
	const takeover = 7 * time.Second // at least twice the rig's --round-timeout
	args := append(g.coordinatorArgs(), "--takeover-after", takeover.String(), "--metrics-addr", "127.0.0.1:9468")
	sb, err := g.startAgent(g.Hosts[g.coordHost()].ns, "coordinator-standby.log", args, 9468)
	if err != nil {
		return 0, err
	}
	g.coords = append(g.coords, sb)
	if err := sb.WaitStatus(ctx, 30*time.Second, func(s Status) bool { return s.State == "standby" }); err != nil {
		return 0, fmt.Errorf("standby coordinator: %w", err)
	}
	time.Sleep(takeover + time.Second)
	if st, err := sb.Status(ctx); err != nil || st.State != "standby" {
		return 0, fmt.Errorf("standby coordinator while the leader runs: state %q, %v; log:\n%s", st.State, err, sb.tail(20))
	}
	old := g.Coord
	if err := syscall.Kill(old.Pid(), syscall.SIGSTOP); err != nil {
		return 0, err
	}
	hung := time.Now()
	g.logf("coordinator hung (SIGSTOP)")
	err = sb.WaitStatus(ctx, 3*takeover, func(s Status) bool { return s.State == "committing" })
	took := time.Since(hung)
	if cerr := syscall.Kill(old.Pid(), syscall.SIGCONT); cerr != nil {
		return took, errors.Join(err, cerr)
	}
	if err != nil {
		return took, fmt.Errorf("no takeover: %w", err)
	}
	g.logf("standby coordinator leads %v after the hang; the old one runs again", took.Round(time.Millisecond))
	select {
	case <-old.Exited():
	case <-time.After(30 * time.Second):
		return took, fmt.Errorf("the superseded coordinator still runs; log:\n%s", old.tail(20))
	}
	if b, _ := os.ReadFile(old.LogPath); !strings.Contains(string(b), "coordinator superseded") {
		return took, fmt.Errorf("the old coordinator exited (%v) without saying it was superseded; log:\n%s", old.Err(), old.tail(20))
	}
	g.Coord = sb
	return took, nil
}

// coordHost is the host the coordinator runs on.
func (g *Group) coordHost() int {
	if g.second {
		return 3
	}
	return 2
}

// coordinatorArgs are the coordinator's command line.
func (g *Group) coordinatorArgs() []string {
	args := []string{"group", "coordinate", "--interval", g.Opts.Interval.String(), "--round-timeout", "3s"}
	if g.Opts.Stagger > 0 { // negative: none
		args = append(args, "--test-round-stagger", g.Opts.Stagger.String())
	}
	if g.Opts.UnsafeEarlyCommit {
		args = append(args, "--unsafe-early-commit")
	}
	if g.Opts.StopTheWorld {
		args = append(args, "--stop-the-world")
	}
	for i, vm := range g.VMs {
		member, standby := netip.AddrPortFrom(g.Hosts[vm.Primary].addr, uint16(7480+i)), netip.AddrPortFrom(g.Hosts[2].addr, uint16(7490+i))
		if g.second {
			member, standby = standby, netip.AddrPortFrom(g.Hosts[3].addr, uint16(7590+i))
		}
		args = append(args, "--member", fmt.Sprintf("%s=%s", vm.Name, member), "--standby", fmt.Sprintf("%s=%s", vm.Name, standby))
	}
	return args
}

// startCoordinator starts the coordinator and waits for its rounds.
func (g *Group) startCoordinator(ctx context.Context, log string) error {
	a, err := startAgent(g.Hosts[g.coordHost()].ns, g.Bin, filepath.Join(g.RunDir, log), g.coordinatorArgs())
	if err != nil {
		return err
	}
	g.Coord, g.coords = a, append(g.coords, a)
	// The members' epochs follow the rounds: the first rounds prove the group runs.
	for _, vm := range g.VMs {
		m := vm.protect
		if g.second {
			m = vm.standby
		}
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		first := st.Epoch
		if err := m.WaitStatus(ctx, 60*time.Second, func(s Status) bool { return s.Epoch >= first+3 }); err != nil {
			return fmt.Errorf("%s: no group rounds: %w", vm.Name, err)
		}
	}
	g.logf("group rounds running")
	return nil
}

// resume starts every guest's transfers.
func (g *Group) resume(ctx context.Context) error {
	for _, vm := range g.VMs {
		if err := g.ask(ctx, vm, func(c net.Conn, r *bufio.Reader) error {
			if reply, err := xbank.Ask(c, r, "RESUME"); err != nil || reply != "OK" {
				return fmt.Errorf("start %s's transfers: %q %v", vm.Name, reply, err)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// ColourCounters summarises the primaries' data-plane colour counters:
// frames sent to other members, received from them, received in transit,
// and held for the receiver's checkpoint.
func (g *Group) ColourCounters() string {
	var out []string
	for _, vm := range g.VMs {
		st, err := dataplane.ReadStatus(vm.Name, g.Hosts[vm.Primary].pin)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", vm.Name, err))
			continue
		}
		c := st.Counters
		out = append(out, fmt.Sprintf("%s: internal sent %d, received %d, in transit %d, held %d, hold full %d; captured (external) %d",
			vm.Name, c.InternalSent, c.InternalReceived, c.InTransit, c.Held, c.HoldFull, c.Captured))
	}
	return strings.Join(out, "; ")
}

// KillHost kills primary host h (0: host-a with vm0 and vm1, 1: host-b
// with vm2): its QEMUs and agents die and its cable is pulled. The members
// on the other primary host live on until the group's recovery stops them.
func (g *Group) KillHost(h int) error {
	var errs []error
	switch {
	case h == 2 && g.second: // the second group's members, and the first coordinator's host
		for _, vm := range g.VMs {
			errs = append(errs, killPidFile(vm.cfgB.PIDPath()), vm.standby.Kill())
		}
	case h == 2: // every backup and the coordinator
		for _, vm := range g.VMs {
			errs = append(errs, killPidFile(vm.cfgB.PIDPath()), vm.standby.Kill())
		}
		errs = append(errs, g.Coord.Kill())
	case h == 0 || h == 1:
		for _, vm := range g.VMs {
			if vm.Primary == h {
				errs = append(errs, killPidFile(vm.cfgP.PIDPath()), vm.protect.Kill())
			}
		}
	default:
		return fmt.Errorf("group: host %d hosts no member", h)
	}
	var b testenv.IPBatch
	b.Add("-n %s link set %s down", g.Hosts[h].ns, g.Hosts[h].uplink)
	errs = append(errs, b.Run())
	return errors.Join(errs...)
}

// PeakRSS is the agents' peak resident memory (VmHWM, with the guest RAM
// they map) and their anonymous memory now (their own), in MiB, by agent.
func (g *Group) PeakRSS() string {
	var out []string
	for _, vm := range g.VMs {
		for _, a := range []struct {
			role string
			a    *Agent
		}{{"protect", vm.protect}, {"standby", vm.standby}} {
			if a.a != nil {
				out = append(out, fmt.Sprintf("%s %s %d (own %d)", vm.Name, a.role, a.a.PeakRSS()>>20, a.a.AnonRSS()>>20))
			}
		}
	}
	return strings.Join(out, ", ")
}

// Pauses is each protected guest's pause per checkpoint (p50 and p99 of
// its primary's recent epochs), or "" unprotected.
func (g *Group) Pauses(ctx context.Context) (string, error) {
	var out []string
	for _, vm := range g.VMs {
		if vm.protect == nil {
			continue
		}
		st, err := vm.protect.Status(ctx)
		if err != nil {
			return "", err
		}
		if st.Stats == nil {
			return "", fmt.Errorf("%s: no epoch statistics", vm.Name)
		}
		p50, p99 := st.Stats.PauseP50.Seconds()*1e3, st.Stats.PauseP99.Seconds()*1e3
		out = append(out, fmt.Sprintf("%s %.1f/%.1f", vm.Name, p50, p99))
	}
	return strings.Join(out, ", "), nil
}

// KillStandby kills member i's standby agent and its standby QEMU (SIGKILL),
// nothing else: a backup agent's crash.
func (g *Group) KillStandby(i int) error {
	vm := g.VMs[i]
	return errors.Join(killPidFile(vm.cfgB.PIDPath()), vm.standby.Kill())
}

// RestartStandby starts member i's standby again, empty: the member's
// primary synchronises it from scratch.
func (g *Group) RestartStandby(ctx context.Context, i int) error {
	vm := g.VMs[i]
	return g.startStandby(ctx, i, vm, vm.Name+"-standby-2.log")
}

// WaitRecovered waits until every member's backup runs its guest (active,
// or already its primary again with Reprotect) and returns that moment,
// then waits for the coordinator to end its recovery (it exits once the
// members on a dead host were told to stop, or gave up on them: a second
// or so later) and requires it to have succeeded.
func (g *Group) WaitRecovered(ctx context.Context, limit time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	errs := make([]error, len(g.VMs))
	var wg sync.WaitGroup
	for i, vm := range g.VMs {
		b := vm.standby
		if g.second {
			b = vm.spare
		}
		wg.Go(func() {
			if err := b.WaitStatus(ctx, limit, func(s Status) bool { return s.State == "active" || s.Role == "primary" }); err != nil {
				errs[i] = fmt.Errorf("%s backup: %w; coordinator log:\n%s", vm.Name, err, g.Coord.tail(30))
			}
		})
	}
	wg.Wait()
	running := time.Now()
	if err := errors.Join(errs...); err != nil {
		return running, err
	}
	select {
	case <-g.Coord.Exited():
	case <-ctx.Done():
		return running, fmt.Errorf("coordinator still running after the recovery; log:\n%s", g.Coord.tail(30))
	}
	if err := g.Coord.Err(); err != nil {
		return running, fmt.Errorf("coordinator: %w; log:\n%s", err, g.Coord.tail(30))
	}
	return running, nil
}

// RecoveryLine is the coordinator's log line of the recovery, if any.
func (g *Group) RecoveryLine() string {
	b, _ := os.ReadFile(g.Coord.LogPath)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "group recovered") {
			return l
		}
	}
	return ""
}

// Audit pauses every guest's transfers, waits (bounded by limit) until no
// transfer is unacknowledged anywhere and a datagram's flight has passed,
// and returns the books, in member order, taken together at the end.
func (g *Group) Audit(ctx context.Context, limit time.Duration) ([]xbank.Audit, error) {
	for _, vm := range g.VMs {
		if err := g.ask(ctx, vm, func(c net.Conn, r *bufio.Reader) error {
			if reply, err := xbank.Ask(c, r, "PAUSE"); err != nil || reply != "OK" {
				return fmt.Errorf("pause %s: %q %v", vm.Name, reply, err)
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	audits := make([]xbank.Audit, len(g.VMs))
	read := func() (pending int, err error) {
		for i, vm := range g.VMs {
			if err := g.ask(ctx, vm, func(c net.Conn, r *bufio.Reader) (err error) {
				audits[i], err = xbank.ReadAudit(c, r)
				return err
			}); err != nil {
				return 0, err
			}
			pending += audits[i].Pending
		}
		return pending, nil
	}
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		pending, err := read()
		if err != nil {
			return nil, err
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(time.Second) // datagrams still in flight land
	_, err := read()
	return audits, err
}

func (g *Group) ask(ctx context.Context, vm *GroupVM, f func(net.Conn, *bufio.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := testenv.DialIn(ctx, g.Client, "tcp", netip.AddrPortFrom(vm.Addr, xbank.Port).String())
	if err != nil {
		return fmt.Errorf("%s audit: %w", vm.Name, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	return f(c, bufio.NewReaderSize(c, 1<<20))
}

// Bulk has guest from send to guest to for d and returns the bytes per
// second to got (VM-to-VM throughput).
func (g *Group) Bulk(ctx context.Context, from, to int, d time.Duration) (float64, error) {
	var rate float64
	err := g.ask(ctx, g.VMs[from], func(c net.Conn, r *bufio.Reader) (err error) {
		rate, err = xbank.Bulk(c, r, to, d)
		return err
	})
	return rate, err
}

// Sample reads every guest's books without pausing it.
func (g *Group) Sample(ctx context.Context) ([]xbank.Audit, error) {
	audits := make([]xbank.Audit, len(g.VMs))
	for i, vm := range g.VMs {
		if err := g.ask(ctx, vm, func(c net.Conn, r *bufio.Reader) (err error) {
			audits[i], err = xbank.ReadAudit(c, r)
			return err
		}); err != nil {
			return nil, err
		}
	}
	return audits, nil
}

// Ping is one client round trip to guest i on one TCP connection, kept
// across calls (and across a failover: the guest's TCP state moves with
// it); its reply is external output, held until the group commits the
// round that produced it. Not safe for concurrent calls on one guest.
func (g *Group) Ping(ctx context.Context, i int) (time.Duration, error) {
	p := &g.pings[i]
	if p.c == nil {
		c, err := testenv.DialIn(ctx, g.Client, "tcp", netip.AddrPortFrom(g.VMs[i].Addr, xbank.Port).String())
		if err != nil {
			return 0, err
		}
		p.c, p.r = c, bufio.NewReader(c)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.c.SetDeadline(time.Now()) })
	defer stop()
	t0 := time.Now()
	reply, err := xbank.Ask(p.c, p.r, "PING")
	if err == nil && reply != "PONG" {
		err = fmt.Errorf("ping %s: %q", g.VMs[i].Name, reply)
	}
	if err != nil {
		p.c.Close()
		p.c = nil
		return 0, err
	}
	return time.Since(t0), nil
}

// DumpLogs copies the agents' logs to w.
func (g *Group) DumpLogs(w io.Writer) {
	for _, vm := range g.VMs {
		for _, a := range []*Agent{vm.protect, vm.standby, vm.spare} {
			if a != nil {
				a.DumpLog(w)
			}
		}
	}
	for _, a := range g.coords {
		a.DumpLog(w)
	}
}

// Close kills every agent and QEMU and removes the namespaces, RAM files,
// pins and the run directory.
func (g *Group) Close() error {
	var errs []error
	for _, a := range g.coords {
		errs = append(errs, a.Kill())
	}
	for _, p := range g.pings {
		if p.c != nil {
			p.c.Close()
		}
	}
	for _, vm := range g.VMs {
		for _, a := range []*Agent{vm.protect, vm.standby, vm.spare} {
			if a != nil {
				errs = append(errs, a.Kill())
			}
		}
		for _, cfg := range []qemu.Config{vm.cfgP, vm.cfgB, vm.cfgD} {
			if cfg.QMPPath != "" {
				errs = append(errs, killPidFile(cfg.PIDPath()))
				_ = os.Remove(cfg.MemPath)
			}
		}
	}
	g.removeNamespaces()
	if g.bpfMount != "" {
		if err := unix.Unmount(g.bpfMount, unix.MNT_DETACH); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, os.RemoveAll(g.RunDir))
	return errors.Join(errs...)
}

func (g *Group) removeNamespaces() {
	for _, ns := range g.namespaces {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	}
}
