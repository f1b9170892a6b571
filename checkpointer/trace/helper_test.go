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

// unmapWritable takes b's range away as a writable mapping while keeping
// the address range reserved (PROT_NONE, MAP_FIXED): a plain munmap lets
// the Go runtime map its own memory there before the next epoch, which the
// recorder would rightly see as the old range's slot being written.
func unmapWritable(b []byte) error {
	_, _, errno := unix.Syscall6(unix.SYS_MMAP, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.PROT_NONE, unix.MAP_FIXED|unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE, ^uintptr(0), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

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

func dropPage(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTNEED) }

func bufAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }
