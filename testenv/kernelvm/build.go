// SPDX-License-Identifier: Apache-2.0

package kernelvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Package is a Go package whose tests run in the VM.
type Package struct {
	Dir string // relative to the module root, e.g. "netbuf" or "./netbuf"
	// Run is the -test.run filter ("" runs every test).
	Run string
}

// DefaultPackages is the privileged data-plane tier: the BPF unit tests,
// the data plane and the output buffer in full, and of cli only the tests
// that drive the data plane's input log (attach --input-log) and the
// replay injector; the rest of cli does not touch the kernel's data path.
var DefaultPackages = []Package{
	{Dir: "bpf"}, {Dir: "dataplane"}, {Dir: "netbuf"},
	{Dir: "cli", Run: "^(TestDataplaneCommands|TestTapInjectorReachesTapReader)$"},
}

const initPackage = "github.com/resilire/resilire/testenv/kernelvm/init"

// goBuild runs the go tool in root for linux/amd64 without cgo, so the
// binaries are static and run in the bare initramfs.
func goBuild(ctx context.Context, root string, args ...string) ([]byte, error) {
	goTool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// buildInit compiles the guest /init into dir.
func buildInit(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "init")
	_, err := goBuild(ctx, root, "build", "-trimpath", "-ldflags=-s -w", "-o", out, initPackage)
	return out, err
}

// errNoTests says a package has no test files.
var errNoTests = errors.New("no test files")

// buildTests compiles p's tests into dir and returns the binary and the
// files (binary, testdata) to put in the initramfs, and the job to run.
func buildTests(ctx context.Context, root, dir string, p Package, timeoutSec int) (Job, []file, error) {
	rel := path.Clean(filepath.ToSlash(p.Dir))
	name := strings.ReplaceAll(rel, "/", "_")
	bin := filepath.Join(dir, name+".test")
	if _, err := goBuild(ctx, root, "test", "-c", "-o", bin, "./"+rel); err != nil {
		return Job{}, nil, err
	}
	if _, err := os.Stat(bin); errors.Is(err, os.ErrNotExist) {
		// go test -c writes nothing for a package without tests.
		return Job{}, nil, fmt.Errorf("%s: %w", rel, errNoTests)
	}
	guestDir := "/src/" + rel
	j := Job{
		Name: rel, Binary: "/tests/" + name + ".test", Dir: guestDir,
		Args:       []string{"-test.v", "-test.count=1", fmt.Sprintf("-test.timeout=%ds", timeoutSec)},
		TimeoutSec: timeoutSec + 30,
	}
	if p.Run != "" {
		j.Args = append(j.Args, "-test.run="+p.Run)
	}
	files := []file{{bin, j.Binary[1:]}}
	td := filepath.Join(root, filepath.FromSlash(rel), "testdata")
	if st, err := os.Stat(td); err == nil && st.IsDir() {
		tf, err := treeFiles(td, guestDir[1:]+"/testdata")
		if err != nil {
			return Job{}, nil, fmt.Errorf("testdata of %s: %w", rel, err)
		}
		files = append(files, tf...)
	}
	return j, files, nil
}

// moduleRoot finds the directory holding go.mod from dir upwards.
func moduleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		d = parent
	}
}
