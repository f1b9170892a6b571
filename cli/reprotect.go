// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/wire"
	"github.com/resilire/resilire/dataplane"
	"github.com/resilire/resilire/netbuf"
)

// reprotectFlags are the standby's flags for after its failover
// (continuous protection: checkpointer.Roles).
func reprotectFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "reprotect-to", Usage: "after a failover, protect the guest again: host:port of the standby to replicate to " +
			"(the old primary's host once it runs 'resilire standby' again, or a spare); dialled until one answers, the guest meanwhile talking unprotected"},
		&ucli.DurationFlag{Name: "interval", Value: checkpointer.DefaultInterval, Usage: "checkpoint interval once protecting again (--reprotect-to)"},
		&ucli.BoolFlag{Name: "unsafe-no-output-commit", Usage: "UNSAFE, for tests: once protecting again after a failover (--reprotect-to), " +
			"release the guest's output at once instead of after each ACK"},
		&ucli.BoolFlag{Name: "discard-stale-guest", Usage: "qemu: destroy a QEMU of this VM still running on this host (the stale guest of a fenced primary " +
			"that came back) before starting the warm standby; without it the standby refuses to start beside one"},
	}
}

// promoter returns what turns this standby into the guest's primary once
// the guest runs here, nil without --reprotect-to. The primary replicates
// to --reprotect-to with the continue policy (the guest is the only copy:
// it keeps talking while no standby answers), holds output on the same
// data-plane port again, ships its input log, and replicates the disk
// this agent already serves to the live guest.
//
// With slot (a VDEchp group member's backup, --group-listen), the primary
// is a group member's, put in slot for the group's next coordinator: its
// output passes until the group's first round (it is the only copy, as
// above), then waits for the group's commits, and its frames to the other
// members are coloured (--group-peer-mac).
func promoter(c *ucli.Context, log *slog.Logger, reg *prometheus.Registry, drv *backupDriver, x *disk.Export,
	ring *checkpointer.EpochRing, slot *memberSlot) (func(context.Context) (*checkpointer.Primary, func(), error), error) {
	addr := c.String("reprotect-to")
	if c.Command.Name == "protect" {
		addr = c.String("backup") // protect's standby role protects back to its old backup
	}
	if addr == "" {
		return nil, nil
	}
	if drv.live == nil {
		return nil, fmt.Errorf("--reprotect-to: --domain %s cannot protect a guest it resumed", c.String("domain"))
	}
	if c.Duration("interval") <= 0 {
		return nil, fmt.Errorf("--interval %v: must be positive", c.Duration("interval"))
	}
	if c.String("disk-image") != "" && x == nil {
		return nil, errors.New("--reprotect-to with --disk-image needs --disk-socket: the disk replicated after a failover is the one served to the guest")
	}
	codec, err := codecFrom(c)
	if err != nil {
		return nil, err
	}
	files := tlsFiles(c)
	if !files.Enabled() {
		wire.WarnPlaintext(log, addr)
	}
	dial, err := wire.Dialer(addr, files, 5*time.Second)
	if err != nil {
		return nil, err
	}
	vm := c.String("vm")
	return func(context.Context) (*checkpointer.Primary, func(), error) {
		d, closeD, err := drv.live()
		if err != nil {
			return nil, nil, fmt.Errorf("open the live guest: %w", err)
		}
		cfg := checkpointer.PrimaryConfig{Domain: d, Codec: codec, Dial: dial, Interval: c.Duration("interval"),
			HeartbeatInterval: c.Duration("heartbeat-interval"), HeartbeatTimeout: c.Duration("heartbeat-timeout"),
			OnBackupLoss: checkpointer.LossContinue, Pipeline: true, ScrubEvery: checkpointer.DefaultScrubEvery,
			OnEpoch: ring.Add, Logger: log, Metrics: checkpointer.NewMetrics(reg, "primary", vm)}
		if x != nil {
			cfg.Disk = x
		}
		closeAll := closeD
		switch {
		case drv.dp == nil:
			log.Warn("no --dataplane: the guest's output is NOT held once protected again", "vm", vm)
			cfg.Output = checkpointer.NewEpochCounter()
		case c.Bool("unsafe-no-output-commit"):
			log.Warn("--unsafe-no-output-commit: the guest's output leaves BEFORE its checkpoint is safe; a failover can roll back what clients saw", "vm", vm)
			cfg.Output = checkpointer.NewEpochCounter()
		default:
			buf, err := netbuf.New(drv.dp, netbuf.Options{Logger: log})
			if err != nil {
				closeD()
				return nil, nil, fmt.Errorf("output buffer: %w", err)
			}
			closeAll = func() { buf.Close(); closeD() }
			if slot != nil {
				out, stopColours, err := groupColours(c, drv.dp, heldOutput{buf}, log)
				if err != nil {
					closeAll()
					return nil, nil, err
				}
				cfg.Output = out
				stop := closeAll
				closeAll = func() { stopColours(); stop() }
				break // the port holds from the group's first round on
			}
			// From pass to buffer: the continue policy releases each
			// interval until a standby holds a consistent checkpoint.
			if err := drv.dp.SetMode(dataplane.ModeBuffer); err != nil {
				closeAll()
				return nil, nil, err
			}
			cfg.Output = heldOutput{buf}
		}
		if drv.dp != nil && c.Bool("input-replay") {
			q := checkpointer.NewInputQueue(inputQueue)
			rd, err := dataplane.StartInputReader(drv.dp, q, log)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("input log: %w", err)
			}
			q.SetFlusher(rd)
			cfg.Input = q
			stop := closeAll
			closeAll = func() { rd.Close(); stop() }
		}
		if slot != nil {
			p, err := slot.become(vm, cfg, drv.dp)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			log.Warn("group member's guest resumed here: a member again, for the group's next coordinator", "vm", vm)
			return p, closeAll, nil
		}
		p, err := checkpointer.NewPrimary(cfg)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		return p, closeAll, nil
	}, nil
}
