// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/checkpointer/sim"
	"github.com/resilire/resilire/checkpointer/xen"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/dataplane"
	"github.com/resilire/resilire/netbuf"
	ucli "github.com/urfave/cli/v2"
)

// The one place where hypervisor drivers are chosen (--domain). Adding a
// driver means one case in each of openPrimary and openBackup, its name in
// agentDomains, and its flags in domainFlags.
//
// --domain has no default: an agent started without it must not quietly
// protect a simulated guest. The simulated domain (sim) exists for tests;
// protect and standby accept it only with the hidden --unsafe-allow-sim,
// and neither it nor its --sim-* flags appear in help. `resilire bench`
// builds its simulated guests itself and takes no --domain.

// agentDomains are the drivers protect and standby accept, as help and
// errors list them.
const agentDomains = "qemu or xen"

// domainFlags are the flags of every driver.
func domainFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "domain", Usage: "hypervisor driver (required): qemu (--qemu-config) or xen (build tag xen)"},
		&ucli.StringFlag{Name: "qemu-config", Usage: "qemu: `FILE` with this host's qemu.Config as JSON (same machine on both hosts; see Config.ForHost)"},
		&ucli.StringFlag{Name: "dirty-tracking", Value: "auto", Usage: "qemu (protect): auto (exact userfaultfd tracking where the kernel, ptrace and the config allow it, " +
			"else hashing; 'resilire qemu probe' says which and why), uffd-wp (fail without it) or hash"},
		&ucli.DurationFlag{Name: "xen-suspend-timeout", Value: xen.DefaultSuspendTimeout,
			Usage: "xen (protect): longest wait for the guest to suspend itself each epoch; past it the request is withdrawn, " +
				"the guest runs on and the epoch is skipped (see --max-skipped-epochs)"},
		&ucli.StringFlag{Name: "xen-config", Usage: "xen: the guest's xl `FILE`, the same on both hosts (default /etc/resilire/VM.cfg): " +
			"protect --start-vm creates the guest with it, standby restores it with it on failover; the replica takes its size from the primary"},
		&ucli.BoolFlag{Name: "unsafe-allow-sim", Hidden: true, Usage: "tests only: accept --domain sim, an in-process simulated guest"},
		&ucli.Uint64Flag{Name: "sim-memory-mib", Value: 64, Hidden: true, Usage: "sim: guest memory in MiB"},
		&ucli.Uint64Flag{Name: "sim-seed", Value: 1, Hidden: true, Usage: "sim: seed of the write pattern"},
		&ucli.IntFlag{Name: "sim-writes-per-ms", Value: 200, Hidden: true, Usage: "sim: 64-byte writes per millisecond"},
		&ucli.Uint64Flag{Name: "sim-hot-pages", Value: 4096, Hidden: true, Usage: "sim: working set in pages (0 = all memory)"},
		&ucli.BoolFlag{Name: "dataplane", Usage: "use the guest port attached with 'resilire dataplane attach --vm NAME': " +
			"protect holds its output (netbuf); standby switches it to pass on failover"},
		&ucli.BoolFlag{Name: "input-replay", Usage: "with --dataplane (port attached with --input-log): protect ships the guest's input log to the backup; " +
			"standby re-injects it into the resumed guest after a failover"},
		&ucli.StringFlag{Name: "pin-root", Value: dataplane.DefaultPinRoot, Usage: "bpffs directory of the data plane's pinned state"},
	}
}

// checkDomain, run by the Before hook of protect and standby, refuses a
// missing or unknown --domain, sim without --unsafe-allow-sim, and a
// driver without the flags it needs. It only reads flags: the docs test
// runs it on every documented command line.
func checkDomain(c *ucli.Context) error {
	switch d := c.String("domain"); d {
	case "qemu":
		if c.String("qemu-config") == "" {
			return errors.New("--domain qemu needs --qemu-config FILE")
		}
		_, err := qemu.ParseTracking(c.String("dirty-tracking"))
		return err
	case "xen":
		if c.String("disk-image") != "" {
			if c.String("disk-socket") == "" {
				return errors.New("--disk-image with --domain xen needs --disk-socket: the guest's disk is the image served there " +
					"(its xl disk: script=block-resilire,target=SOCKET)")
			}
			if c.Command.Name == "protect" && !c.Bool("start-vm") {
				return errors.New("--disk-image needs --start-vm with --domain xen: the disk's export lives in protect, so protect creates the guest (xl create --xen-config)")
			}
		}
		// Not built for Xen yet: refused rather than half done.
		if c.String("reprotect-to") != "" {
			return errors.New("--reprotect-to: continuous protection is QEMU's; a Xen guest restored here is not protected again yet")
		}
		return nil
	case "":
		return fmt.Errorf("--domain is required: %s", agentDomains)
	case "sim":
		if c.Bool("unsafe-allow-sim") {
			return nil
		}
		return fmt.Errorf("--domain sim: the simulated guest is for tests only (hidden flag --unsafe-allow-sim); want %s", agentDomains)
	default:
		return fmt.Errorf("--domain %q: want %s", d, agentDomains)
	}
}

// openDataplane reopens the VM's pinned data-plane port, nil without --dataplane.
func openDataplane(c *ucli.Context, log *slog.Logger) (*dataplane.Port, error) {
	if !c.Bool("dataplane") {
		return nil, nil
	}
	p, err := dataplane.Open(c.String("vm"), c.String("pin-root"), log)
	if err != nil {
		return nil, fmt.Errorf("open data plane of %s: %w", c.String("vm"), err)
	}
	return p, nil
}

// heldOutput is netbuf.Buffer as the engine's OutputCommit, with stats.
type heldOutput struct{ *netbuf.Buffer }

func (h heldOutput) HeldBytes() uint64 { return uint64(max(h.Stats().HeldBytes, 0)) }

