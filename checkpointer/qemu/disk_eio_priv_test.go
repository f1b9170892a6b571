// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/disk"
	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest"
	"github.com/resilire/resilire/testenv/guest/diskload"
)

// TestDiskExportGoneIsAnIOError: the export disappears (the agent
// serving it dies) while the guest writes with fsync. The guest must see
// an I/O error, and every file it reported durable must be on the image:
// no write is acknowledged and then lost.
func TestDiskExportGoneIsAnIOError(t *testing.T) {
	testenv.RequirePrivileged(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	assets, err := guest.Build(ctx, guest.DefaultDir())
	if err != nil {
		t.Fatalf("guest assets: %v", err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "primary.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, diskImageSize); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", img); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	x, err := disk.NewExport(img, filepath.Join(dir, "nbd.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := qemu.Config{Name: "rqm-disk-eio", MemPath: shmPrefix + "disk-eio.ram", Kernel: assets.Kernel, Initrd: assets.Initrd,
		Append: qemu.DefaultAppend + " " + diskload.Cmdline, QMPPath: filepath.Join(dir, "qmp"), SerialPath: filepath.Join(dir, "serial"),
		DiskSocket: filepath.Join(dir, "nbd.sock"), KillWithParent: true, KVM: os.Getenv(guest.KVMEnv) == "1"}
	vm, err := qemu.Start(ctx, cfg, false)
	if err != nil {
		x.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Kill(); os.Remove(cfg.MemPath) })
	if err := vm.WaitSerial(ctx, "WROTE 10\r"); err != nil {
		x.Close()
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitSerial(ctx, "DISK WRITER STOPPED"); err != nil {
		t.Fatalf("the guest never saw an error after the export went away: %v", err)
	}
	console, _ := os.ReadFile(cfg.SerialPath)
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
	stopped := string(console[strings.Index(string(console), "DISK WRITER STOPPED"):])
	t.Logf("guest: %s", strings.SplitN(stopped, "\n", 2)[0])
	if !strings.Contains(stopped, "input/output error") {
		t.Errorf("the guest's writer stopped, but not on an I/O error: %q", stopped)
	}
	last := diskload.LastWrote(console)
	if missing := checkImage(t, img, last); missing != 0 {
		t.Fatalf("%d of the %d files the guest reported durable are not on the image: silent loss", missing, last)
	}
	t.Logf("export closed after file 10; the guest reported %d files durable, all on the image", last)
}
