// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/dataplane"

	"github.com/resilire/resilire/checkpointer/xen"
	ucli "github.com/urfave/cli/v2"
)

// openXenPrimary opens the running Xen domain --vm (build tag xen; other
// builds return xen.ErrNotBuilt).
func openXenPrimary(c *ucli.Context, log *slog.Logger, drv *primaryDriver) error {
	vm := c.String("vm")
	if c.Bool("start-vm") {
		if err := startXenGuest(c, log); err != nil {
			return err
		}
	}
	opts := xen.Options{Logger: log, SuspendTimeout: c.Duration("xen-suspend-timeout")}
	if c.Bool("start-vm") {
		opts.BootWait = xenBootWait
	}
	d, err := xen.OpenDomain(c.Context, vm, opts)
	if err != nil {
		if c.Bool("start-vm") {
			// It never ran protected, and its disk goes with this process.
			err = errors.Join(err, xen.Destroy(context.WithoutCancel(c.Context), vm))
		}
		return err
	}
	drv.domain, drv.close = d, func() { d.Close() }
	return nil
}

// xenBootWait bounds the wait for a guest protect created to boot far
// enough to take suspend requests (seconds on hardware; more than a minute
// nested under QEMU TCG).
const xenBootWait = 3 * time.Minute

// startXenGuest creates the guest of --xen-config paused (its disk, if
// any, already served by this process), with --dataplane attaches the
// data plane on its vif (the config's vifname=) so that its output is
// held from its first instruction, then unpauses it.
func startXenGuest(c *ucli.Context, log *slog.Logger) error {
	vm, cfg := c.String("vm"), xenConfig(c)
	b, err := readXenConfig(cfg)
	if err != nil {
		return err
	}
	if err := checkXenDisk(c, cfg, b); err != nil {
		return err
	}
	vif := ""
	if c.Bool("dataplane") {
		if vif, err = xenVifName(cfg, b); err != nil {
			return err
		}
	}
	if !xen.Built {
		return xen.ErrNotBuilt
	}
	if err := xen.Create(c.Context, vm, cfg); err != nil {
		return err
	}
	err = func() error {
		if vif == "" {
			return nil
		}
		// A hold pinned for this VM belongs to a guest that no longer runs
		// (Create refused a live one): its vif is gone.
		switch err := dataplane.DetachPinned(vm, c.String("pin-root"), log); {
		case err == nil:
			log.Warn("detached the data plane of a guest no longer running", "vm", vm)
		case !errors.Is(err, dataplane.ErrNotAttached):
			return fmt.Errorf("stale data plane of %s: %w", vm, err)
		}
		p, err := dataplane.Attach(dataplane.Options{Name: vm, Port: vif, PinRoot: c.String("pin-root"), Logger: log})
		if err != nil {
			return fmt.Errorf("hold the new guest's output on %s: %w", vif, err)
		}
		log.Info("data plane attached", "vm", vm, "port", p.PortName(), "path", p.Path().String())
		return p.Close()
	}()
	if err == nil {
		err = xen.Unpause(c.Context, vm)
	}
	if err != nil {
		return errors.Join(err, xen.Destroy(context.WithoutCancel(c.Context), vm))
	}
	log.Info("created the guest", "vm", vm, "config", cfg, "disk", c.String("disk-socket"))
	return nil
}

// xenVifName is the fixed vifname= of the first vif in b, the xl config
// cfg: the data plane's port, the same on both hosts.
func xenVifName(cfg string, b []byte) (string, error) {
	if m := vifNameRE.FindSubmatch(b); m != nil {
		return string(m[1]), nil
	}
	return "", fmt.Errorf("%s: no vifname= on the guest's vif: --dataplane needs a fixed port name (the same on both hosts)", cfg)
}

var vifNameRE = regexp.MustCompile(`(?m)^\s*vif\s*=.*\bvifname=([A-Za-z0-9_.-]+)`)

// xenConfig is the guest's xl config: --xen-config, or the convention.
func xenConfig(c *ucli.Context) string {
	if f := c.String("xen-config"); f != "" {
		return f
	}
	return xen.ConfigPath(c.String("vm"))
}

// readXenConfig reads the guest's xl config.
func readXenConfig(cfg string) ([]byte, error) {
	b, err := os.ReadFile(cfg)
	if err != nil {
		return nil, fmt.Errorf("the guest's xl config (--xen-config): %w", err)
	}
	return b, nil
}

// checkXenDisk requires, with --disk-image, that the xl config b (file
// cfg) attach the guest's disk through --disk-socket: a guest that opens
// another disk would not be the one replicated.
func checkXenDisk(c *ucli.Context, cfg string, b []byte) error {
	sock := c.String("disk-socket")
	if c.String("disk-image") == "" || sock == "" {
		return nil
	}
	if !strings.Contains(string(b), "target="+sock) || !strings.Contains(string(b), "script=block-resilire") {
		return fmt.Errorf("--disk-socket %s: %s has no disk with script=block-resilire,target=%s: the guest would not open the served image", sock, cfg, sock)
	}
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
	cfg := xenConfig(c)
	b, err := readXenConfig(cfg)
	if err != nil {
		return err
	}
	if err := checkXenDisk(c, cfg, b); err != nil {
		return err
	}
	if !xen.Built {
		return xen.ErrNotBuilt
	}
	opts := xen.DefaultStandbyOptions(c.String("vm"))
	opts.Command = xen.RestoreCommand(cfg)
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
