// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"encoding/json"

	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/checkpointer/qemu"
)

func qemuCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "qemu",
		Usage:       "QEMU driver tools",
		Subcommands: []*ucli.Command{qemuProbeCommand()},
	}
}

func qemuProbeCommand() *ucli.Command {
	return &ucli.Command{
		Name: "probe",
		Usage: "show which dirty-tracking mechanism protect would use for this QEMU config on this host, and why " +
			"(checks the config and the kernel, injects into a throw-away child; touches no QEMU)",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "qemu-config", Usage: "`FILE` with the qemu.Config as JSON (optional: without it, only the host is probed)"},
		},
		Action: func(c *ucli.Context) error {
			var cfg qemu.Config
			if c.String("qemu-config") != "" {
				var err error
				if cfg, err = readQEMUConfig(c); err != nil {
					return err
				}
			}
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			return enc.Encode(qemu.ProbeTracking(cfg))
		},
	}
}
