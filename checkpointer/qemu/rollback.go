// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Relaunch is the first half of rolling a guest back on its own host to a
// checkpoint that its backup holds, VDEchp's alternative to resuming a
// live group member on its backup ("pushing the replica back"). The guest
// of vm must be stopped, and nothing it said since the checkpoint
// released. pfns are every page that may differ from the checkpoint (the
// pages of the checkpoints shipped after it, and a harvest now), pages
// their contents in the checkpoint, read from the backup's replica.
//
// QEMU loads device state only into a process started with -incoming, so
// vm's QEMU is killed and a standby started on the same RAM file, tap and
// console: the pages are written into the file in between, and every page
// not named keeps the content it had, equal to the checkpoint's. Activate
// the returned standby with the checkpoint's device state to resume the
// guest. On an error after the kill the guest is gone from this host; its
// backup still holds the checkpoint.
func Relaunch(ctx context.Context, vm *VM, pfns []uint64, pages []byte) (*Standby, error) {
	cfg := vm.Config()
	if len(pages) != len(pfns)*PageSize {
		return nil, fmt.Errorf("relaunch %s: %d bytes for %d pages", cfg.Name, len(pages), len(pfns))
	}
	size := cfg.MemoryBytes()
	for _, pfn := range pfns {
		if pfn >= size/PageSize {
			return nil, fmt.Errorf("relaunch %s: page %d beyond its %d MiB", cfg.Name, pfn, size>>20)
		}
	}
	if err := vm.Kill(); err != nil {
		return nil, fmt.Errorf("relaunch: %w", err)
	}
	if err := writePages(cfg.MemPath, size, pfns, pages); err != nil {
		return nil, fmt.Errorf("relaunch %s: %w", cfg.Name, err)
	}
	sb, err := StartStandby(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("relaunch %s: %w", cfg.Name, err)
	}
	return sb, nil
}

// writePages writes pages at their page numbers into the RAM file path of
// size bytes, coalescing consecutive pages into one write.
func writePages(path string, size uint64, pfns []uint64, pages []byte) (err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("RAM file: %w", err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("RAM file: %w", err)
	}
	if uint64(fi.Size()) != size {
		return fmt.Errorf("RAM file %s: %d bytes, want %d", path, fi.Size(), size)
	}
	for i := 0; i < len(pfns); {
		j := i + 1
		for j < len(pfns) && pfns[j] == pfns[j-1]+1 {
			j++
		}
		if _, err := f.WriteAt(pages[i*PageSize:j*PageSize], int64(pfns[i]*PageSize)); err != nil {
			return fmt.Errorf("RAM file: %w", err)
		}
		i = j
	}
	return nil
}
