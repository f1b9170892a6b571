// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/group"
	"github.com/resilire/resilire/checkpointer/wire"
)

// groupCommand is VDEchp's coordinator (issue 13, first part).
func groupCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "group",
		Usage: "protect several VMs as one group (VDEchp): checkpoints in rounds, external output released on the group's commit",
		Subcommands: []*ucli.Command{{
			Name:  "coordinate",
			Usage: "run the group's rounds over its members (each a 'resilire protect --group-listen' agent); run it on a backup host",
			Description: "Every --interval: each member checkpoints the round and ships it to its own backup; once every member's backup " +
				"holds the round, every member releases its output of it. A member that misses --round-timeout fails the round: " +
				"nothing of it is released and the command exits with the member's name (the group must then resume from the last " +
				"committed round; not automated yet). The link to the members is plaintext TCP.",
			Flags: []ucli.Flag{
				&ucli.StringSliceFlag{Name: "member", Required: true, Usage: "NAME=HOST:PORT of a member's --group-listen (repeat, at least two)"},
				&ucli.DurationFlag{Name: "interval", Value: checkpointer.DefaultInterval, Usage: "time between rounds"},
				&ucli.DurationFlag{Name: "round-timeout", Value: time.Second, Usage: "longest round before its laggard counts as failed"},
			},
			Action: func(c *ucli.Context) error {
				log, err := logger(c)
				if err != nil {
					return err
				}
				ms, err := groupMembers(c.StringSlice("member"))
				if err != nil {
					return err
				}
				if c.Duration("interval") <= 0 || c.Duration("round-timeout") <= 0 {
					return errors.New("--interval and --round-timeout must be positive")
				}
				var n uint64
				co := &group.Coordinator{Members: ms, Interval: c.Duration("interval"), RoundTimeout: c.Duration("round-timeout"), Logger: log,
					OnRound: func(st group.RoundStats) {
						if n++; n == 1 || n%1000 == 0 {
							log.Info("group round committed", "round", st.Round, "commit", st.Commit, "skew", st.Skew)
						}
					}}
				return co.Run(c.Context)
			},
		}},
	}
}

// groupMembers parses the --member flags.
func groupMembers(specs []string) ([]group.Member, error) {
	if len(specs) < 2 {
		return nil, fmt.Errorf("--member: %d given, a group has at least two", len(specs))
	}
	seen := map[string]bool{}
	var ms []group.Member
	for _, s := range specs {
		name, addr, ok := strings.Cut(s, "=")
		if !ok || name == "" || seen[name] {
			return nil, fmt.Errorf("--member %q: want a unique NAME=HOST:PORT", s)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--member %q: %w", s, err)
		}
		seen[name] = true
		dial, err := wire.Dialer(addr, wire.TLSFiles{}, 5*time.Second)
		if err != nil {
			return nil, err
		}
		ms = append(ms, group.NewRemoteMember(name, dial))
	}
	return ms, nil
}

// groupMemberFlag is protect's --group-listen.
func groupMemberFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "group-listen", Usage: "be a member of a VDEchp group: take checkpoints on the rounds of the " +
		"'resilire group coordinate' that connects here, and release output only on the group's commit (plaintext TCP)"}
}

// groupAgent runs the primary as a group member serving the coordinator's
// link on addr.
func groupAgent(vm, addr string, cfg checkpointer.PrimaryConfig, log *slog.Logger) (*checkpointer.Primary, func(context.Context) error, error) {
	m, err := group.NewLocalMember(vm, cfg)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--group-listen: %w", err)
	}
	log.Warn("group member: checkpoints follow the coordinator's rounds; the group link is plaintext", "vm", vm, "listen", ln.Addr().String())
	return m.P, func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return group.ServeMember(gctx, ln, m, log) })
		g.Go(func() error {
			err := m.P.Run(gctx)
			ln.Close() // the member's link ends with its primary
			if err == nil {
				err = context.Canceled
			}
			return err
		})
		return g.Wait()
	}, nil
}
