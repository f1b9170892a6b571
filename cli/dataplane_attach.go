// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/resilire/resilire/dataplane"
)

func dataplaneAttachCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "attach",
		Usage: "attach the capture programs to a guest's bridge port; output is held (buffer mode) from then on",
		Flags: []ucli.Flag{
			vmFlag(),
			&ucli.StringFlag{Name: "port", Required: true, Usage: "guest bridge port `IFACE` (vifD.N, tap, veth)"},
			&ucli.StringFlag{Name: "path", Value: "auto", Usage: "capture path: auto, ring or redirect"},
			&ucli.StringFlag{Name: "attach", Value: "auto", Usage: "attach method: auto, tcx or clsact"},
			&ucli.BoolFlag{Name: "input-log", Usage: "also log frames to the guest (LLM input replay)"},
			&ucli.BoolFlag{Name: "group", Usage: "attach the guest-egress program a VDEchp group member needs: frames from other members " +
				"are untagged and held while they come from a later round"},
			&ucli.StringFlag{Name: "input-log-kind", Value: "auto", Usage: "input log: auto, kern-ctx (exact metadata, kernel >= 6.2) or portable (no kfunc)"},
			&ucli.IntFlag{Name: "ring-bytes", Value: dataplane.DefaultRingBytes, Usage: "size of each ring buffer"},
		},
		Action: func(c *ucli.Context) error {
			opts, err := attachOptions(c)
			if err != nil {
				return err
			}
			p, err := dataplane.Attach(opts)
			if err != nil {
				return err
			}
			defer p.Close()
			_, err = fmt.Fprintf(c.App.Writer, "attached vm %s on %s: path %s, %s, tap %s, mode buffer%s\n",
				p.Name(), p.PortName(), p.Path(), p.AttachMethod(), p.TapName(), inputLogNote(p))
			return err
		},
	}
}

// attachOptions turns the attach flags into dataplane.Options.
func attachOptions(c *ucli.Context) (dataplane.Options, error) {
	path, err := dataplane.ParseCapturePath(c.String("path"))
	if err != nil {
		return dataplane.Options{}, err
	}
	method, err := dataplane.ParseAttachMethod(c.String("attach"))
	if err != nil {
		return dataplane.Options{}, err
	}
	kind, err := dataplane.ParseInputLogKind(c.String("input-log-kind"))
	if err != nil {
		return dataplane.Options{}, err
	}
	log, err := logger(c)
	return dataplane.Options{
		Name: c.String("vm"), Port: c.String("port"), Path: path, Attach: method,
		InputLog: c.Bool("input-log"), Group: c.Bool("group"), InputLogKind: kind, RingBytes: c.Int("ring-bytes"), PinRoot: c.String("pin-root"), Logger: log,
	}, err
}

// inputLogNote describes the attached input log, if any.
func inputLogNote(p *dataplane.Port) string {
	if !p.InputLog() {
		return ""
	}
	return ", input log " + p.InputLogKind().String()
}
