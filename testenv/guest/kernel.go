// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// The pinned guest kernel. Its sha256 was taken from the package downloaded
// with apt-get on Debian 12 (it equals the SHA256 field of `apt-cache show`).
const (
	KernelPackage = "linux-image-6.1.0-56-cloud-amd64"
	KernelVersion = "6.1.192-2"
	KernelSHA256  = "e7d02b943971edcb8790e256c02cfab3bca6c3d37c1bf25392a57c71300615ee"
	// kernelMeta is the metapackage that names the current cloud kernel,
	// used only when the pinned version is gone from the mirror.
	kernelMeta = "linux-image-cloud-amd64"
)

// Modules are the virtio-net and virtio-blk modules (and the Xen front
// ends) the cloud kernel needs
// (none of them is built in; ext4 and crc32c are), by path under lib/modules/<release>/kernel/. The load order
// is computed from their depends= fields.
var Modules = []string{
	"drivers/virtio/virtio_ring.ko",
	"drivers/virtio/virtio.ko",
	"drivers/virtio/virtio_pci_modern_dev.ko",
	"drivers/virtio/virtio_pci_legacy_dev.ko",
	"drivers/virtio/virtio_pci.ko",
	"net/core/failover.ko",
	"drivers/net/net_failover.ko",
	"drivers/net/virtio_net.ko",
	"drivers/block/virtio_blk.ko",
	// The Xen front ends, for the same guest as a PVH domU on the nested
	// Xen rig; outside Xen they refuse to load (ENODEV) and init skips them.
	"drivers/net/xen-netfront.ko",
	"drivers/block/xen-blkfront.ko",
}

// kernelPkg is a resolved kernel package.
type kernelPkg struct {
	name, version, sha256 string // version and sha256 empty when unpinned
}

// release is the kernel release string (6.1.0-56-cloud-amd64).
func (k kernelPkg) release() string { return strings.TrimPrefix(k.name, "linux-image-") }

// downloadKernel fetches the pinned kernel package into dir with apt-get
// and verifies it. If the mirror no longer carries the pinned version, it
// falls back to the package linux-image-cloud-amd64 currently depends on,
// unverified, and says so through log.
func downloadKernel(ctx context.Context, dir string, log *slog.Logger) (kernelPkg, string, error) {
	pin := kernelPkg{KernelPackage, KernelVersion, KernelSHA256}
	deb, err := aptDownload(ctx, dir, pin.name+"="+pin.version)
	if err == nil {
		return pin, deb, verifySHA256(deb, pin.sha256)
	}
	name, derr := currentCloudKernel(ctx)
	if derr != nil {
		return kernelPkg{}, "", fmt.Errorf("pinned kernel: %w; fallback: %w", err, derr)
	}
	log.Warn("pinned guest kernel not available, falling back to the current cloud kernel WITHOUT sha256 verification; update KernelPackage/KernelVersion/KernelSHA256 in testenv/guest/kernel.go",
		"pinned", pin.name+"="+pin.version, "using", name, "err", err)
	deb, err = aptDownload(ctx, dir, name)
	return kernelPkg{name: name}, deb, err
}

// aptDownload runs apt-get download in dir and returns the .deb's path.
func aptDownload(ctx context.Context, dir, spec string) (string, error) {
	tmp, err := os.MkdirTemp(dir, ".deb-")
	if err != nil {
		return "", err
	}
	// apt drops privileges to _apt for downloads; let it write here.
	_ = os.Chmod(tmp, 0o777)
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", spec)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("apt-get download %s: %w: %s", spec, err, bytes.TrimSpace(out))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("apt-get download %s: want one .deb, got %v", spec, debs)
	}
	return debs[0], nil
}

// currentCloudKernel asks apt which kernel package the metapackage wants.
func currentCloudKernel(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", kernelMeta).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w", kernelMeta, err)
	}
	return parseDepends(out)
}

// parseDepends picks the kernel image out of `apt-cache depends` output.
func parseDepends(out []byte) (string, error) {
	for _, l := range strings.Split(string(out), "\n") {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(l), "Depends: "); ok && strings.HasPrefix(dep, "linux-image-") {
			return dep, nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s: no linux-image dependency in %q", kernelMeta, out)
}

// VerifyKernelPackage checks a downloaded .deb of the pinned KernelPackage
// against KernelSHA256.
func VerifyKernelPackage(deb string) error { return verifySHA256(deb, KernelSHA256) }

func verifySHA256(file, want string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hash %s: %w", file, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s: sha256 %s, want %s", filepath.Base(file), got, want)
	}
	return nil
}

// extractKernel writes vmlinuz and the modules of the package deb into
// dir/vmlinuz and dir/modules/. It reads the package's file system tar
// from dpkg-deb and keeps only the files we need (the package unpacks to
// about 100 MB).
func extractKernel(ctx context.Context, deb string, k kernelPkg, dir string) (err error) {
	want := map[string]string{"boot/vmlinuz-" + k.release(): filepath.Join(dir, "vmlinuz")}
	for _, m := range Modules {
		want["lib/modules/"+k.release()+"/kernel/"+m] = filepath.Join(dir, "modules", path.Base(m))
	}
	if err := os.MkdirAll(filepath.Join(dir, "modules"), 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb: %w", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, out) // let dpkg-deb finish; Wait reports its failure
		if werr := cmd.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, werr, stderr.Bytes())
		}
	}()
	tr := tar.NewReader(out)
	for len(want) > 0 {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", deb, err)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "usr/")
		dst, ok := want[name]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		if err := writeFileAtomic(dst, tr, 0o644); err != nil {
			return err
		}
		delete(want, name)
	}
	if len(want) > 0 {
		return fmt.Errorf("%s lacks %v", filepath.Base(deb), slices.Sorted(maps.Keys(want)))
	}
	return nil
}

// moduleOrder returns the module file names (x.ko) in an order where each
// module follows everything its depends= field names.
func moduleOrder(dir string) ([]string, error) {
	deps := make(map[string][]string) // module name -> dependencies
	files := make(map[string]string)  // module name -> file name
	var names []string
	for _, m := range Modules {
		file := path.Base(m)
		name, d, err := modinfo(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		deps[name], files[name] = d, file
		names = append(names, name)
	}
	var order []string
	state := make(map[string]int) // 1 visiting, 2 done
	var visit func(string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", n)
		case 2:
			return nil
		}
		if _, ok := files[n]; !ok {
			return fmt.Errorf("module %s is needed but not in the module list", n)
		}
		state[n] = 1
		for _, d := range deps[n] {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, files[n])
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modinfo reads a module's name and dependencies from its .modinfo section
// (the host may have no kmod tools).
func modinfo(file string) (name string, deps []string, err error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", nil, fmt.Errorf("module %s: %w", file, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return "", nil, fmt.Errorf("module %s: no .modinfo section", file)
	}
	data, err := sec.Data()
	if err != nil {
		return "", nil, fmt.Errorf("module %s: %w", file, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, _ := strings.Cut(string(kv), "=")
		switch k {
		case "name":
			name = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					deps = append(deps, d)
				}
			}
		}
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(file), ".ko")
	}
	return name, deps, nil
}
