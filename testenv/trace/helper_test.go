// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func mmapAnon(pages int) ([]byte, error) {
	return unix.Mmap(-1, 0, pages*PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

func munmap(b []byte) { unix.Munmap(b) }

func bufAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }
