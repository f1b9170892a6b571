// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/resilire/resilire/checkpointer"
)

// Dirty-tracking mechanisms, as reported in status, metrics and probe.
const (
	// TrackUffd is exact tracking: userfaultfd write-protect (async mode)
	// injected into QEMU, harvested with PAGEMAP_SCAN (Linux >= 6.7).
	TrackUffd = "uffd-wp"
	// TrackHash compares an xxh3 of every page with the previous harvest:
	// works everywhere, costs time proportional to guest RAM.
	TrackHash = "hash"
	// TrackAuto chooses TrackUffd when it works here, else TrackHash.
	TrackAuto = "auto"
)

// exactTracker is a dirty log that reports exactly the pages written.
type exactTracker interface {
	baseline() error
	harvest(dst []uint64) ([]uint64, error)
	close() error
}

// ParseTracking accepts auto, uffd-wp or hash.
func ParseTracking(s string) (string, error) {
	switch s {
	case "", TrackAuto:
		return TrackAuto, nil
	case TrackUffd, TrackHash:
		return s, nil
	}
	return "", fmt.Errorf("dirty tracking %q: want %s, %s or %s", s, TrackAuto, TrackUffd, TrackHash)
}

// unseenWriters names what in cfg writes guest RAM where a per-process
// write-protect cannot see it: another process's mapping of the RAM file
// (vhost-user backends, virtiofsd), write()/fallocate() on the file
// (balloon, discard), or an in-kernel vhost worker (not measured). Empty
// if nothing.
func unseenWriters(cfg Config) string {
	bad := []struct{ opt, why string }{
		{"vhost-user", "vhost-user backend writes guest RAM from another process"},
		{"virtiofs", "virtiofsd writes guest RAM from another process"},
		{"vhost=on", "in-kernel vhost worker writes untested"},
		{"balloon", "balloon discards pages of the RAM file"},
		{"discard-data", "discard punches holes in the RAM file"},
	}
	for _, a := range cfg.Extra {
		for _, b := range bad {
			if strings.Contains(a, b.opt) {
				return fmt.Sprintf("%q: %s", a, b.why)
			}
		}
	}
	return ""
}

// chooseTracker decides how d finds dirty pages. mode TrackUffd fails
// unless exact tracking works; TrackAuto falls back to hashing and says why.
func chooseTracker(vm *VM, mode string, log *slog.Logger) (exactTracker, checkpointer.DirtyTracking, error) {
	if mode == TrackHash {
		return nil, checkpointer.DirtyTracking{Mechanism: TrackHash, Reason: "requested"}, nil
	}
	t, err := tryExact(vm, log)
	if err == nil {
		return t, checkpointer.DirtyTracking{Mechanism: TrackUffd, Reason: "userfaultfd write-protect + PAGEMAP_SCAN available"}, nil
	}
	if mode == TrackUffd {
		return nil, checkpointer.DirtyTracking{}, fmt.Errorf("exact dirty tracking: %w", err)
	}
	info := checkpointer.DirtyTracking{Mechanism: TrackHash, Reason: "fallback: " + err.Error()}
	log.Warn("exact dirty tracking unavailable: hashing all guest RAM every pause", "reason", info.Reason)
	return nil, info, nil
}

func tryExact(vm *VM, log *slog.Logger) (exactTracker, error) {
	if w := unseenWriters(vm.cfg); w != "" {
		return nil, fmt.Errorf("config has a writer it cannot see: %s", w)
	}
	if err := checkNoSeccomp(vm.pid); err != nil {
		return nil, err
	}
	if err := probeKernel(); err != nil {
		return nil, err
	}
	return newUffdTracker(vm.pid, vm.cfg.MemPath, vm.cfg.MemoryBytes(), log)
}

// ProbeTracking says which mechanism a primary would use for cfg on this
// host, and why, without touching any QEMU: it checks the configuration,
// the kernel, and injects into a throw-away child process of its own.
func ProbeTracking(cfg Config) checkpointer.DirtyTracking {
	cfg.defaults()
	if w := unseenWriters(cfg); w != "" {
		return checkpointer.DirtyTracking{Mechanism: TrackHash, Reason: "config has a writer it cannot see: " + w}
	}
	if slices.Contains(cfg.Extra, "-sandbox") {
		return checkpointer.DirtyTracking{Mechanism: TrackHash, Reason: errSeccomp.Error()}
	}
	if err := probeKernel(); err != nil {
		return checkpointer.DirtyTracking{Mechanism: TrackHash, Reason: err.Error()}
	}
	if err := probeInjection(); err != nil {
		return checkpointer.DirtyTracking{Mechanism: TrackHash, Reason: err.Error()}
	}
	return checkpointer.DirtyTracking{Mechanism: TrackUffd, Reason: "userfaultfd write-protect + PAGEMAP_SCAN available, injection works"}
}

// errSeccomp: QEMU runs under a seccomp filter (-sandbox on). A filter may
// kill the process on a syscall it does not expect, and injecting
// userfaultfd() is exactly that: never inject then.
var errSeccomp = errors.New("qemu runs under seccomp (-sandbox): injecting a syscall could kill it")

// checkNoSeccomp refuses a process with a seccomp filter (Seccomp: 2 in
// /proc/PID/status; 1 is strict mode).
func checkNoSeccomp(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Errorf("qemu status: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp:"); ok && strings.TrimSpace(v) != "0" {
			return errSeccomp
		}
	}
	return nil
}

// ProbeExactKernel reports whether this kernel can track dirty pages
// exactly (PAGEMAP_SCAN and userfaultfd write-protect in async mode, Linux
// >= 6.7). A kernel that lacks them gives an error wrapping
// errors.ErrUnsupported.
func ProbeExactKernel() error { return probeKernel() }
