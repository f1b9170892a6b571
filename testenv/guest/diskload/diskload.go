// SPDX-License-Identifier: Apache-2.0

// Package diskload is the test guest's disk workload: with guest.disk=files
// on the kernel command line, /init mounts the ext4 disk /dev/vda on /data
// and writes numbered files, each with known contents, fsyncing the file
// and the directory before printing "WROTE <n>" on the console. A line on
// the console therefore proves that file n (and every file before it) was
// durable on the guest's disk when the line was printed.
package diskload

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

const (
	// Cmdline turns the workload on.
	Cmdline = "guest.disk=files"
	// MountedLine is printed once /data is mounted.
	MountedLine = "DISK MOUNTED"
	// FileSize is the size of every file.
	FileSize = 12 << 10
)

// Name is file n's path under the mount point.
func Name(n int) string { return fmt.Sprintf("f%06d", n) }

// Content is file n's contents: pseudo-random (xorshift seeded by n), so
// that compression ratios measured on this workload come from the file
// system's metadata and journal, not from a repeating pattern.
func Content(n int) []byte {
	b := make([]byte, FileSize)
	x := uint64(n)*0x9e3779b97f4a7c15 | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

var wrote = regexp.MustCompile(`(?m)^WROTE (\d+)\r?$`)

// LastWrote returns the highest n of a "WROTE n" line in console (0: none).
func LastWrote(console []byte) int {
	last := 0
	for _, m := range wrote.FindAllSubmatch(console, -1) {
		if n, err := strconv.Atoi(string(m[1])); err == nil && n > last {
			last = n
		}
	}
	return last
}

// Run writes files 1, 2, ... in dir until a write fails or ctx ends,
// pausing every between files, and reports each on out.
func Run(ctx context.Context, dir string, out io.Writer, every time.Duration) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for n := 1; ctx.Err() == nil; n++ {
		if err := writeSync(filepath.Join(dir, Name(n)), Content(n)); err != nil {
			return fmt.Errorf("file %d: %w", n, err)
		}
		if err := d.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", dir, err)
		}
		fmt.Fprintf(out, "WROTE %d\n", n)
		time.Sleep(every)
	}
	return ctx.Err()
}

func writeSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, bytes.NewReader(b)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
