// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/testenv/guest/diskload"
)

// startDisk mounts /dev/vda (ext4) on /data and starts the file writer,
// when the command line asks for it. It reports whether it did.
func startDisk(cmdline string) (bool, error) {
	if !slices.Contains(strings.Fields(cmdline), diskload.Cmdline) {
		return false, nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/dev/vda"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return true, fmt.Errorf("no /dev/vda after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.MkdirAll("/data", 0o755); err != nil {
		return true, err
	}
	if err := unix.Mount("/dev/vda", "/data", "ext4", 0, ""); err != nil {
		return true, fmt.Errorf("mount /dev/vda: %w", err)
	}
	fmt.Println(diskload.MountedLine)
	go func() {
		err := diskload.Run("/data", os.Stdout, 20*time.Millisecond)
		fmt.Printf("DISK WRITER STOPPED: %v\n", err)
	}()
	return true, nil
}
