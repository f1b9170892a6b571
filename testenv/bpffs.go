// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// PinRoot returns a fresh directory on a bpf filesystem for tb's pins,
// named after prefix, removed when tb ends. It uses /sys/fs/bpf when a
// bpffs is mounted there, else mounts a private bpffs instance under a
// temp dir (so tests never change the host's mounts).
func PinRoot(tb testing.TB, prefix string) string {
	tb.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		dir := filepath.Join("/sys/fs/bpf", UniqueName(prefix))
		if err := os.Mkdir(dir, 0o700); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	mnt := filepath.Join(tb.TempDir(), UniqueName(prefix))
	if err := os.Mkdir(mnt, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Mount("bpf", mnt, "bpf", 0, "mode=0700"); err != nil {
		skipOrFail(tb, "mount bpffs on %s: %v", mnt, err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}
