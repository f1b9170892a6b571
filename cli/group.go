// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/group"
	"github.com/resilire/resilire/checkpointer/wire"
	"github.com/resilire/resilire/dataplane"
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
				"holds round r, round r-1 is committed (its frames in transit are logged at the backups too) and every member releases " +
				"its external output of it. A member that misses --round-timeout fails the round: nothing more is released; with " +
				"--standby the whole group resumes from the last committed round, without it the command exits with the member's name. " +
				"Started against running members (a restart), it goes on from their rounds. Each coordinator has a term (its start time): " +
				"the agents follow the highest they have seen and refuse an older coordinator, which then exits; a standby coordinator " +
				"(--takeover-after) leads once the rounds stop. The links are mutual TLS with --tls-cert, --tls-key and --tls-ca (the agents use their own TLS flags), plaintext TCP otherwise.",
			Flags: []ucli.Flag{
				&ucli.StringSliceFlag{Name: "member", Required: true, Usage: "NAME=HOST:PORT of a member's --group-listen (repeat, at least two)"},
				&ucli.DurationFlag{Name: "interval", Value: checkpointer.DefaultInterval, Usage: "time between rounds"},
				&ucli.DurationFlag{Name: "round-timeout", Value: time.Second, Usage: "longest round before its laggard counts as failed"},
				&ucli.StringSliceFlag{Name: "standby", Usage: "NAME=HOST:PORT of member NAME's backup ('resilire standby --group-listen'); " +
					"one per member, or none. With them a failed round rolls the whole group back: every member resumes on its backup " +
					"from the last committed round"},
				&ucli.DurationFlag{Name: "start-timeout", Value: 2 * time.Minute, Usage: "longest first round: members protected again " +
					"after a recovery take it once their new backup is synchronised"},
				&ucli.DurationFlag{Name: "recovery-timeout", Value: 5 * time.Minute, Usage: "longest group recovery (fencing and restoring every member)"},
				&ucli.BoolFlag{Name: "unsafe-early-commit", Usage: "UNSAFE: commit a round as soon as every backup holds it (one round less " +
					"of external latency): a frame in transit across the cut is lost if its receiver's host dies before its input log reaches the backup"},
				&ucli.BoolFlag{Name: "stop-the-world", Usage: "baseline for measurements: VNsnap-style rounds, every member's guest stays " +
					"paused until every member captured the round (longer pauses, as skew and the slowest capture add to each)"},
				&ucli.DurationFlag{Name: "takeover-after", Usage: "be a standby coordinator (on another host than the leading one): watch the " +
					"members and lead the group once none has been asked for a round for this long, with a higher term that makes the agents " +
					"refuse the old coordinator; at least twice --round-timeout. 0: lead at once"},
				&ucli.DurationFlag{Name: "test-round-stagger", Hidden: true, Usage: "delay the k-th member's round by k times this (tests: a wide pause skew)"},
				&ucli.StringFlag{Name: "metrics-addr", Value: defaultGroupMetricsAddr, Usage: "address for /metrics (Prometheus) and /status " +
					"(JSON: is the group protected, from which round would it resume); empty disables"},
				&ucli.StringFlag{Name: "tls-cert", Usage: "PEM certificate of the coordinator (mutual TLS on the group links)"},
				&ucli.StringFlag{Name: "tls-key", Usage: "PEM private key of the coordinator"},
				&ucli.StringFlag{Name: "tls-ca", Usage: "PEM CA bundle that signs the agents' certificates"},
			},
			Action: func(c *ucli.Context) error {
				log, err := logger(c)
				if err != nil {
					return err
				}
				files := wire.TLSFiles{Cert: c.String("tls-cert"), Key: c.String("tls-key"), CA: c.String("tls-ca")}
				if !files.Enabled() {
					log.Warn("group links without TLS: rounds, commits and recovery orders travel unauthenticated (configure --tls-cert, --tls-key and --tls-ca)")
				}
				if c.Bool("unsafe-early-commit") {
					log.Warn("UNSAFE: --unsafe-early-commit: a frame in transit across a round's cut can be lost in a recovery")
				}
				ms, err := groupMembers(c.StringSlice("member"), files)
				if err != nil {
					return err
				}
				sbs, err := groupStandbys(c.StringSlice("standby"), files)
				if err != nil {
					return err
				}
				if c.Duration("interval") <= 0 || c.Duration("round-timeout") <= 0 {
					return errors.New("--interval and --round-timeout must be positive")
				}
				var n uint64
				reg := newRegistry()
				co := &group.Coordinator{Metrics: group.NewMetrics(reg), Members: ms, Standbys: sbs, Interval: c.Duration("interval"), RoundTimeout: c.Duration("round-timeout"),
					RecoveryTimeout: c.Duration("recovery-timeout"), Stagger: c.Duration("test-round-stagger"), Logger: log,
					UnsafeEarlyCommit: c.Bool("unsafe-early-commit"), StartTimeout: c.Duration("start-timeout"), StopTheWorld: c.Bool("stop-the-world"),
					OnRound: func(st group.RoundStats) {
						if n++; n == 1 || n%1000 == 0 {
							log.Info("group round committed", "round", st.Round, "commit", st.Commit, "skew", st.Skew)
						}
					},
					OnRecovery: func(r group.Recovery) {
						log.Warn("group recovered: every member runs on its backup; the group is not protected again yet",
							"failed_round", r.Failed, "round", r.Round, "took", r.Took)
					}}
				takeover := c.Duration("takeover-after")
				var observers []group.Member
				if takeover != 0 {
					if takeover < 2*c.Duration("round-timeout") {
						return fmt.Errorf("--takeover-after %v: at least twice --round-timeout (%v), or the two coordinators would both lead", takeover, c.Duration("round-timeout"))
					}
					// Links of their own, without a term: observers.
					if observers, err = groupMembers(c.StringSlice("member"), files); err != nil {
						return err
					}
				}
				ctx, cancel := context.WithCancel(c.Context)
				defer cancel()
				srv := make(chan error, 1)
				if addr := c.String("metrics-addr"); addr != "" {
					go func() { srv <- checkpointer.ServeAgentHTTP(ctx, addr, reg, co.Status, nil, nil, log) }()
				} else {
					srv <- nil
				}
				if observers != nil {
					log.Info("standby coordinator: watching the group's rounds", "takeover_after", takeover)
					poll := min(max(c.Duration("interval"), 100*time.Millisecond), takeover/4)
					if err := co.Standby(ctx, observers, poll, takeover); err != nil {
						cancel()
						serr := <-srv
						if c.Err() != nil {
							return serr // stopped while standing by
						}
						return errors.Join(err, serr)
					}
					for _, o := range observers {
						o.(*group.RemoteMember).Close()
					}
				}
				err = co.Run(ctx)
				cancel()
				return errors.Join(err, <-srv)
			},
		}, {
			Name:  "status",
			Usage: "show the state of a running group coordinator: is the group protected, from which round would it resume",
			Flags: []ucli.Flag{
				&ucli.StringFlag{Name: "addr", Value: defaultGroupMetricsAddr, Usage: "the coordinator's --metrics-addr"},
				&ucli.BoolFlag{Name: "json", Usage: "print the raw JSON"},
			},
			Action: func(c *ucli.Context) error {
				st, err := checkpointer.FetchStatusOf[group.Status](c.Context, c.String("addr"))
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return json.NewEncoder(c.App.Writer).Encode(st)
				}
				missing := "none"
				if len(st.WithoutBackup) > 0 {
					missing = strings.Join(st.WithoutBackup, ",")
				}
				_, err = fmt.Fprintf(c.App.Writer, "group  state %s  round %d  held %d  resumes from %d  rounds %d  without backup: %s  since %s\n",
					st.State, st.Round, st.Held, st.Committed, st.Rounds, missing, st.Since.Format(time.RFC3339))
				return err
			},
		}},
	}
}

