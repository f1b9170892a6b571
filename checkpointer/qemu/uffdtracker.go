// SPDX-License-Identifier: Apache-2.0

//go:build linux && amd64

package qemu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// uffdTracker is exact dirty tracking of the guest-RAM mapping inside
// QEMU: a userfaultfd created in QEMU by injection (uffd.go), held here,
// write-protects the mapping in async mode (the kernel marks a page
// written and lets the write through); each harvest is one PAGEMAP_SCAN
// that returns the written pages and protects them again. Cost per pause:
// ~1.5 ns per page of RAM plus ~60 ns per dirty page, instead of hashing
// every page.
type uffdTracker struct {
	pid     int
	memPath string
	size    uint64
	fd      int
	scan    *pagemapScanner
	log     *slog.Logger
	// Remaps counts re-injections after QEMU re-mapped its RAM (or the
	// registration vanished); each one reported every page once.
	remaps int
	inject time.Duration // last injection
}

// newUffdTracker injects a userfaultfd into QEMU and registers the
// guest-RAM mapping. Nothing is protected until baseline.
func newUffdTracker(pid int, memPath string, size uint64, log *slog.Logger) (*uffdTracker, error) {
	t := &uffdTracker{pid: pid, memPath: memPath, size: size, fd: -1, log: log}
	if err := t.attach(); err != nil {
		return nil, err
	}
	return t, nil
}

// attach (re-)finds the mapping, steals a fresh uffd and registers it.
func (t *uffdTracker) attach() error {
	start, err := findRAMMapping(t.pid, t.memPath, t.size)
	if err != nil {
		return err
	}
	fd, took, err := stealUffd(t.pid)
	if err != nil {
		return err
	}
	if err := uffdAPIHandshake(fd); err != nil {
		_ = unix.Close(fd)
		return err
	}
	if err := uffdProtect(fd, start, t.size); err != nil {
		_ = unix.Close(fd)
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("guest RAM already tracked by another userfaultfd (a second agent?): %w", err)
		}
		return err
	}
	scan, err := openPagemapScanner(t.pid, start, start+t.size)
	if err != nil {
		_ = unix.Close(fd)
		return err
	}
	t.release()
	t.fd, t.scan, t.inject = fd, scan, took
	t.log.Debug("userfaultfd injected into qemu", "pid", t.pid, "dur", took)
	return nil
}

// baseline protects every page: the next harvest reports what is written
// from now on.
func (t *uffdTracker) baseline() error {
	return uffdProtect(t.fd, t.scan.start, t.size)
}

// harvest appends the written pages in ascending order and re-protects
// them. If the registration is gone (QEMU re-mapped its RAM), it injects
// again and reports every page: over-reporting once is the fresh baseline.
func (t *uffdTracker) harvest(dst []uint64) ([]uint64, error) {
	n0 := len(dst)
	dst, err := t.scan.scan(dst)
	if !errors.Is(err, errNotRegistered) {
		return dst, err
	}
	t.log.Warn("guest RAM mapping no longer tracked: re-injecting, every page sent once", "pid", t.pid)
	if err := t.attach(); err != nil {
		return dst[:n0], fmt.Errorf("re-track guest RAM: %w", err)
	}
	t.remaps++
	dst = dst[:n0]
	for p := uint64(0); p < t.size/PageSize; p++ {
		dst = append(dst, p)
	}
	return dst, nil
}

func (t *uffdTracker) release() {
	if t.scan != nil {
		_ = t.scan.close()
		t.scan = nil
	}
	if t.fd >= 0 {
		_ = unix.Close(t.fd) // unregisters: QEMU's RAM is writable as before
		t.fd = -1
	}
}

func (t *uffdTracker) close() error { t.release(); return nil }

// findRAMMapping returns the start of QEMU's one mapping of the RAM file,
// which must cover size bytes from offset 0. A second mapping elsewhere
// would be a writer the tracker cannot see.
func findRAMMapping(pid int, path string, size uint64) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, fmt.Errorf("qemu maps: %w", err)
	}
	var start, end uint64
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		i := strings.IndexByte(line, '/')
		f := strings.Fields(line)
		if i < 0 || len(f) < 6 || strings.TrimSuffix(line[i:], " (deleted)") != path {
			continue
		}
		lo, hi, ok := parseRange(f[0])
		if !ok {
			continue
		}
		off, err := strconv.ParseUint(f[2], 16, 64)
		if err != nil {
			continue
		}
		switch {
		case n == 0 && off == 0:
			start, end = lo, hi
		case n > 0 && lo == end && off == end-start: // one mapping split in VMAs
			end = hi
		default:
			return 0, fmt.Errorf("guest RAM %s mapped twice in qemu (%#x and %#x): a writer the tracker cannot see", path, start, lo)
		}
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("guest RAM %s not mapped in qemu pid %d", path, pid)
	}
	if end-start < size {
		return 0, fmt.Errorf("guest RAM mapping %#x-%#x smaller than %d bytes", start, end, size)
	}
	return start, nil
}
