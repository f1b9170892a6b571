// SPDX-License-Identifier: Apache-2.0

//go:build linux && amd64

package qemu

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PAGEMAP_SCAN (Linux 6.7) on /proc/PID/pagemap. Debian 12's headers lack
// it; values from include/uapi/linux/fs.h of Linux 6.7+.
const (
	pagemapScan        = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg)
	pmScanWPMatching   = 1 << 0     // PM_SCAN_WP_MATCHING: re-protect what matched
	pmScanCheckWPAsync = 1 << 1     // PM_SCAN_CHECK_WPASYNC: EPERM unless the range is WP-async registered
	pageIsWritten      = 1 << 1     // PAGE_IS_WRITTEN
	scanVecLen         = 4096       // page_region slots per ioctl (96 KiB)
)

// pmScanArg is struct pm_scan_arg (96 bytes).
type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages       uint64
	categoryInverted, categoryMask, categoryAnyofMask, returnMask uint64
}

// pageRegion is struct page_region.
type pageRegion struct{ start, end, categories uint64 }

// errNotRegistered: the scanned range is no longer WP-async registered
// (QEMU re-mapped its RAM, or the uffd went away).
var errNotRegistered = errors.New("guest RAM no longer write-protect tracked")

// pagemapScanner returns and re-protects the written pages of one range of
// another process's memory.
type pagemapScanner struct {
	pagemap    *os.File
	start, end uint64
	vec        []pageRegion
	ioctls     int // of the last scan
}

func openPagemapScanner(pid int, start, end uint64) (*pagemapScanner, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, fmt.Errorf("pagemap: %w", err)
	}
	return &pagemapScanner{pagemap: f, start: start, end: end, vec: make([]pageRegion, scanVecLen)}, nil
}

// scan appends the page numbers (relative to start) written since the
// last scan and write-protects them again, atomically per page: a write
// racing the scan is either reported now or left for the next scan.
func (s *pagemapScanner) scan(dst []uint64) ([]uint64, error) {
	s.ioctls = 0
	for at := s.start; at < s.end; {
		a := pmScanArg{size: uint64(unsafe.Sizeof(pmScanArg{})), flags: pmScanWPMatching | pmScanCheckWPAsync,
			start: at, end: s.end, vec: uint64(uintptr(unsafe.Pointer(&s.vec[0]))), vecLen: uint64(len(s.vec)),
			categoryMask: pageIsWritten, returnMask: pageIsWritten}
		n, _, e := unix.Syscall(unix.SYS_IOCTL, s.pagemap.Fd(), pagemapScan, uintptr(unsafe.Pointer(&a)))
		s.ioctls++
		if e == unix.EPERM {
			return dst, errNotRegistered
		}
		if e != 0 {
			return dst, fmt.Errorf("pagemap_scan %#x-%#x: %w", at, s.end, e)
		}
		for _, r := range s.vec[:n] {
			for p := r.start; p < r.end; p += PageSize {
				dst = append(dst, (p-s.start)/PageSize)
			}
		}
		if a.walkEnd <= at {
			return dst, fmt.Errorf("pagemap_scan made no progress at %#x", at)
		}
		at = a.walkEnd
	}
	return dst, nil
}

func (s *pagemapScanner) close() error { return s.pagemap.Close() }

// probeKernel says whether this kernel has what exact tracking needs:
// PAGEMAP_SCAN and userfaultfd write-protect in async mode on shmem. It
// tries both on this process (a private range and its own uffd), which
// needs no privilege.
func probeKernel() error {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return fmt.Errorf("pagemap: %w", err)
	}
	defer f.Close()
	mem, err := unix.Mmap(-1, 0, PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("probe mapping: %w", err)
	}
	defer func() { _ = unix.Munmap(mem) }()
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))
	var vec [1]pageRegion
	a := pmScanArg{size: uint64(unsafe.Sizeof(pmScanArg{})), start: start, end: start + PageSize,
		vec: uint64(uintptr(unsafe.Pointer(&vec[0]))), vecLen: 1, categoryMask: pageIsWritten, returnMask: pageIsWritten}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), pagemapScan, uintptr(unsafe.Pointer(&a))); e != 0 {
		if e == unix.ENOTTY || e == unix.EINVAL {
			return fmt.Errorf("PAGEMAP_SCAN missing (Linux >= 6.7 needed): %w: %w", errors.ErrUnsupported, e)
		}
		return fmt.Errorf("PAGEMAP_SCAN: %w", e)
	}
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, uffdFlags, 0, 0)
	if e != 0 {
		return fmt.Errorf("userfaultfd: %w", e)
	}
	defer unix.Close(int(fd))
	if err := uffdAPIHandshake(int(fd)); err != nil {
		return fmt.Errorf("userfaultfd write-protect async mode missing (Linux >= 6.7 needed): %w: %w", errors.ErrUnsupported, err)
	}
	return uffdProtect(int(fd), start, PageSize)
}
