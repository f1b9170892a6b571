// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// Version is set at build time with -ldflags "-X github.com/resilire/resilire/cli.Version=...".
var Version = "dev"

// New builds the resilire application writing to stdout and stderr.
func New(stdout, stderr io.Writer) *ucli.App {
	app := &ucli.App{
		Name:      "resilire",
		Usage:     "keep a virtual machine running through the loss of its host",
		Version:   Version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Commands:             commands(),
		EnableBashCompletion: true,
		// Errors are printed once by Run, never by urfave itself.
		ExitErrHandler: func(*ucli.Context, error) {},
	}
	return app
}

// commands lists every subcommand, in the order help shows them.
func commands() []*ucli.Command {
	return []*ucli.Command{
		versionCommand(),
		benchCommand(),
		protectCommand(),
		standbyCommand(),
		statusCommand(),
		switchoverCommand(),
		groupCommand(),
		traceCommand(),
		dataplaneCommand(),
		qemuCommand(),
	}
}

// Run runs the app with args and returns the process exit status.
func Run(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	if err := New(stdout, stderr).RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "resilire: %v\n", err)
		return 1
	}
	return 0
}

// logger builds the process logger from --log-level; only cli/ owns handlers.
func logger(c *ucli.Context) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToLower(c.String("log-level")))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: lvl})), nil
}
