// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/testenv/guest/bank"
	"github.com/resilire/resilire/testenv/guest/diskload"
)

// bankPath is the bank's database on the guest's disk.
const bankPath = "/data/bank.db"

// dataDisks are where the guest's disk appears: virtio-blk under QEMU,
// blkfront as a Xen domU.
var dataDisks = []string{"/dev/vda", "/dev/xvda"}

// startDisk mounts the guest's disk (ext4, dataDisks) on /data when the command line asks for
// a disk workload (guest.disk=files, guest.disk=bank), and starts the file
// writer or opens the bank's database. It reports whether it mounted the
// disk, and returns the bank (nil unless guest.disk=bank) for serveBank.
func startDisk(cmdline string) (bool, *bank.DB, error) {
	args := strings.Fields(cmdline)
	files, withBank := slices.Contains(args, diskload.Cmdline), slices.Contains(args, bank.Cmdline)
	if !files && !withBank {
		return false, nil, nil
	}
	if err := mountData(); err != nil {
		return true, nil, err
	}
	if files {
		go func() {
			err := diskload.Run(context.Background(), "/data", os.Stdout, 20*time.Millisecond)
			fmt.Printf("DISK WRITER STOPPED: %v\n", err)
		}()
	}
	if !withBank {
		return true, nil, nil
	}
	db, err := bank.Open(bankPath)
	if err != nil {
		return true, nil, fmt.Errorf("bank: %w", err)
	}
	return true, db, nil
}

func mountData() error {
	deadline := time.Now().Add(10 * time.Second)
	dev := ""
	for {
		for _, d := range dataDisks {
			if _, err := os.Stat(d); err == nil && dev == "" {
				dev = d
			}
		}
		if dev != "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("none of %v after 10s", dataDisks)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.MkdirAll("/data", 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, "/data", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	fmt.Println(diskload.MountedLine)
	return nil
}

// serveBank serves db (if not nil) on bank.Port and prints bank.ReadyLine
// once it listens. The bank prints nothing per transfer: the console is
// slow.
func serveBank(db *bank.DB) error {
	if db == nil {
		return nil
	}
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", bank.Port))
	if err != nil {
		return fmt.Errorf("bank listen: %w", err)
	}
	go func() {
		err := db.Serve(l)
		fmt.Printf("BANK STOPPED: %v\n", err)
	}()
	fmt.Println(bank.ReadyLine)
	return nil
}
