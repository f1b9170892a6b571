// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"fmt"
	"os"

	"github.com/resilire/resilire/checkpointer"
	"golang.org/x/sys/unix"
)

// Replica is the backup's guest RAM: a file on /dev/shm mapped read-write
// and shared, so that a standby QEMU started on the same file sees every
// applied checkpoint without a copy.
type Replica struct {
	path string
	mem  []byte
}

var _ checkpointer.Replica = (*Replica)(nil)

// CreateReplica opens (creating if needed) a RAM file of size bytes and
// maps it. An existing file keeps its content; it is never truncated to
// zero, because a standby may already map it.
func CreateReplica(path string, size uint64) (*Replica, error) {
	if _, err := pageCount(size); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(int64(size)); err != nil {
		return nil, fmt.Errorf("replica size: %w", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap replica %s: %w", path, err)
	}
	return &Replica{path: path, mem: mem}, nil
}

// Path is the RAM file, to hand to the standby's Config.MemPath.
func (r *Replica) Path() string { return r.path }

// Memory is the replica's guest memory.
func (r *Replica) Memory() []byte { return r.mem }

// Sync flushes the mapping (msync). On tmpfs the page cache is the file,
// so the standby sees writes without it; it matters on other file systems.
func (r *Replica) Sync() error {
	if err := unix.Msync(r.mem, unix.MS_SYNC); err != nil {
		return fmt.Errorf("msync replica: %w", err)
	}
	return nil
}

// Close unmaps the replica; the file stays for the standby.
func (r *Replica) Close() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	return err
}

// Remove deletes the RAM file (after Close and after the standby is gone).
func (r *Replica) Remove() error { return os.Remove(r.path) }
