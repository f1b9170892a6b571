// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/resilire/resilire/checkpointer/wire"
	"github.com/resilire/resilire/dataplane"
	"github.com/resilire/resilire/dataplane/packet"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/resilire/resilire/checkpointer"
	ucli "github.com/urfave/cli/v2"
)

func standbyCommand() *ucli.Command {
	flags := append([]ucli.Flag{agentVMFlag(), metricsFlag()}, standbyRoleFlags(":7470", "address the primary connects to")...)
	flags = append(append(append(append(flags, timingFlags()...), codecFlags()...), tlsFlags()...), domainFlags()...)
	flags = append(append(flags, diskFlags(false)...), reprotectFlags()...)
	flags = append(flags, groupStandbyFlag(), groupPeerFlag(), groupUnsafeFlag())
	return &ucli.Command{
		Name:  "standby",
		Usage: "hold a VM's replica for a primary and take over when it dies",
		Description: "Runs on the backup host. Applies each checkpoint only once it arrived whole and verified, then ACKs it. " +
			"When the primary is silent for --heartbeat-timeout it runs --fence-cmd, and only if that exits 0 resumes the guest " +
			"from the last committed checkpoint, switches its port to pass and announces the guest's address.",
		Flags:  flags,
		Before: checkAgent,
		Action: func(c *ucli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			return standbyLoop(c, log, false)
		},
	}
}

// standbyRoleFlags are the flags of the standby role, which protect has
// too: after a switchover it serves as the guest's standby (listen "" on
// protect: it exits instead).
func standbyRoleFlags(listen, listenUsage string) []ucli.Flag {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "listen", Value: listen, Usage: listenUsage},
		&ucli.StringFlag{Name: "fence-cmd", Usage: "command (run with /bin/sh -c) that must stop the old primary and exit 0 before this host goes live; " +
			"it gets RESILIRE_VM, RESILIRE_PEER, RESILIRE_EPOCH and RESILIRE_REASON in its environment"},
		&ucli.DurationFlag{Name: "fence-timeout", Value: checkpointer.DefaultFenceTimeout, Usage: "longest run of --fence-cmd"},
		&ucli.BoolFlag{Name: "unsafe-no-fence", Usage: "go live without fencing when the primary is lost (split brain possible)"},
		&ucli.StringFlag{Name: "peer", Usage: "the primary's name for the fence command (default: the address it connected from)"},
		&ucli.StringFlag{Name: "announce-iface", Usage: "interface for the gratuitous ARP after failover (empty: no announcement)"},
		&ucli.StringFlag{Name: "guest-mac", Usage: "guest MAC address to announce"},
		&ucli.StringFlag{Name: "guest-ip", Usage: "guest IPv4 address to announce"},
	}
	return flags
}

// standbyLoop serves as the guest's standby, and as its primary once it
// runs here (--reprotect-to); after a switchover away from this host it
// serves as the standby again, in this process (the guest left here, a
// stale copy, is destroyed first). stale says this host's guest is such a
// copy already (protect after its switchover).
func standbyLoop(c *ucli.Context, log *slog.Logger, stale bool) error {
	for {
		handedOver, err := runStandby(c, log, stale)
		if err != nil || !handedOver || c.Err() != nil {
			return err
		}
		log.Warn("switched over: serving as the guest's standby again", "vm", c.String("vm"), "listen", c.String("listen"))
		stale = true
	}
}

