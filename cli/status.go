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
