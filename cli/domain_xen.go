// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/resilire/resilire/checkpointer"

	"github.com/resilire/resilire/checkpointer/xen"
	ucli "github.com/urfave/cli/v2"
)

// openXenPrimary opens the running Xen domain --vm (build tag xen; other
// builds return xen.ErrNotBuilt).
func openXenPrimary(c *ucli.Context, log *slog.Logger, drv *primaryDriver) error {
	d, err := xen.OpenDomain(c.Context, c.String("vm"), xen.Options{Logger: log, SuspendTimeout: c.Duration("xen-suspend-timeout")})
	if err != nil {
		return err
	}
	drv.domain, drv.close = d, func() { d.Close() }
	return nil
}

// xenStandby closes the replica with the standby.
type xenStandby struct {
	*xen.Standby
	replica *xen.Replica
}

func (s xenStandby) Close() error { return errors.Join(s.Standby.Close(), s.replica.Close()) }

// openXenBackup holds the replica in memory and restores it with
// `xl restore` (xen.DefaultStandbyOptions) on failover.
func openXenBackup(c *ucli.Context, log *slog.Logger, drv *backupDriver) error {
	if !xen.Built {
		return xen.ErrNotBuilt
	}
	opts := xen.DefaultStandbyOptions(c.String("vm"))
	if f := c.String("xen-config"); f != "" {
		opts.Command = xen.RestoreCommand(f)
	}
	if _, err := os.Stat(opts.Command[2]); err != nil {
		return fmt.Errorf("the guest's xl config for the restore (--xen-config): %w", err)
	}
	// One page until the primary's hello gives the guest's exact size.
	r, err := xen.NewReplica(checkpointer.PageSize)
	if err != nil {
		return err
	}
	opts.Logger = log
	sb, err := xen.NewStandby(r, opts)
	if err != nil {
		r.Close()
		return err
	}
	drv.replica, drv.standby = r, xenStandby{sb, r}
	return nil
}
