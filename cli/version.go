// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"runtime"

	ucli "github.com/urfave/cli/v2"
)

func versionCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print the version and build details",
		Action: func(c *ucli.Context) error {
			_, err := fmt.Fprintf(c.App.Writer, "resilire %s (%s %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
