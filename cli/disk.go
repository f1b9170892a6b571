// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/resilire/resilire/checkpointer/disk"
	ucli "github.com/urfave/cli/v2"
)

// diskFlags are the disk replication flags of protect and standby.
func diskFlags(primary bool) []ucli.Flag {
	f := []ucli.Flag{
		&ucli.StringFlag{Name: "disk-image", Usage: "raw disk image of the guest (same size on both hosts): protect serves it and replicates " +
			"each epoch's writes with its checkpoint; standby keeps its copy, changed only by committed checkpoints (journaled)"},
		&ucli.StringFlag{Name: "disk-socket", Usage: "Unix socket where the image is served over NBD: to QEMU (qemu.Config DiskSocket), " +
			"or to a Xen guest through the kernel's NBD client (its xl disk: script=block-resilire,target=SOCKET); " +
			"standby: served to the warm standby, or to the guest xl restore starts, after failover"},
		&ucli.Int64Flag{Name: "disk-epoch-max-mib", Value: 256, Usage: "disk data written in one epoch after which the checkpoint is taken at once, " +
			"before the interval: bounds the memory one epoch's disk cut takes here and its staging on the backup; 0: no bound"},
	}
	if primary {
		f = append(f, &ucli.BoolFlag{Name: "start-vm", Usage: "boot the guest instead of attaching to a running one: qemu: the VM of --qemu-config " +
			"(detached: it outlives the agent); xen: xl create --xen-config; required with --disk-image, whose export lives in this process " +
			"and must exist before the guest opens its disk"})
	}
	return append(f, &ucli.BoolFlag{Name: "unsafe-no-disk-replication", Usage: "UNSAFE, for tests (on both agents): serve --disk-image but do not replicate it; " +
		"after a failover the disk no longer matches the guest's memory"})
}

// openPrimaryDisk serves --disk-image on --disk-socket; nil without one.
func openPrimaryDisk(c *ucli.Context, log *slog.Logger) (*disk.Export, error) {
	img, sock := c.String("disk-image"), c.String("disk-socket")
	if img == "" {
		return nil, nil
	}
	if sock == "" {
		return nil, errors.New("--disk-image needs --disk-socket")
	}
	if c.Int64("disk-epoch-max-mib") < 0 {
		return nil, fmt.Errorf("--disk-epoch-max-mib %d: must be 0 (no bound) or positive", c.Int64("disk-epoch-max-mib"))
	}
	x, err := disk.NewExport(img, sock, log)
	if err != nil {
		return nil, err
	}
	x.SetMaxEpochBytes(c.Int64("disk-epoch-max-mib") << 20)
	return x, nil
}

// openBackupDisk opens the backup's copy of the disk (replaying its
// journal) and, with --disk-socket, serves it for the standby QEMU.
func openBackupDisk(c *ucli.Context, log *slog.Logger) (*disk.Replica, *disk.Export, error) {
	img := c.String("disk-image")
	if img == "" {
		return nil, nil, nil
	}
	sock := c.String("disk-socket")
	if c.Bool("unsafe-no-disk-replication") {
		if sock == "" {
			return nil, nil, errors.New("--unsafe-no-disk-replication on the standby needs --disk-socket (it only serves the image)")
		}
		log.Warn("--unsafe-no-disk-replication: the standby's disk is served as it is, never updated by checkpoints", "vm", c.String("vm"))
		x, err := disk.NewExport(img, sock, log)
		return nil, x, err
	}
	r, err := disk.OpenReplica(img, disk.ReplicaOptions{Logger: log})
	if err != nil {
		return nil, nil, err
	}
	if sock == "" {
		return r, nil, nil
	}
	x, err := disk.NewExport(img, sock, log)
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	x.SetMaxEpochBytes(c.Int64("disk-epoch-max-mib") << 20) // once it protects the guest again
	return r, x, nil
}

// closeBackupDisk closes what openBackupDisk opened (nil is fine).
func closeBackupDisk(r *disk.Replica, x *disk.Export) {
	if x != nil {
		x.Close()
	}
	if r != nil {
		r.Close()
	}
}
