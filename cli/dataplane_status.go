// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/dataplane"
)

func dataplaneStatusCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "status",
		Usage: "show a VM's data plane: mode, epoch, path and counters",
		Flags: []ucli.Flag{vmFlag()},
		Action: func(c *ucli.Context) error {
			s, err := dataplane.ReadStatus(c.String("vm"), c.String("pin-root"))
			if err != nil {
				return err
			}
			return printStatus(c.App.Writer, s)
		},
	}
}

// printStatus writes s as two aligned tables: attachment, then counters.
func printStatus(w io.Writer, s dataplane.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "vm\t%s\nport\t%s\ntap\t%s\npath\t%s\nattach\t%s\nmode\t%s\nepoch\t%d\ninput log\t%v\n",
		s.Name, s.Port, s.Tap, s.Path, s.Attach, s.Mode, s.Epoch, s.InputLog)
	if s.InputLog {
		fmt.Fprintf(tw, "input log kind\t%s\n", s.InputLogKind)
	}
	if s.Group {
		fmt.Fprintf(tw, "group round\t%d\nunsafe no hold\t%v\n", s.Round, s.UnsafeNoHold)
	}
	if !s.Compatible {
		fmt.Fprintf(tw, "warning\tpinned programs differ from this build: detach and attach again\n")
	}
	c := s.Counters
	fmt.Fprintf(tw, "\nCOUNTER\tFRAMES\n")
	for _, row := range []struct {
		name string
		v    uint64
	}{
		{"captured", c.Captured}, {"passed", c.Passed}, {"injected", c.Injected}, {"blocked", c.Blocked},
		{"ring full", c.RingFull}, {"too big", c.TooBig}, {"input logged", c.InputLogged},
		{"input log full", c.InputLogFull}, {"errors", c.Errors},
		{"internal sent", c.InternalSent}, {"internal received", c.InternalReceived}, {"in transit", c.InTransit},
		{"held", c.Held}, {"hold full", c.HoldFull},
	} {
		fmt.Fprintf(tw, "%s\t%d\n", row.name, row.v)
	}
	return tw.Flush()
}
