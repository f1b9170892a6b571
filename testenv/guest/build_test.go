// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/resilire/resilire/testenv"
	"github.com/u-root/u-root/pkg/cpio"
)

// TestBuild builds the assets (downloading the pinned kernel package with
// apt-get when not cached), checks the initramfs layout, and checks that a
// second build reuses everything.
func TestBuild(t *testing.T) {
	testenv.RequirePrivileged(t) // apt-get download needs the Debian mirror
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := DefaultDir()
	a, err := Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.KernelPackage != KernelPackage+"="+KernelVersion+" sha256:"+KernelSHA256 {
		t.Errorf("kernel package %q, want the pinned, verified one", a.KernelPackage)
	}
	f, err := os.Open(a.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs := map[string]cpio.Info{}
	rr, err := cpio.Newc.NewFileReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		recs[r.Name] = r.Info
	}
	con, ok := recs["dev/console"]
	if !ok || con.Mode&cpio.S_IFMT != cpio.S_IFCHR || con.Rmajor != 5 || con.Rminor != 1 {
		t.Errorf("dev/console: %+v, want a char device 5:1", con)
	}
	if in, ok := recs["init"]; !ok || in.Mode&0o111 == 0 || in.FileSize < 1<<20 {
		t.Errorf("init: %+v, want an executable static binary", in)
	}
	for _, m := range Modules {
		if _, ok := recs["lib/modules/"+filepath.Base(m)]; !ok {
			t.Errorf("module %s missing from the initramfs", m)
		}
	}
	order, err := moduleOrder(filepath.Join(dir, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	// virtio_net needs net_failover and virtio_ring etc. loaded first.
	pos := func(m string) int { return slices.Index(order, m) }
	for _, dep := range [][2]string{{"virtio_ring.ko", "virtio.ko"}, {"virtio.ko", "virtio_pci.ko"},
		{"failover.ko", "net_failover.ko"}, {"net_failover.ko", "virtio_net.ko"}, {"virtio_ring.ko", "virtio_net.ko"}} {
		if pos(dep[0]) < 0 || pos(dep[0]) > pos(dep[1]) {
			t.Errorf("module order %v loads %s before %s", order, dep[1], dep[0])
		}
	}
	// A second build reuses the files: neither is rewritten.
	before := []os.FileInfo{stat(t, a.Kernel), stat(t, a.Initrd)}
	if _, err := Build(ctx, dir); err != nil {
		t.Fatal(err)
	}
	for i, f := range []string{a.Kernel, a.Initrd} {
		if !os.SameFile(before[i], stat(t, f)) || !before[i].ModTime().Equal(stat(t, f).ModTime()) {
			t.Errorf("cached build rewrote %s", f)
		}
	}
}

func stat(t *testing.T, f string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestVerifySHA256(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := verifySHA256(p, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"); err != nil {
		t.Fatal(err)
	}
	if err := verifySHA256(p, KernelSHA256); err == nil {
		t.Fatal("wrong hash accepted")
	}
}

func TestParseDepends(t *testing.T) {
	got, err := parseDepends([]byte("linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-57-cloud-amd64\n"))
	if err != nil || got != "linux-image-6.1.0-57-cloud-amd64" {
		t.Fatalf("parseDepends = %q, %v", got, err)
	}
	if k := (kernelPkg{name: got}); k.release() != "6.1.0-57-cloud-amd64" {
		t.Fatalf("release = %q", k.release())
	}
	if _, err := parseDepends([]byte("linux-image-cloud-amd64\n  Depends: foo\n")); err == nil {
		t.Fatal("accepted output without a kernel image")
	}
}
