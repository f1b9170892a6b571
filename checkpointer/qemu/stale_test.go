// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A process whose command line holds the config's QMP socket is the
// config's QEMU: RunningPid finds it, DestroyStale kills it and returns
// only once it is gone (its files closed); a dead pid file names nothing.
func TestDestroyStale(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{QMPPath: filepath.Join(dir, "q.qmp")}
	if RunningPid(cfg) != 0 {
		t.Fatal("a pid with no pid file")
	}
	// A stand-in with QEMU's -qmp argument in its command line.
	cmd := exec.Command("sh", "-c", "sleep 60", "unix:"+cfg.QMPPath+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := os.WriteFile(cfg.PIDPath(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := RunningPid(cfg); got != cmd.Process.Pid {
		t.Fatalf("RunningPid %d, want %d", got, cmd.Process.Pid)
	}
	other := Config{QMPPath: filepath.Join(dir, "other.qmp")}
	if err := os.WriteFile(other.PIDPath(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	if RunningPid(other) != 0 {
		t.Fatal("a process of another config counted as this one's QEMU")
	}
	pid, err := DestroyStale(cfg, 5*time.Second)
	if err != nil || pid != cmd.Process.Pid {
		t.Fatalf("DestroyStale: %d, %v", pid, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stale process survived")
	}
	if RunningPid(cfg) != 0 {
		t.Fatal("a dead process still counted")
	}
}