// Dropped counts held frames lost before release: the byte bound's tail
// drops and, on path redirect, the tap's drops when the reader fell behind.
func (h heldOutput) Dropped() uint64 {
	st := h.Stats()
	return st.Dropped + st.TapDropped
}

// passPort switches the standby's port to pass on failover.
type passPort struct{ p *dataplane.Port }

func (p passPort) Pass() error { return p.p.SetMode(dataplane.ModePass) }

func simConfig(c *ucli.Context) sim.Config {
	return sim.Config{Name: c.String("vm"), MemSize: c.Uint64("sim-memory-mib") << 20, Seed: c.Uint64("sim-seed"),
		WritesPerMs: c.Int("sim-writes-per-ms"), HotPages: c.Uint64("sim-hot-pages")}
}

// Input log replay (--input-replay, off by default): protect ships the
// port's input log to the backup; standby re-injects it toward the resumed
// guest after a failover.
var errInputReplay = errors.New("--input-replay needs --dataplane (the port attached with --input-log)")

// inputQueue is how many input-log records may wait for the replication link.
const inputQueue = 4096

// primaryDriver is what `protect` needs from a driver.
type primaryDriver struct {
	domain checkpointer.Domain
	output checkpointer.OutputCommit
	input  *checkpointer.InputQueue // nil without --input-replay
	close  func()
}

// openPrimary opens the protected VM and its output buffer.
func openPrimary(c *ucli.Context, log *slog.Logger) (*primaryDriver, error) {
	var drv primaryDriver
	if c.Bool("input-replay") && !c.Bool("dataplane") {
		return nil, errInputReplay
	}
	switch c.String("domain") {
	case "sim":
		d := sim.NewDomain(simConfig(c))
		d.Start()
		drv.domain, drv.close = d, d.Stop
	case "qemu":
		if err := openQEMUPrimary(c, log, &drv); err != nil {
			return nil, err
		}
	case "xen":
		if err := openXenPrimary(c, log, &drv); err != nil {
			return nil, err
		}
	default:
		return nil, checkDomain(c)
	}
	port, err := openDataplane(c, log)
	if err == nil && port != nil && c.Bool("unsafe-no-output-commit") {
		log.Warn("--unsafe-no-output-commit: the guest's output leaves BEFORE its checkpoint is safe; a failover can roll back what clients saw", "vm", c.String("vm"))
		err = port.SetMode(dataplane.ModePass)
		port.Close()
		port = nil
		drv.output = checkpointer.NewEpochCounter()
		return &drv, err
	}
	if err != nil || port == nil {
		if err == nil {
			log.Warn("no --dataplane: the guest's output is NOT held (nothing to protect it with)", "vm", c.String("vm"))
			drv.output = checkpointer.NewEpochCounter()
		}
		return &drv, err
	}
	buf, err := netbuf.New(port, netbuf.Options{Logger: log})
	if err != nil {
		port.Close()
		return nil, fmt.Errorf("output buffer: %w", err)
	}
	out, stopColours, err := groupColours(c, port, heldOutput{buf}, log)
	if err != nil {
		buf.Close()
		port.Close()
		return nil, err
	}
	stop := drv.close
	drv.output, drv.close = out, func() { stopColours(); buf.Close(); port.Close(); stop() }
	if c.Bool("input-replay") {
		q := checkpointer.NewInputQueue(inputQueue)
		rd, err := dataplane.StartInputReader(port, q, log)
		if err != nil {
			drv.close()
			return nil, fmt.Errorf("--input-replay: %w", err)
		}
		q.SetFlusher(rd)
		stopAll := drv.close
		drv.input, drv.close = q, func() { rd.Close(); stopAll() }
		log.Info("input log shipped to the backup for replay", "vm", c.String("vm"))
	}
	return &drv, nil
}

// backupDriver is what `standby` needs from a driver.
type backupDriver struct {
	replica checkpointer.Replica
	standby checkpointer.Standby
	port    checkpointer.PortSwitch    // nil: no data-plane port to switch
	inject  checkpointer.InputInjector // nil without --input-replay
	// dp is the data-plane port (nil without --dataplane): after a
	// failover it holds the guest's output again (--reprotect-to).
	dp *dataplane.Port
	// live opens the guest once it runs here, as a primary's Domain (nil:
	// the driver cannot protect it again).
	live func() (checkpointer.Domain, func(), error)
}

// openBackup prepares the replica and the standby VM; stale destroys a
// guest of this VM still running here (after a switchover away).
func openBackup(c *ucli.Context, log *slog.Logger, stale bool) (*backupDriver, error) {
	var drv backupDriver
	if c.Bool("input-replay") && !c.Bool("dataplane") {
		return nil, errInputReplay
	}
	switch c.String("domain") {
	case "sim":
		r := sim.NewReplica(c.Uint64("sim-memory-mib") << 20)
		drv.replica, drv.standby = r, sim.NewStandby(simConfig(c), r)
	case "qemu":
		if err := openQEMUBackup(c, log, &drv, stale); err != nil {
			return nil, err
		}
	case "xen":
		if err := openXenBackup(c, log, &drv); err != nil {
			return nil, err
		}
	default:
		return nil, checkDomain(c)
	}
	port, err := openDataplane(c, log)
	if err == nil && port != nil {
		// Passive: nothing from the local copy may leave until fencing
		// succeeded and the guest runs here (failover sets pass).
		err = port.SetMode(dataplane.ModeBlock)
		drv.port, drv.dp = passPort{port}, port
		if c.Bool("input-replay") {
			drv.inject = dataplane.Injector{Iface: port.PortName(), Logger: log}
		}
	}
	if err != nil {
		drv.standby.Close()
		return nil, err
	}
	return &drv, nil
}
