// SPDX-License-Identifier: Apache-2.0

//go:build linux && amd64

package qemu

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// userfaultfd constants. Debian 12's headers (Linux 6.1) lack the WP_ASYNC
// ones and golang.org/x/sys has none of them; values from Linux 6.7+
// include/uapi/linux/userfaultfd.h.
const (
	uffdAPI                   = 0xAA       // UFFD_API
	uffdioAPI                 = 0xC018AA3F // _IOWR(UFFDIO, _UFFDIO_API, struct uffdio_api)
	uffdioRegister            = 0xC020AA00 // _IOWR(UFFDIO, _UFFDIO_REGISTER, struct uffdio_register)
	uffdioWriteProtect        = 0xC018AA06 // _IOWR(UFFDIO, _UFFDIO_WRITEPROTECT, struct uffdio_writeprotect)
	uffdRegisterModeWP        = 1 << 1     // UFFDIO_REGISTER_MODE_WP
	uffdWriteProtectModeWP    = 1 << 0     // UFFDIO_WRITEPROTECT_MODE_WP
	uffdUserModeOnly          = 1          // UFFD_USER_MODE_ONLY (userfaultfd(2) flag)
	uffdFeatureWPHugetlbShmem = 1 << 12    // UFFD_FEATURE_WP_HUGETLBFS_SHMEM
	uffdFeatureWPUnpopulated  = 1 << 13    // UFFD_FEATURE_WP_UNPOPULATED
	uffdFeatureWPAsync        = 1 << 15    // UFFD_FEATURE_WP_ASYNC
	// uffdFeatures: write-protect faults on the shmem RAM file are
	// resolved by the kernel itself (no reader thread), and pages never
	// touched yet are protected too.
	uffdFeatures = uffdFeatureWPAsync | uffdFeatureWPHugetlbShmem | uffdFeatureWPUnpopulated
	// uffdFlags: user-mode-only faults suffice for write protection (the
	// kernel's own writes into the range are still tracked, measured) and
	// need no CAP_SYS_PTRACE in QEMU's user namespace.
	uffdFlags = unix.O_CLOEXEC | unix.O_NONBLOCK | uffdUserModeOnly
)

type uffdioAPIArg struct{ api, features, ioctls uint64 }
type uffdioRange struct{ start, len uint64 }
type uffdioRegisterArg struct {
	rng          uffdioRange
	mode, ioctls uint64
}
type uffdioWriteProtectArg struct {
	rng  uffdioRange
	mode uint64
}

func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}

// uffdAPIHandshake enables the write-protect features on a fresh uffd.
func uffdAPIHandshake(fd int) error {
	a := uffdioAPIArg{api: uffdAPI, features: uffdFeatures}
	if err := ioctlPtr(fd, uffdioAPI, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("uffdio_api (features %#x): %w", uint64(uffdFeatures), err)
	}
	return nil
}

// uffdProtect registers [start, start+n) for write-protect tracking and
// protects all of it. The ioctls act on the mm that created the uffd
// (QEMU's), whoever calls them.
func uffdProtect(fd int, start, n uint64) error {
	r := uffdioRegisterArg{rng: uffdioRange{start, n}, mode: uffdRegisterModeWP}
	if err := ioctlPtr(fd, uffdioRegister, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("uffdio_register %#x+%#x: %w", start, n, err)
	}
	w := uffdioWriteProtectArg{rng: uffdioRange{start, n}, mode: uffdWriteProtectModeWP}
	if err := ioctlPtr(fd, uffdioWriteProtect, unsafe.Pointer(&w)); err != nil {
		return fmt.Errorf("uffdio_writeprotect %#x+%#x: %w", start, n, err)
	}
	return nil
}

// stealUffd creates a userfaultfd inside QEMU (pid) by syscall injection
// and returns a duplicate of it in this process (pidfd_getfd); QEMU's own
// copy is closed again by a second injection, so QEMU ends up holding
// nothing. The registration lives exactly as long as the returned fd: an
// agent that dies takes the tracking with it, and its successor injects
// again (and takes a fresh baseline).
func stealUffd(pid int) (fd int, took time.Duration, err error) {
	t0 := time.Now()
	in, err := newInjector(pid)
	if err != nil {
		return -1, 0, err
	}
	defer in.close()
	tfd, err := in.syscall(unix.SYS_USERFAULTFD, uffdFlags)
	if err != nil {
		return -1, 0, err
	}
	if tfd < 0 {
		return -1, 0, fmt.Errorf("userfaultfd in qemu: %w", unix.Errno(-tfd))
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		fd, err = unix.PidfdGetfd(pidfd, int(tfd), 0)
		_ = unix.Close(pidfd)
	}
	// Close QEMU's copy whatever happened: it must keep no fd of ours.
	cret, cerr := in.syscall(unix.SYS_CLOSE, uint64(tfd))
	if err != nil {
		return -1, 0, errors.Join(fmt.Errorf("pidfd_getfd: %w", err), cerr)
	}
	if cerr != nil || cret != 0 {
		_ = unix.Close(fd)
		return -1, 0, errors.Join(fmt.Errorf("close in qemu: %d", cret), cerr)
	}
	return fd, time.Since(t0), nil
}
