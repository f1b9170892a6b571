// SPDX-License-Identifier: Apache-2.0

package kernelvm

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/resilire/resilire/testenv/guest"
)

// Kernel is an unpacked kernel package: the bzImage, the module tree and
// the build configuration.
type Kernel struct {
	Package string // Debian package name, e.g. linux-image-6.1.0-56-cloud-amd64
	Release string // uname -r, e.g. 6.1.0-56-cloud-amd64
	Image   string // path of vmlinuz
	ModDir  string // path of lib/modules/<release>
	Config  string // path of boot/config-<release>
}

// DefaultKernel is the package booted by default: the guest rig's pinned
// Debian 12 cloud kernel (6.1), which builds bridge, veth, tun, cls_bpf,
// act_bpf and sch_ingress as modules and has BTF.
const DefaultKernel = guest.KernelPackage

// RequiredConfig are the kernel options the data-plane tests need, each
// built in (y) or as a module (m).
var RequiredConfig = []string{
	"BPF_SYSCALL", "BPF_JIT", "DEBUG_INFO_BTF", "NET_NS", "BRIDGE", "VETH", "TUN",
	"NET_SCHED", "NET_CLS_ACT", "NET_CLS_BPF", "NET_ACT_BPF", "NET_SCH_INGRESS",
	"BPF_EVENTS", "DEBUG_FS", "SERIAL_8250",
}

// FetchKernel returns the kernel package pkg unpacked under cacheDir,
// downloading it with apt-get if needed. The pinned package (DefaultKernel)
// is checked against its sha256; another package is used as the mirror
// serves it, with a warning. It fails if the build configuration lacks an
// option of RequiredConfig.
func FetchKernel(ctx context.Context, cacheDir, pkg string, log *slog.Logger) (*Kernel, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	release := strings.TrimPrefix(pkg, "linux-image-")
	dir := filepath.Join(cacheDir, pkg)
	k := &Kernel{
		Package: pkg, Release: release,
		Image:  filepath.Join(dir, "boot", "vmlinuz-"+release),
		ModDir: filepath.Join(dir, "lib", "modules", release),
		Config: filepath.Join(dir, "boot", "config-"+release),
	}
	if _, err := os.Stat(k.Image); err != nil {
		if err := unpackKernel(ctx, cacheDir, pkg, dir, log); err != nil {
			return nil, err
		}
	}
	if err := checkConfig(k.Config, RequiredConfig); err != nil {
		return nil, err
	}
	return k, nil
}

// unpackKernel downloads pkg and unpacks it into dir (atomically: into a
// temp dir renamed at the end).
func unpackKernel(ctx context.Context, cacheDir, pkg, dir string, log *slog.Logger) error {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".dl-")
	if err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt drops privileges to _apt for downloads; let it write here.
	if err := os.Chmod(tmp, 0o777); err != nil {
		return err
	}
	spec := pkg
	if pkg == guest.KernelPackage {
		spec += "=" + guest.KernelVersion
	}
	log.Info("downloading kernel", "package", spec)
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", spec)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w: %s", spec, err, strings.TrimSpace(string(out)))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: want one .deb, got %v", spec, debs)
	}
	if pkg == guest.KernelPackage {
		if err := guest.VerifyKernelPackage(debs[0]); err != nil {
			return err
		}
	} else {
		log.Warn("kernel package not pinned: not checking its sha256", "package", pkg)
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", filepath.Base(debs[0]), err, strings.TrimSpace(string(out)))
	}
	// Debian 12 packages install below /lib; newer ones below /usr/lib.
	if _, err := os.Stat(filepath.Join(root, "lib")); err != nil {
		if err := os.Rename(filepath.Join(root, "usr", "lib"), filepath.Join(root, "lib")); err != nil {
			return fmt.Errorf("kernel package %s has no lib/modules: %w", pkg, err)
		}
	}
	os.RemoveAll(dir)
	if err := os.Rename(root, dir); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	return nil
}

// checkConfig fails unless every option in want is y or m in the kernel
// configuration file.
func checkConfig(file string, want []string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("kernel config: %w", err)
	}
	defer f.Close()
	have := make(map[string]bool)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && (v == "y" || v == "m") {
			have[strings.TrimPrefix(k, "CONFIG_")] = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("kernel config %s: %w", file, err)
	}
	var missing []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, "CONFIG_"+w)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kernel config %s lacks %s", filepath.Base(file), strings.Join(missing, ", "))
	}
	return nil
}
