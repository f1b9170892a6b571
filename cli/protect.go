// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/resilire/resilire/checkpointer/wire"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/resilire/resilire/checkpointer"
	"github.com/schollz/progressbar/v3"
	ucli "github.com/urfave/cli/v2"
)

func protectCommand() *ucli.Command {
	flags := []ucli.Flag{
		agentVMFlag(),
		&ucli.StringFlag{Name: "backup", Usage: "host:port of the backup's standby agent", Required: true},
		&ucli.DurationFlag{Name: "interval", Value: checkpointer.DefaultInterval, Usage: "checkpoint interval (output is delayed by about this much)"},
		&ucli.DurationFlag{Name: "ack-timeout", Value: checkpointer.DefaultAckTimeout, Usage: "longest wait for one checkpoint's ACK before the backup counts as lost"},
		&ucli.StringFlag{Name: "on-backup-loss", Value: string(checkpointer.LossBlock), Usage: "block: hold all output until a backup is back (safe); " +
			"continue: drop unacknowledged output and let the guest talk unprotected"},
		&ucli.IntFlag{Name: "precopy-rounds", Value: checkpointer.DefaultPrecopyRounds, Usage: "pre-copy rounds after the full copy at (re)synchronisation; -1: no pre-copy, the first checkpoint copies all memory in one pause"},
		&ucli.IntFlag{Name: "scrub-every", Value: checkpointer.DefaultScrubEvery, Usage: "every N epochs compare a hash tree of all guest memory with the backup's replica " +
			"and alarm (log, metrics, status) on divergence, naming the pages; costs one full-memory hash in that epoch's pause; 0: off"},
		&ucli.IntFlag{Name: "max-skipped-epochs", Value: DefaultMaxSkippedEpochs, Usage: "epochs in a row that may be skipped because the guest " +
			"could not be paused (a Xen guest that did not suspend within --xen-suspend-timeout; it runs on and its output stays held), " +
			"before the agent stops; 0: stop at the first"},
		&ucli.BoolFlag{Name: "pipeline", Value: true, Usage: "take epoch e+1 while e is still being shipped (releases stay in order, after each ACK)"},
		&ucli.BoolFlag{Name: "unsafe-no-output-commit", Usage: "UNSAFE, for tests (like xl remus -n): release output at once, not after the ACK; " +
			"a failover can then roll back replies clients already saw"},
		&ucli.BoolFlag{Name: "no-progress", Usage: "no progress bar for the initial synchronisation"},
		&ucli.StringFlag{Name: "tls-server-name", Usage: "name expected in the backup's certificate (default: host of --backup)"},
		metricsFlag(),
		groupMemberFlag(), groupPeerFlag(), groupUnsafeFlag(),
	}
	flags = append(append(append(append(flags, timingFlags()...), codecFlags()...), tlsFlags()...), domainFlags()...)
	flags = append(flags, diskFlags(true)...)
	flags = append(flags, standbyRoleFlags("", "after a switchover away from this host: serve as the guest's standby on this address, "+
		"and protect it back to --backup once it runs here again (the --fence-cmd and --announce-* flags apply then); empty: exit")...)
	return &ucli.Command{
		Name:  "protect",
		Usage: "protect a VM: checkpoint it to a backup every interval and hold its output until each checkpoint is acknowledged",
		Description: "Runs on the primary host. Starts with a full synchronisation (pre-copy while the guest runs), " +
			"then every --interval pauses the guest, copies its dirty memory and device state, resumes it, " +
			"streams the checkpoint to the backup and releases the guest's output of that epoch only after the backup's ACK.",
		Flags:  flags,
		Before: checkAgent,
		Action: func(c *ucli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			cfg, reg, closeDrv0, err := primaryConfig(c, log)
			if err != nil {
				return err
			}
			closeDrv := sync.OnceFunc(closeDrv0)
			defer closeDrv()
			ring := checkpointer.NewEpochRing(statsWindow)
			cfg.OnEpoch = ring.Add
			var p *checkpointer.Primary
			var run func(context.Context) error
			if addr := c.String("group-listen"); addr != "" {
				p, run, err = groupAgent(c.String("vm"), addr, tlsFiles(c), cfg, log)
			} else {
				p, err = checkpointer.NewPrimary(cfg)
				run = p.Run
			}
			if err != nil {
				return err
			}
			status := func() checkpointer.Status { s := p.Status(); s.Stats = ring.Summary(); return s }
			if err := runAgent(c.Context, c, reg, status, p.Switchover, log, run); err != nil {
				return err
			}
			if p.Status().State != checkpointer.StateHandedOver || c.String("listen") == "" || c.Err() != nil {
				return nil
			}
			// The guest runs on the old backup now: serve as its standby.
			closeDrv()
			log.Warn("switched over: serving as the guest's standby", "vm", c.String("vm"), "listen", c.String("listen"))
			return standbyLoop(c, log, true)
		},
	}
}

