// SPDX-License-Identifier: Apache-2.0

package cli

import ucli "github.com/urfave/cli/v2"

// benchCommand groups the measurement commands.
func benchCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "bench",
		Usage:       "measure parts of resilire on recorded data",
		Subcommands: []*ucli.Command{benchEngineCommand()},
	}
}
