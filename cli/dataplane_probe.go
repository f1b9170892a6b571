// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"text/tabwriter"

	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/dataplane"
)

func dataplaneProbeCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "probe",
		Usage: "show which capture path and attach method this kernel supports (attaches nothing)",
		Action: func(c *ucli.Context) error {
			f := dataplane.Probe()
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			for _, row := range []struct {
				name string
				err  error
			}{{"tc programs", f.TC}, {"kfunc bpf_cast_to_kern_ctx", f.KernCtx}, {"path ring", f.Ring}, {"tcx", f.TCX}} {
				fmt.Fprintf(tw, "%s\t%s\n", row.name, okOr(row.err))
			}
			fmt.Fprintf(tw, "auto picks\tpath %s, attach %s, input log %s\n", f.Path(), f.Attach(), f.InputLog())
			return tw.Flush()
		},
	}
}

func okOr(err error) string {
	if err == nil {
		return "yes"
	}
	return "no: " + err.Error()
}
