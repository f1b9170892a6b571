// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// initPackage is the guest's /init program.
const initPackage = "github.com/resilire/resilire/testenv/guest/init"

// buildInit compiles the static /init into out with the go tool.
func buildInit(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", out, initPackage)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", initPackage, err, bytes.TrimSpace(b))
	}
	return nil
}

// BaseRecords are what every initramfs of the rigs starts with: /dev with
// /dev/console (without it init has no stdout), /proc and /sys.
func BaseRecords() []cpio.Record {
	return []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
	}
}

// writeInitramfs writes an uncompressed newc archive (the guest decompresses
// slowly under TCG) holding /init, /dev/console (without it init has no
// stdout), /proc, /sys, the modules under /lib/modules and their load order
// in /modules.order.
func writeInitramfs(out, initBin, modDir string, order []string) error {
	initData, err := os.ReadFile(initBin)
	if err != nil {
		return err
	}
	recs := append(BaseRecords(),
		cpio.Directory("lib/modules", 0o755),
		cpio.StaticFile("init", string(initData), 0o755),
		cpio.StaticFile("modules.order", strings.Join(order, "\n")+"\n", 0o644),
	)
	for _, m := range order {
		b, err := os.ReadFile(filepath.Join(modDir, m))
		if err != nil {
			return err
		}
		recs = append(recs, cpio.StaticFile("lib/modules/"+m, string(b), 0o644))
	}
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return writeFileAtomic(out, &buf, 0o644)
}
