// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/dataplane"
)

func dataplaneDetachCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "detach",
		Usage: "detach the programs, delete the injection tap and the pinned state (output flows unbuffered)",
		Flags: []ucli.Flag{vmFlag()},
		Action: func(c *ucli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			if err := dataplane.DetachPinned(c.String("vm"), c.String("pin-root"), log); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "detached vm %s\n", c.String("vm"))
			return err
		},
	}
}
