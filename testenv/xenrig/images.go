// SPDX-License-Identifier: Apache-2.0

package xenrig

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/resilire/resilire/testenv/guest"
)

//go:embed images.sh
var imagesScript []byte

// Images are the files a Xen host boots from.
type Images struct {
	Dir string // xen, vmlinuz, initrd.img, dom0.ext4
}

// Xen, Kernel, Initrd and Root name the files.
func (i Images) Xen() string    { return filepath.Join(i.Dir, "xen") }
func (i Images) Kernel() string { return filepath.Join(i.Dir, "vmlinuz") }
func (i Images) Initrd() string { return filepath.Join(i.Dir, "initrd.img") }
func (i Images) Root() string   { return filepath.Join(i.Dir, "dom0.ext4") }

// DeployFile is a file of deploy/xen, the steps every resilire dom0 is
// provisioned with: the rig runs the same scripts as the Vagrant rig.
func DeployFile(name string) string {
	return filepath.Join(guest.ModuleRoot(), "deploy", "xen", name)
}

// BuildImages builds the images into dir with images.sh, or reuses them if
// the scripts that built them are unchanged (a stamp holds their hash). It
// needs root, debootstrap and Debian's mirror; the first build takes about
// three minutes.
func BuildImages(ctx context.Context, dir string) (Images, error) {
	img := Images{Dir: dir}
	pkgs, err := os.ReadFile(DeployFile("dom0-packages.sh"))
	if err != nil {
		return img, fmt.Errorf("build xen images: %w", err)
	}
	h := sha256.New()
	h.Write(imagesScript)
	h.Write(pkgs)
	want := hex.EncodeToString(h.Sum(nil))
	stamp := filepath.Join(dir, "images.stamp")
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == want {
		if _, err := os.Stat(img.Root()); err == nil {
			return img, nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return img, err
	}
	// The rootfs is rebuilt only when the script changed.
	if err := os.RemoveAll(filepath.Join(dir, "rootfs")); err != nil {
		return img, err
	}
	script := filepath.Join(dir, "images.sh")
	if err := os.WriteFile(script, imagesScript, 0o755); err != nil {
		return img, err
	}
	cmd := exec.CommandContext(ctx, "bash", script, dir, DeployFile("dom0-packages.sh"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return img, fmt.Errorf("build xen images: %w: %s", err, tail(out, 2000))
	}
	return img, os.WriteFile(stamp, []byte(want+"\n"), 0o644)
}

// tail is the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
