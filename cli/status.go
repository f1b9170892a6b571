// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/resilire/resilire/checkpointer"
	ucli "github.com/urfave/cli/v2"
)

func statusCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "status",
		Usage: "show the state of a running protect or standby agent",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "addr", Value: defaultMetricsAddr, Usage: "the agent's --metrics-addr"},
			&ucli.BoolFlag{Name: "json", Usage: "print the raw JSON"},
		},
		Action: func(c *ucli.Context) error {
			st, err := checkpointer.FetchStatus(c.Context, c.String("addr"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return json.NewEncoder(c.App.Writer).Encode(st)
			}
			_, err = fmt.Fprintf(c.App.Writer, "vm %s  role %s  state %s  epoch %d  peer %s  since %s\n",
				st.VM, st.Role, st.State, st.Epoch, st.Peer, st.Since.Format(time.RFC3339))
			return err
		},
	}
}

func switchoverCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "switchover",
		Usage: "planned switchover: move the guest from this primary to its backup (host maintenance); failback is a second switchover",
		Description: "Asks the primary agent on this host (its loopback --metrics-addr) to stop the guest after a final checkpoint " +
			"its backup acknowledged, and the backup to resume it without fencing. No acknowledged write is lost; the guest pauses " +
			"for about one checkpoint plus the backup's activation. The old primary's agent then exits: start 'resilire standby' " +
			"there (with --discard-stale-guest) and the new primary protects the guest toward it (its --reprotect-to).",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "addr", Value: defaultMetricsAddr, Usage: "the primary agent's --metrics-addr (loopback)"},
		},
		Action: func(c *ucli.Context) error {
			t0 := time.Now()
			st, err := checkpointer.RequestSwitchover(c.Context, c.String("addr"))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "switched over: vm %s  state %s  epoch %d  in %v\n",
				st.VM, st.State, st.Epoch, time.Since(t0).Round(time.Millisecond))
			return err
		},
	}
}