// runStandby is one standby (then primary) run. It reports whether it
// ended by handing the guest over to its peer.
func runStandby(c *ucli.Context, log *slog.Logger, stale bool) (bool, error) {
	rd, x, err := openBackupDisk(c, log)
	if err != nil {
		return false, err
	}
	defer closeBackupDisk(rd, x)
	cfg, reg, drv, err := backupConfig(c, log, stale)
	if err != nil {
		return false, err
	}
	defer cfg.Standby.Close()
	if rd != nil {
		cfg.Disk = rd
	}
	group := c.String("group-listen")
	cfg.Group = group != ""
	b, err := checkpointer.NewBackup(cfg)
	if err != nil {
		return false, err
	}
	ring := checkpointer.NewEpochRing(statsWindow)
	var slot *memberSlot // the member this backup becomes (--group-listen --reprotect-to)
	if group != "" {
		slot = &memberSlot{}
	}
	promote, err := promoter(c, log, reg, drv, x, ring, slot)
	if err != nil {
		return false, err
	}
	roles := checkpointer.NewRoles(b, promote, log)
	if slot != nil {
		roles.SetRunner(slot.run(log))
	}
	status := func() checkpointer.Status {
		s := roles.Status()
		if s.Role == "primary" {
			s.Stats = ring.Summary()
		}
		return s
	}
	run := roles.Run
	if group != "" {
		if run, err = groupStandby(c.String("vm"), group, tlsFiles(c), b, slot, roles.Run, log); err != nil {
			return false, err
		}
	}
	err = runAgent(c.Context, c, reg, status, roles.Switchover, log, run)
	return err == nil && roles.HandedOver(), err
}

// backupConfig turns the flags into the backup's configuration.
// stale: this host's guest is a stale copy to destroy.
func backupConfig(c *ucli.Context, log *slog.Logger, stale bool) (checkpointer.BackupConfig, *prometheus.Registry, *backupDriver, error) {
	var cfg checkpointer.BackupConfig
	if err := checkTimings(c, "fence-timeout"); err != nil {
		return cfg, nil, nil, err
	}
	codec, err := codecFrom(c)
	if err != nil {
		return cfg, nil, nil, err
	}
	ann, err := announcer(c)
	if err != nil {
		return cfg, nil, nil, err
	}
	drv, err := openBackup(c, log, stale)
	if err != nil {
		return cfg, nil, nil, err
	}
	ln, err := wire.Listen(c.String("listen"), tlsFiles(c), log)
	if err != nil {
		drv.standby.Close()
		return cfg, nil, nil, err
	}
	fo := checkpointer.FailoverConfig{UnsafeNoFence: c.Bool("unsafe-no-fence"), Peer: c.String("peer"), Port: drv.port, Announce: ann, Inject: drv.inject}
	if cmd := c.String("fence-cmd"); cmd != "" {
		fo.Fence = checkpointer.CommandFencer{Command: cmd, Timeout: c.Duration("fence-timeout")}
	}
	reg := newRegistry()
	cfg = checkpointer.BackupConfig{VM: c.String("vm"), Replica: drv.replica, Standby: drv.standby, Codec: codec,
		Listener: ln, HeartbeatInterval: c.Duration("heartbeat-interval"), HeartbeatTimeout: c.Duration("heartbeat-timeout"),
		Failover: fo, Logger: log, Metrics: checkpointer.NewMetrics(reg, "backup", c.String("vm"))}
	log.Info("standby listening", "vm", cfg.VM, "addr", ln.Addr().String())
	return cfg, reg, drv, nil
}

// announcer builds the gratuitous-ARP sender from the flags, nil if unset.
func announcer(c *ucli.Context) (checkpointer.Announcer, error) {
	iface := c.String("announce-iface")
	if iface == "" {
		return nil, nil
	}
	mac, err := net.ParseMAC(c.String("guest-mac"))
	if err != nil {
		return nil, fmt.Errorf("--guest-mac: %w", err)
	}
	ip := net.ParseIP(c.String("guest-ip"))
	if ip == nil || ip.To4() == nil {
		return nil, fmt.Errorf("--guest-ip %q: want an IPv4 address", c.String("guest-ip"))
	}
	snd, err := packet.Open(iface, false)
	if err != nil {
		return nil, err
	}
	return &dataplane.Announcer{MAC: mac, IP: ip, Sender: snd}, nil
}
