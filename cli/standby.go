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
	flags := []ucli.Flag{
		agentVMFlag(),
		&ucli.StringFlag{Name: "listen", Value: ":7470", Usage: "address the primary connects to"},
		&ucli.StringFlag{Name: "fence-cmd", Usage: "command (run with /bin/sh -c) that must stop the old primary and exit 0 before this host goes live; " +
			"it gets RESILIRE_VM, RESILIRE_PEER, RESILIRE_EPOCH and RESILIRE_REASON in its environment"},
		&ucli.DurationFlag{Name: "fence-timeout", Value: checkpointer.DefaultFenceTimeout, Usage: "longest run of --fence-cmd"},
		&ucli.BoolFlag{Name: "unsafe-no-fence", Usage: "go live without fencing when the primary is lost (split brain possible)"},
		&ucli.StringFlag{Name: "peer", Usage: "the primary's name for the fence command (default: the address it connected from)"},
		&ucli.StringFlag{Name: "announce-iface", Usage: "interface for the gratuitous ARP after failover (empty: no announcement)"},
		&ucli.StringFlag{Name: "guest-mac", Usage: "guest MAC address to announce"},
		&ucli.StringFlag{Name: "guest-ip", Usage: "guest IPv4 address to announce"},
		metricsFlag(),
	}
	flags = append(append(append(append(flags, timingFlags()...), codecFlags()...), tlsFlags()...), domainFlags()...)
	flags = append(append(flags, diskFlags(false)...), reprotectFlags()...)
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
			rd, x, err := openBackupDisk(c, log)
			if err != nil {
				return err
			}
			defer closeBackupDisk(rd, x)
			cfg, reg, drv, err := backupConfig(c, log)
			if err != nil {
				return err
			}
			defer cfg.Standby.Close()
			if rd != nil {
				cfg.Disk = rd
			}
			b, err := checkpointer.NewBackup(cfg)
			if err != nil {
				return err
			}
			ring := checkpointer.NewEpochRing(statsWindow)
			promote, err := promoter(c, log, reg, drv, x, ring)
			if err != nil {
				return err
			}
			roles := checkpointer.NewRoles(b, promote, log)
			status := func() checkpointer.Status {
				s := roles.Status()
				if s.Role == "primary" {
					s.Stats = ring.Summary()
				}
				return s
			}
			return runAgent(c.Context, c, reg, status, roles.Switchover, log, roles.Run)
		},
	}
}

// backupConfig turns the flags into the backup's configuration.
func backupConfig(c *ucli.Context, log *slog.Logger) (checkpointer.BackupConfig, *prometheus.Registry, *backupDriver, error) {
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
	drv, err := openBackup(c, log)
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
	reg := prometheus.NewRegistry()
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
