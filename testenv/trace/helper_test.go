// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func mmapAnon(pages int) ([]byte, error) {
	return unix.Mmap(-1, 0, pages*PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

func munmap(b []byte) { unix.Munmap(b) }

// mmapFile maps pages pages of a new, already unlinked file of size pages.
func mmapFile(size, pages int) ([]byte, error) {
	f, err := os.CreateTemp("", "rtr-trace-*")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	os.Remove(f.Name())
	if err := f.Truncate(int64(size * PageSize)); err != nil {
		return nil, err
	}
	return unix.Mmap(int(f.Fd()), 0, pages*PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func dropPage(b []byte) { unix.Madvise(b, unix.MADV_DONTNEED) }

func bufAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }
