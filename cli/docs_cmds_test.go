// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"
)

// Every `resilire …` command line in the docs, the deploy files, the
// scripts and the Makefiles must parse with the real command definitions:
// known command, known flags, valid values, required flags present, and
// the commands' Before hooks (flag checks only, such as checkDomain)
// satisfied. Nothing runs: each Action is replaced by a recorder.

// parseOnly runs args (after the binary name) through a fresh app whose
// Actions only record that they were reached. A partial command (a prose
// reference such as `resilire protect`) may leave out required flags.
func parseOnly(args []string, partial bool) error {
	app := New(io.Discard, io.Discard)
	samples := map[string]string{}
	collectSamples(app.Flags, samples)
	ran := false
	var stub func([]*ucli.Command)
	stub = func(cmds []*ucli.Command) {
		for _, cmd := range cmds {
			collectSamples(cmd.Flags, samples)
			if partial {
				cmd.Before = nil
			}
			if cmd.Action != nil {
				takesArgs := cmd.ArgsUsage != ""
				cmd.Action = func(c *ucli.Context) error {
					if c.Args().Present() && !takesArgs {
						return fmt.Errorf("%s takes no arguments, got %q", c.Command.FullName(), c.Args().Slice())
					}
					ran = true
					return nil
				}
			}
			stub(cmd.Subcommands)
		}
	}
	stub(app.Commands)
	err := app.RunContext(context.Background(), append([]string{"resilire"}, substituteArgs(args, samples)...))
	switch {
	case partial && err != nil && strings.HasPrefix(err.Error(), "Required flag"):
		return nil
	case err != nil:
		return err
	case !ran && !isHelp(args):
		return errors.New("no command ran (unknown or incomplete command)")
	}
	return nil
}

func isHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" || a == "help" {
			return true
		}
	}
	return false
}

// collectSamples records, per flag name, a value its type parses.
func collectSamples(flags []ucli.Flag, samples map[string]string) {
	for _, f := range flags {
		v := "1" // int, uint, float and string flags all take it
		if _, ok := f.(*ucli.DurationFlag); ok {
			v = "1s"
		}
		for _, n := range f.Names() {
			samples[n] = v
		}
	}
}

// substituteArgs replaces placeholders: a whole flag value by a sample of
// the flag's type, any other by "1" (which also makes "${N}ms" a duration).
func substituteArgs(args []string, samples map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.Contains(a, placeholderWord):
			out[i] = a
		case strings.HasPrefix(a, "-") && hasVal && val == placeholderWord && samples[name] != "":
			out[i] = a[:len(a)-len(val)] + samples[name]
		case a == placeholderWord && i > 0 && strings.HasPrefix(args[i-1], "-") && !strings.Contains(args[i-1], "=") &&
			samples[strings.TrimLeft(args[i-1], "-")] != "":
			out[i] = samples[strings.TrimLeft(args[i-1], "-")]
		default:
			out[i] = strings.ReplaceAll(a, placeholderWord, "1")
		}
	}
	return out
}

func TestDocumentedCommandsParse(t *testing.T) {
	cmds, err := allDocCmds("..")
	if err != nil {
		t.Fatal(err)
	}
	// Guard against an extractor that silently finds nothing: these are
	// known to be documented.
	seen := map[string]bool{}
	for _, c := range cmds {
		if len(c.args) > 0 {
			seen[c.args[0]] = true
		}
		if err := parseOnly(c.args, c.partial); err != nil {
			t.Errorf("%s: resilire %s: %v", c.pos, strings.Join(c.args, " "), err)
		}
	}
	for _, want := range []string{"protect", "standby", "dataplane", "bench", "trace", "version"} {
		if !seen[want] {
			t.Errorf("no documented `resilire %s` found: the extractor missed it", want)
		}
	}
	t.Logf("%d command lines checked", len(cmds))
}
