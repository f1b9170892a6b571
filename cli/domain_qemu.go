// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/qemu"
	ucli "github.com/urfave/cli/v2"
)

// readQEMUConfig loads --qemu-config; Name is set to --vm.
func readQEMUConfig(c *ucli.Context) (qemu.Config, error) {
	var cfg qemu.Config
	name := c.String("qemu-config")
	if name == "" {
		return cfg, errors.New("--domain qemu needs --qemu-config FILE")
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return cfg, fmt.Errorf("--qemu-config: %w", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("--qemu-config %s: %w", name, err)
	}
	// The agents agree on --vm; the domain reports its Config.Name.
	cfg.Name = c.String("vm")
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = qemu.DefaultMemoryMiB
	}
	return cfg, nil
}

// openQEMUPrimary attaches to the running QEMU (the agent owns its one QMP
// connection from now on) and maps its RAM; with --start-vm it boots the
// QEMU first, detached. Closing detaches: the guest keeps running, held by
// the data plane, when the agent exits or crashes.
func openQEMUPrimary(c *ucli.Context, log *slog.Logger, drv *primaryDriver) error {
	cfg, err := readQEMUConfig(c)
	if err != nil {
		return err
	}
	if err := checkQEMUDisk(c, &cfg); err != nil {
		return err
	}
	var vm *qemu.VM
	if c.Bool("start-vm") {
		cfg.KillWithParent = false
		vm, err = qemu.Start(c.Context, cfg, false)
		if err == nil {
			log.Info("started the guest's QEMU", "vm", cfg.Name, "pid", vm.Pid(), "disk", cfg.DiskSocket)
		}
	} else {
		vm, err = qemu.Attach(c.Context, cfg)
	}
	if err != nil {
		return err
	}
	d, err := qemu.NewDomain(vm, qemu.DomainOptions{Logger: log, Tracking: c.String("dirty-tracking")})
	if err != nil {
		if c.Bool("start-vm") {
			_ = vm.Kill() // it never ran protected; err is what to report
		} else {
			vm.Detach()
		}
		return err
	}
	drv.domain, drv.close = d, func() { d.Close(); vm.Detach() }
	return nil
}

// checkQEMUDisk ties --disk-socket to the config's DiskSocket (set from
// the flag when the config has none) and refuses --disk-image without
// --start-vm: a running QEMU cannot have opened an export that this
// process is only now creating.
func checkQEMUDisk(c *ucli.Context, cfg *qemu.Config) error {
	sock := c.String("disk-socket")
	switch {
	case c.String("disk-image") == "":
		if cfg.DiskSocket != "" {
			return fmt.Errorf("--qemu-config gives DiskSocket %s but no --disk-image serves it", cfg.DiskSocket)
		}
		return nil
	case cfg.DiskSocket == "":
		cfg.DiskSocket = sock
	case cfg.DiskSocket != sock:
		return fmt.Errorf("--disk-socket %s but --qemu-config's DiskSocket is %s: QEMU would not open the served image", sock, cfg.DiskSocket)
	}
	if c.Command.Name == "protect" && !c.Bool("start-vm") {
		return errors.New("--disk-image needs --start-vm with --domain qemu: the disk's export lives in protect, so protect boots the VM")
	}
	return nil
}

// qemuStandby is the warm standby QEMU plus the replica file it maps.
type qemuStandby struct {
	*qemu.Standby
	replica *qemu.Replica
}

// Close kills a standby never activated and unmaps the replica; an
// activated standby is the live guest and keeps running.
func (s qemuStandby) Close() error {
	return errors.Join(s.Standby.Close(), s.replica.Close())
}

// openQEMUBackup creates the replica RAM file at the config's MemPath and
// starts the warm standby QEMU on it (-incoming defer -S).
func openQEMUBackup(c *ucli.Context, log *slog.Logger, drv *backupDriver, stale bool) error {
	cfg, err := readQEMUConfig(c)
	if err != nil {
		return err
	}
	if err := checkQEMUDisk(c, &cfg); err != nil {
		return err
	}
	if pid := qemu.RunningPid(cfg); pid != 0 {
		if !c.Bool("discard-stale-guest") && !stale {
			return fmt.Errorf("%w (pid %d, %s): the guest of a fenced primary? --discard-stale-guest destroys it", qemu.ErrStaleGuest, pid, cfg.QMPPath)
		}
		if _, err := qemu.DestroyStale(cfg, 5*time.Second); err != nil {
			return err
		}
		log.Warn("destroyed the stale guest of this host (its output never left: the port stays blocked)", "vm", cfg.Name, "pid", pid)
	}
	r, err := qemu.CreateReplica(cfg.MemPath, cfg.MemoryBytes())
	if err != nil {
		return err
	}
	sb, err := qemu.StartStandby(c.Context, cfg)
	if err != nil {
		r.Close()
		return err
	}
	log.Info("warm standby QEMU waiting", "vm", cfg.Name, "pid", sb.VM().Pid())
	drv.replica, drv.standby = r, qemuStandby{sb, r}
	drv.live = func() (checkpointer.Domain, func(), error) {
		d, err := qemu.NewDomain(sb.VM(), qemu.DomainOptions{Logger: log, Tracking: c.String("dirty-tracking")})
		if err != nil {
			return nil, nil, err
		}
		return d, func() { d.Close() }, nil
	}
	return nil
}
