// SPDX-License-Identifier: Apache-2.0

//go:build linux && amd64

package qemu

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/testenv"
)

func TestRestartRegs(t *testing.T) {
	for _, c := range []struct {
		orig, rax, rip, wantRax, wantRip uint64
	}{
		{^uint64(0), 7, 100, 7, 100},                      // not in a syscall
		{271, neg(514), 100, 271, 98},                     // ppoll: ERESTARTNOHAND
		{0, neg(512), 100, 0, 98},                         // read: ERESTARTSYS
		{35, neg(516), 100, unix.SYS_RESTART_SYSCALL, 98}, // nanosleep: ERESTART_RESTARTBLOCK
		{0, neg(4), 100, neg(4), 100},                     // EINTR stays
	} {
		r := restartRegs(unix.PtraceRegs{Orig_rax: c.orig, Rax: c.rax, Rip: c.rip})
		if r.Rax != c.wantRax || r.Rip != c.wantRip {
			t.Errorf("orig %d rax %d: got rax %d rip %d, want %d %d", c.orig, int64(c.rax), r.Rax, r.Rip, c.wantRax, c.wantRip)
		}
	}
}

func neg(e int64) uint64 { return uint64(-e) }

// TestProbe injects into a throw-away child: the probe protect relies on.
func TestProbe(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireFeature(t, "exact dirty tracking (PAGEMAP_SCAN, userfaultfd write-protect async)", probeKernel())
	if err := probeInjection(); err != nil {
		t.Fatal(err)
	}
}

func TestFindRAMMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ram")
	if err := os.WriteFile(path, make([]byte, 4*PageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 4*PageSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	start, err := findRAMMapping(os.Getpid(), path, 4*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	if start != uint64(uintptr(unsafe.Pointer(&mem[0]))) {
		t.Errorf("start %#x, want %p", start, &mem[0])
	}
	if _, err := findRAMMapping(os.Getpid(), path, 8*PageSize); err == nil {
		t.Error("a mapping smaller than RAM accepted")
	}
	// A second mapping of the file is a writer the tracker cannot see.
	mem2, err := unix.Mmap(int(f.Fd()), 0, PageSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := findRAMMapping(os.Getpid(), path, 4*PageSize); err == nil {
		t.Error("a second mapping accepted")
	}
	_ = unix.Munmap(mem2)
	_ = unix.Munmap(mem)
}
