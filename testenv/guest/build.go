// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/build"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Assets are the files QEMU boots.
type Assets struct {
	Kernel string // bzImage (vmlinuz)
	Initrd string // uncompressed newc cpio
	// KernelPackage is the Debian package the kernel came from, with
	// "(unverified)" appended when the pinned version was unavailable.
	KernelPackage string
}

// Options tune BuildWith.
type Options struct {
	Dir    string       // output and cache directory
	Logger *slog.Logger // receives the unpinned-kernel fallback warning; nil discards
}

// Build makes sure dir holds the guest kernel and initramfs, building what
// is missing or stale, and returns their paths.
func Build(ctx context.Context, dir string) (*Assets, error) {
	return BuildWith(ctx, Options{Dir: dir})
}

// DefaultDir is testenv/assets/ of the source tree this package was built
// from ("" if the sources are not on disk, as in a -trimpath build).
func DefaultDir() string {
	root := ModuleRoot()
	if root == "" {
		return ""
	}
	return filepath.Join(root, "testenv", "assets")
}

// BuildWith is Build with options. Concurrent builds (parallel test
// packages) serialise on a lock file in the directory.
func BuildWith(ctx context.Context, o Options) (*Assets, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("assets dir: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	a := &Assets{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.cpio")}
	if a.KernelPackage, err = ensureKernel(ctx, dir, log); err != nil {
		return nil, err
	}
	if err := ensureInitramfs(ctx, dir, a.KernelPackage); err != nil {
		return nil, err
	}
	return a, nil
}

// ensureKernel extracts the kernel unless the stamp says it is there.
func ensureKernel(ctx context.Context, dir string, log *slog.Logger) (string, error) {
	stamp := filepath.Join(dir, "kernel.stamp")
	if b, err := os.ReadFile(stamp); err == nil && filesExist(dir) {
		return strings.TrimSpace(string(b)), nil
	}
	k, deb, err := downloadKernel(ctx, dir, log)
	if deb != "" {
		defer os.RemoveAll(filepath.Dir(deb))
	}
	if err != nil {
		return "", err
	}
	if err := extractKernel(ctx, deb, k, dir); err != nil {
		return "", err
	}
	id := k.name + "=" + k.version + " sha256:" + k.sha256
	if k.sha256 == "" {
		id = k.name + " (unverified)"
	}
	return id, writeFileAtomic(stamp, strings.NewReader(id+"\n"), 0o644)
}

func filesExist(dir string) bool {
	files := []string{"vmlinuz"}
	for _, m := range Modules {
		files = append(files, filepath.Join("modules", filepath.Base(m)))
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

// ensureInitramfs rebuilds the initramfs when its inputs changed: the
// kernel, the Go toolchain, or the sources of /init and the packages of
// this module it imports.
func ensureInitramfs(ctx context.Context, dir, kernelID string) error {
	root := ModuleRoot()
	if root == "" {
		return fmt.Errorf("initramfs: source tree of %s not found (built with -trimpath?)", initPackage)
	}
	key, err := initKey(root, kernelID)
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "initrd.cpio")
	stamp := filepath.Join(dir, "initrd.stamp")
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == key {
		if _, err := os.Stat(out); err == nil {
			return nil
		}
	}
	order, err := moduleOrder(filepath.Join(dir, "modules"))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, ".init-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	initBin := filepath.Join(tmp, "init")
	if err := buildInit(ctx, root, initBin); err != nil {
		return err
	}
	if err := writeInitramfs(out, initBin, filepath.Join(dir, "modules"), order); err != nil {
		return err
	}
	return writeFileAtomic(stamp, strings.NewReader(key+"\n"), 0o644)
}

// initKey hashes everything the initramfs depends on.
func initKey(root, kernelID string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", kernelID, runtime.Version())
	// Every Go file under testenv/guest: a package the init imports cannot
	// be forgotten here (a stale initramfs once hid a new workload).
	var files []string
	err := filepath.WalkDir(filepath.Join(root, "testenv", "guest"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	files = append(files, filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum"))
	sort.Strings(files)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ModuleRoot is the directory of go.mod, found from this file's path ("" if
// the sources are not on disk).
func ModuleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return ""
	}
	return filepath.Clean(root)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(build.Default.GOROOT, "bin", "go")
}

func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock assets: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock assets: %w", err)
	}
	return func() { f.Close() }, nil
}

// writeFileAtomic writes r to a temporary file and renames it over name, so
// a reader never sees a half-written asset.
func writeFileAtomic(name string, r io.Reader, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