// DefaultMaxSkippedEpochs is --max-skipped-epochs' default: with Xen's
// default 2 s suspend timeout, output is held at most about 8 s longer.
const DefaultMaxSkippedEpochs = 3

// statsWindow is how many recent epochs /status summarises.
const statsWindow = 1000

// primaryConfig turns the flags into the primary's configuration.
func primaryConfig(c *ucli.Context, log *slog.Logger) (checkpointer.PrimaryConfig, *prometheus.Registry, func(), error) {
	var cfg checkpointer.PrimaryConfig
	if err := checkTimings(c, "interval", "ack-timeout"); err != nil {
		return cfg, nil, nil, err
	}
	if n := c.Int("max-skipped-epochs"); n < 0 {
		return cfg, nil, nil, fmt.Errorf("--max-skipped-epochs %d: must be 0 or more", n)
	}
	policy, err := checkpointer.ParseLossPolicy(c.String("on-backup-loss"))
	if err != nil {
		return cfg, nil, nil, err
	}
	codec, err := codecFrom(c)
	if err != nil {
		return cfg, nil, nil, err
	}
	files := tlsFiles(c)
	if !files.Enabled() {
		wire.WarnPlaintext(log, c.String("backup"))
	}
	dial, err := wire.Dialer(c.String("backup"), files, 5*time.Second)
	if err != nil {
		return cfg, nil, nil, err
	}
	x, err := openPrimaryDisk(c, log)
	if err != nil {
		return cfg, nil, nil, err
	}
	drv, err := openPrimary(c, log)
	if err != nil {
		if x != nil {
			x.Close()
		}
		return cfg, nil, nil, err
	}
	if m, ok := codec.(interface{ EncoderMemory(uint64) uint64 }); ok {
		log.Info("checkpoint encoder memory in dom0 (--fgbi-cache-mib sets its shadow cache)", "vm", c.String("vm"),
			"mib", m.EncoderMemory(drv.domain.MemorySize())>>20)
	}
	closeAll := drv.close
	if x != nil {
		closeAll = func() { drv.close(); x.Close() }
	}
	reg := newRegistry()
	cfg = checkpointer.PrimaryConfig{Domain: drv.domain, Output: drv.output, Codec: codec, Dial: dial,
		Interval: c.Duration("interval"), HeartbeatInterval: c.Duration("heartbeat-interval"),
		HeartbeatTimeout: c.Duration("heartbeat-timeout"), AckTimeout: c.Duration("ack-timeout"),
		Input: drv.input, OnBackupLoss: policy, Pipeline: c.Bool("pipeline"), PrecopyRounds: c.Int("precopy-rounds"), ScrubEvery: c.Int("scrub-every"),
		MaxSkippedEpochs: c.Int("max-skipped-epochs"), Logger: log,
		Metrics: checkpointer.NewMetrics(reg, "primary", c.String("vm"))}
	switch {
	case x != nil && c.Bool("unsafe-no-disk-replication"):
		log.Warn("--unsafe-no-disk-replication: the disk is served but NOT replicated", "vm", c.String("vm"))
	case x != nil:
		cfg.Disk = x
	}
	if policy == checkpointer.LossContinue {
		log.Warn("--on-backup-loss=continue: if the backup is lost the guest keeps talking UNPROTECTED", "vm", c.String("vm"))
	}
	if !c.Bool("no-progress") {
		memBar, diskBar := progressFunc(c, "initial sync: memory"), progressFunc(c, "initial sync: disk")
		cfg.Progress = func(done, total uint64) { memBar(done*checkpointer.PageSize, total*checkpointer.PageSize) }
		cfg.DiskProgress = diskBar
	}
	return cfg, reg, closeAll, nil
}

// progressFunc draws a synchronisation's progress (bytes) on stderr; a new
// synchronisation (done going back) starts a new bar.
func progressFunc(c *ucli.Context, desc string) func(done, total uint64) {
	var bar *progressbar.ProgressBar
	return func(done, total uint64) {
		if bar == nil || done < uint64(bar.State().CurrentNum) {
			bar = progressbar.NewOptions64(int64(total), progressbar.OptionSetWriter(c.App.ErrWriter),
				progressbar.OptionSetDescription(desc), progressbar.OptionShowBytes(true),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionOnCompletion(func() { _, _ = c.App.ErrWriter.Write([]byte("\n")) }))
		}
		// A bar that cannot draw on stderr must not stop the synchronisation.
		_ = bar.Set64(int64(done))
	}
}
