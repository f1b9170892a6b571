// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/checkpointer/trace"
)

// traceCommand groups the dirty-memory trace tools.
func traceCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "trace",
		Usage:       "record and inspect dirty-memory traces of real processes",
		Subcommands: []*ucli.Command{traceRecordCommand(), traceInfoCommand()},
	}
}

func traceRecordCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "record",
		Usage:     "record the pages a process dirties, epoch by epoch",
		ArgsUsage: "[-- CMD ARGS...]",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "out", Required: true, Usage: "trace directory to write"},
			&ucli.DurationFlag{Name: "interval", Value: 50 * time.Millisecond, Usage: "how long the process runs between two pauses"},
			&ucli.IntFlag{Name: "epochs", Usage: "stop after N epochs"},
			&ucli.DurationFlag{Name: "duration", Usage: "stop after this long"},
			&ucli.IntFlag{Name: "pid", Usage: "trace this running process instead of starting CMD"},
			&ucli.StringFlag{Name: "freeze", Value: string(trace.FreezeSIGSTOP), Usage: "how to pause the process: sigstop or cgroup (root)"},
			&ucli.StringFlag{Name: "name", Usage: "trace name (default: the command's name)"},
		},
		Action: traceRecord,
	}
}

func traceRecord(c *ucli.Context) error {
	log, err := logger(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err = trace.Record(ctx, trace.Options{Cmd: c.Args().Slice(), PID: c.Int("pid"), Name: c.String("name"),
		Dir: c.String("out"), Interval: c.Duration("interval"), Epochs: c.Int("epochs"), Duration: c.Duration("duration"),
		Freeze: trace.Freeze(c.String("freeze")), Stdout: c.App.ErrWriter, Stderr: c.App.ErrWriter, Logger: log})
	if err != nil {
		return err
	}
	return traceSummary(c, c.String("out"))
}

func traceInfoCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "info",
		Usage:     "verify a trace and print its size and pages per epoch",
		ArgsUsage: "DIR...",
		Action: func(c *ucli.Context) error {
			if c.NArg() == 0 {
				return fmt.Errorf("trace info: no trace directory given")
			}
			for _, dir := range c.Args().Slice() {
				if err := traceSummary(c, dir); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func traceSummary(c *ucli.Context, dir string) error {
	s, err := trace.Summarize(dir)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, s)
	return nil
}