// defaultGroupMetricsAddr is the coordinator's default --metrics-addr
// (the agents' is 9470).
const defaultGroupMetricsAddr = "127.0.0.1:9469"

// groupMembers parses the --member flags.
func groupMembers(specs []string, files wire.TLSFiles) ([]group.Member, error) {
	if len(specs) < 2 {
		return nil, fmt.Errorf("--member: %d given, a group has at least two", len(specs))
	}
	var ms []group.Member
	err := groupSpecs("member", specs, files, func(name string, dial func(context.Context) (net.Conn, error)) {
		ms = append(ms, group.NewRemoteMember(name, dial))
	})
	return ms, err
}

// groupStandbys parses the --standby flags (the coordinator checks that
// they match the members).
func groupStandbys(specs []string, files wire.TLSFiles) ([]group.Standby, error) {
	var sbs []group.Standby
	err := groupSpecs("standby", specs, files, func(name string, dial func(context.Context) (net.Conn, error)) {
		sbs = append(sbs, group.NewRemoteStandby(name, dial))
	})
	return sbs, err
}

// groupSpecs parses NAME=HOST:PORT flags, names unique.
func groupSpecs(flag string, specs []string, files wire.TLSFiles, add func(name string, dial func(context.Context) (net.Conn, error))) error {
	seen := map[string]bool{}
	for _, s := range specs {
		name, addr, ok := strings.Cut(s, "=")
		if !ok || name == "" || seen[name] {
			return fmt.Errorf("--%s %q: want a unique NAME=HOST:PORT", flag, s)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("--%s %q: %w", flag, s, err)
		}
		seen[name] = true
		dial, err := wire.Dialer(addr, files, 5*time.Second)
		if err != nil {
			return err
		}
		add(name, dial)
	}
	return nil
}

