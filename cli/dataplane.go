// SPDX-License-Identifier: Apache-2.0

package cli

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/dataplane"
)

// dataplaneCommand groups the data-plane subcommands (attach, detach,
// status; netbuf adds commit, dump and hold).
func dataplaneCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "dataplane",
		Usage: "hold a VM's network output in eBPF on its bridge port (output commit)",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "pin-root", Value: dataplane.DefaultPinRoot, Usage: "bpffs directory of pinned state"},
		},
		Subcommands: []*ucli.Command{
			dataplaneAttachCommand(),
			dataplaneDetachCommand(),
			dataplaneStatusCommand(),
			holdCommand(),
			commitCommand(),
			dumpCommand(),
		},
	}
}

// vmFlag is the --vm flag every dataplane subcommand takes.
func vmFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "vm", Required: true, Usage: "protected VM `NAME` (pins under <pin-root>/NAME)"}
}
