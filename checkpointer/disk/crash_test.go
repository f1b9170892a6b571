// SPDX-License-Identifier: Apache-2.0

package disk_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/resilire/resilire/checkpointer/disk"
)

// The crash tests run a child process (this test binary) that applies one
// large checkpoint to a replica and SIGKILLs itself at a chosen step: a
// real process death, with the page cache surviving as it does when only
// the agent dies.
const (
	crashEnv    = "RESILIRE_DISK_CRASH_AT" // phase:index
	crashImgEnv = "RESILIRE_DISK_CRASH_IMG"
	crashUnsafe = "RESILIRE_DISK_CRASH_UNSAFE"
	crashSize   = 8 << 20
	crashEpoch  = 42
)

// crashDelta is the large checkpoint: 64 scattered extents, 2 MiB.
func crashDelta() *disk.Delta {
	r := rand.New(rand.NewPCG(9, 9))
	d := &disk.Delta{Epoch: crashEpoch}
	for i := int64(0); i < 64; i++ {
		d.Extents = append(d.Extents, disk.Extent{Off: i * (crashSize / 64), Len: 32 << 10})
	}
	d.Data = make([]byte, 64*32<<10)
	for i := range d.Data {
		d.Data[i] = byte(r.Uint32())
	}
	return d
}

func applyToImage(old []byte, d *disk.Delta) []byte {
	b := bytes.Clone(old)
	pos := int64(0)
	for _, x := range d.Extents {
		copy(b[x.Off:x.Off+x.Len], d.Data[pos:pos+x.Len])
		pos += x.Len
	}
	return b
}

// TestCrashChild is the child's body; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	at := os.Getenv(crashEnv)
	if at == "" {
		t.Skip("crash child only")
	}
	phase, idx, _ := strings.Cut(at, ":")
	want, _ := strconv.Atoi(idx)
	disk.SetCrashHook(func(p string, i int) {
		if p == phase && i == want {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	})
	r, err := disk.OpenReplica(os.Getenv(crashImgEnv), disk.ReplicaOptions{UnsafeNoJournal: os.Getenv(crashUnsafe) == "1"})
	if err != nil {
		t.Fatal(err)
	}
	applyDelta(t, r, crashDelta())
}

// runCrash applies the delta in a child that dies at point, then reopens
// the replica (as a restarted agent would) and returns the image.
func runCrash(t *testing.T, old []byte, point string, unsafe bool) []byte {
	t.Helper()
	img := filepath.Join(t.TempDir(), "backup.img")
	if err := os.WriteFile(img, old, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), crashEnv+"="+point, crashImgEnv+"="+img)
	if unsafe {
		cmd.Env = append(cmd.Env, crashUnsafe+"=1")
	}
	out, err := cmd.CombinedOutput()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if point != "none:0" && !ws.Signaled() {
		t.Fatalf("child for %s was not killed: %v: %s", point, err, out)
	}
	r, err := disk.OpenReplica(img, disk.ReplicaOptions{UnsafeNoJournal: unsafe})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReplicaCrashMidApply: a backup killed at any step of staging,
// committing or applying a 2 MiB checkpoint reopens to the previous
// committed image byte for byte (killed before the commit record) or the
// new one whole (killed after it: journal replay). Never anything else.
func TestReplicaCrashMidApply(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	old := randomBytes(crashSize, 1)
	d := crashDelta()
	next := applyToImage(old, d)
	points := []struct {
		at   string
		want string
	}{
		{"stage:1", "old"}, {"stage:33", "old"}, {"stage:64", "old"}, {"commit:0", "old"},
		{"commit:1", "new"}, {"apply:0", "new"}, {"apply:31", "new"}, {"apply:63", "new"}, {"none:0", "new"},
	}
	for _, p := range points {
		got := runCrash(t, old, p.at, false)
		var is string
		switch {
		case bytes.Equal(got, old):
			is = "old"
		case bytes.Equal(got, next):
			is = "new"
		default:
			is = fmt.Sprintf("torn (%d bytes differ from old)", diffBytes(got, old))
		}
		if is != p.want {
			t.Errorf("killed at %s: image is %s, want %s", p.at, is, p.want)
		}
	}
}

// TestReplicaCrashNegativeControl: the same kill in the middle of the
// in-place writes with the journal's commit record off
// (UnsafeNoJournal) leaves a torn image: the journal is what protects.
func TestReplicaCrashNegativeControl(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	old := randomBytes(crashSize, 1)
	next := applyToImage(old, crashDelta())
	got := runCrash(t, old, "apply:31", true)
	if bytes.Equal(got, old) || bytes.Equal(got, next) {
		t.Fatalf("without the journal the image is still whole: the test proves nothing")
	}
	t.Logf("unsafe: %d bytes differ from the previous state, %d from the new one", diffBytes(got, old), diffBytes(got, next))
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func diffBytes(a, b []byte) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}