// groupMemberFlag is protect's --group-listen.
func groupMemberFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "group-listen", Usage: "be a member of a VDEchp group: take checkpoints on the rounds of the " +
		"'resilire group coordinate' that connects here, and release output only on the group's commit (TLS with this agent's --tls-* flags)"}
}

// groupPeerFlag is protect's --group-peer-mac (and standby's, for the
// member it becomes with --reprotect-to).
func groupPeerFlag() ucli.Flag {
	return &ucli.StringSliceFlag{Name: "group-peer-mac", Usage: "MAC of another member's guest (repeat): frames to it carry this " +
		"member's round and leave without waiting for the group's commit; frames from it of a later round wait for this member's " +
		"checkpoint (needs --group-listen, --dataplane and a port attached with --group; standby: once the guest resumed here is " +
		"protected again with --reprotect-to)"}
}

// groupUnsafeFlag is protect's --unsafe-no-colour-hold.
func groupUnsafeFlag() ucli.Flag {
	return &ucli.BoolFlag{Name: "unsafe-no-colour-hold", Usage: "deliver frames from other members at once even when they come " +
		"from a later round (tests only: the negative control of the colour hold; a group rollback can then keep orphans)"}
}

// colouredOutput is the data plane's held output that also colours the
// member's internal frames (group.Colours): the port's round, and the
// frames held for this member's next checkpoint.
type colouredOutput struct {
	heldOutput
	port *dataplane.Port
	hold *dataplane.HoldQueue
}

func (o colouredOutput) SetRound(r uint32) error           { return o.port.SetRound(r) }
func (o colouredOutput) ReleaseHeld(r uint32) (int, error) { return o.hold.Release(r) }

func (o colouredOutput) Leave() error {
	if err := o.port.SetRound(0); err != nil {
		return err
	}
	_, err := o.hold.ReleaseAll()
	return err
}

// groupColours colours the member's internal frames when --group-peer-mac
// names its peers; out is returned unchanged otherwise.
func groupColours(c *ucli.Context, port *dataplane.Port, out heldOutput, log *slog.Logger) (checkpointer.OutputCommit, func(), error) {
	specs := c.StringSlice("group-peer-mac")
	if len(specs) == 0 && c.Bool("unsafe-no-colour-hold") {
		return nil, nil, errors.New("--unsafe-no-colour-hold needs --group-peer-mac")
	}
	if len(specs) == 0 {
		return out, func() {}, nil
	}
	if c.String("group-listen") == "" {
		return nil, nil, errors.New("--group-peer-mac needs --group-listen")
	}
	var macs []net.HardwareAddr
	for _, s := range specs {
		mac, err := net.ParseMAC(s)
		if err != nil || len(mac) != 6 {
			return nil, nil, fmt.Errorf("--group-peer-mac %q: want a 6-byte MAC", s)
		}
		macs = append(macs, mac)
	}
	if !port.Group() {
		return nil, nil, fmt.Errorf("--group-peer-mac: the port of %s was attached without --group", c.String("vm"))
	}
	if err := port.SetGroupPeers(macs); err != nil {
		return nil, nil, err
	}
	unsafe := c.Bool("unsafe-no-colour-hold")
	if unsafe {
		log.Error("--unsafe-no-colour-hold: frames from a later round reach the guest before its checkpoint; a group rollback can keep orphans", "vm", c.String("vm"))
	}
	if err := port.SetUnsafeNoHold(unsafe); err != nil {
		return nil, nil, err
	}
	q, err := dataplane.StartHoldQueue(port, 0, log)
	if err != nil {
		return nil, nil, err
	}
	log.Info("group member: frames to the other members are coloured, not held for the commit", "vm", c.String("vm"), "peers", len(macs))
	return colouredOutput{heldOutput: out, port: port, hold: q}, func() { q.Close() }, nil
}

