// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/netbuf"
)

// socketDirFlag is where hold, commit and dump find the control socket.
var socketDirFlag = &ucli.StringFlag{Name: "socket-dir", Value: netbuf.DefaultSocketDir, Usage: "directory of the holders' control sockets"}

func holdCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "hold",
		Usage: "hold the VM's output in the foreground; release it on commit or every --interval",
		Flags: []ucli.Flag{vmFlag(), socketDirFlag,
			&ucli.DurationFlag{Name: "interval", Value: 10 * time.Millisecond, Usage: "close and release an epoch this often"},
			&ucli.BoolFlag{Name: "manual", Usage: "release only on commit requests (resilire dataplane commit)"},
			&ucli.Int64Flag{Name: "max-bytes", Value: netbuf.DefaultMaxBytes, Usage: "bound on held output; beyond it frames are dropped"},
			&ucli.IntFlag{Name: "queues", Usage: "tap queues used to release (0: the port's setting)"}},
		Action: func(c *ucli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			cfg := netbuf.HolderConfig{VM: c.String("vm"), PinRoot: c.String("pin-root"), SocketDir: c.String("socket-dir"),
				Interval: c.Duration("interval"), Logger: log,
				Buffer: netbuf.Options{MaxBytes: c.Int64("max-bytes"), Queues: c.Int("queues"), Logger: log}}
			if c.Bool("manual") {
				cfg.Interval = 0
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			log.Info("holding output", "vm", cfg.VM, "socket", netbuf.SocketPath(cfg.SocketDir, cfg.VM), "interval", cfg.Interval)
			return netbuf.RunHolder(ctx, cfg)
		},
	}
}

func commitCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "commit",
		Usage: "release the held output up to an epoch (default: close the open epoch and release it)",
		Flags: []ucli.Flag{vmFlag(), socketDirFlag, &ucli.Uint64Flag{Name: "epoch", Usage: "release epochs <= N"}},
		Action: func(c *ucli.Context) error {
			var epoch *uint64
			if c.IsSet("epoch") {
				e := c.Uint64("epoch")
				epoch = &e
			}
			ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
			defer cancel()
			e, err := netbuf.Commit(ctx, netbuf.SocketPath(c.String("socket-dir"), c.String("vm")), epoch)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "released epochs <= %d\n", e)
			return err
		},
	}
}

func dumpCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "dump",
		Usage: "write the held (unreleased) frames to a pcap file",
		Flags: []ucli.Flag{vmFlag(), socketDirFlag, &ucli.StringFlag{Name: "pcap", Usage: "output file", Required: true}},
		Action: func(c *ucli.Context) error {
			f, err := os.Create(c.String("pcap"))
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, time.Minute)
			defer cancel()
			n, err := netbuf.Dump(ctx, netbuf.SocketPath(c.String("socket-dir"), c.String("vm")), f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "wrote %d bytes of pcap to %s\n", n, c.String("pcap"))
			return err
		},
	}
}