// groupAgent runs the primary as a group member serving the coordinator's
// link on addr.
func groupAgent(vm, addr string, files wire.TLSFiles, cfg checkpointer.PrimaryConfig, log *slog.Logger) (*checkpointer.Primary, func(context.Context) error, error) {
	colours, _ := cfg.Output.(group.Colours) // nil: internal frames stay under output commit
	m, err := group.NewLocalMember(vm, cfg)
	if err != nil {
		return nil, nil, err
	}
	if colours != nil {
		if err := m.SetColours(colours); err != nil {
			return nil, nil, err
		}
	}
	ln, err := wire.Listen(addr, files, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("--group-listen: %w", err)
	}
	log.Warn("group member: checkpoints follow the coordinator's rounds", "vm", vm, "listen", ln.Addr().String(), "tls", files.Enabled())
	return m.P, func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return group.ServeMember(gctx, ln, m, log) })
		g.Go(func() error {
			err := runMember(gctx, m, log)
			ln.Close() // the member's link ends with its primary
			if err == nil {
				err = context.Canceled
			}
			return err
		})
		return g.Wait()
	}, nil
}

// runMember runs a member's primary until ctx ends. Aborted, the group
// resumed this guest elsewhere: it stays paused here until its backup's
// fence ends it, and the link keeps answering the coordinator (its ABORT
// is answered once the guest paused).
func runMember(ctx context.Context, m *group.LocalMember, log *slog.Logger) error {
	err := m.Run(ctx)
	if errors.Is(err, group.ErrAborted) {
		log.Error("group rolled back: this member's guest is paused for good", "vm", m.Name())
		<-ctx.Done()
	}
	return err
}

// memberSlot is the member a group member's backup agent becomes once the
// group resumed its guest here and it protects it again (--reprotect-to);
// nil before.
type memberSlot struct {
	mu sync.Mutex
	m  *group.LocalMember
}

// member is the slot's member, nil (untyped) before.
func (s *memberSlot) member() group.Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		return nil
	}
	return s.m
}

// become builds the member over cfg: coloured if its output colours, and
// holding its port's output from the group's first round on.
func (s *memberSlot) become(vm string, cfg checkpointer.PrimaryConfig, port *dataplane.Port) (*checkpointer.Primary, error) {
	colours, _ := cfg.Output.(group.Colours)
	m, err := group.NewLocalMember(vm, cfg)
	if err != nil {
		return nil, err
	}
	if colours != nil {
		if err := m.SetColours(colours); err != nil {
			return nil, err
		}
	}
	if port != nil {
		m.Output().OnFirstRound(func() error { return port.SetMode(dataplane.ModeBuffer) })
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
	return m.P, nil
}

// run runs the slot's member (Roles.SetRunner).
func (s *memberSlot) run(log *slog.Logger) func(context.Context, *checkpointer.Primary) error {
	return func(ctx context.Context, _ *checkpointer.Primary) error {
		s.mu.Lock()
		m := s.m
		s.mu.Unlock()
		return runMember(ctx, m, log)
	}
}

// groupStandbyFlag is standby's --group-listen.
func groupStandbyFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "group-listen", Usage: "be the backup of a VDEchp group member: keep each checkpoint staged until " +
		"the group commits it, never go live alone, and resume the guest only on the order of the 'resilire group coordinate' " +
		"that connects here (TLS with this agent's --tls-* flags)"}
}

// groupStandby runs the backup's roles and serves the group coordinator's
// recovery orders on addr, then, once the guest resumed here is a member
// again (slot), the next coordinator's rounds.
func groupStandby(vm, addr string, files wire.TLSFiles, b *checkpointer.Backup, slot *memberSlot, run func(context.Context) error, log *slog.Logger) (func(context.Context) error, error) {
	ln, err := wire.Listen(addr, files, nil)
	if err != nil {
		return nil, fmt.Errorf("--group-listen: %w", err)
	}
	log.Warn("group member's backup: goes live only on the group coordinator's order", "vm", vm, "listen", ln.Addr().String(), "tls", files.Enabled())
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			return group.ServeStandbyMember(gctx, ln, group.LocalStandby{Member: vm, B: b}, slot.member, log)
		})
		g.Go(func() error {
			err := run(gctx)
			ln.Close()
			if err == nil {
				err = context.Canceled
			}
			return err
		})
		err := g.Wait()
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil
		}
		return err
	}, nil
}
