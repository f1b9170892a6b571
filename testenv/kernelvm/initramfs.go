// SPDX-License-Identifier: Apache-2.0

package kernelvm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/resilire/resilire/testenv/guest"
	"github.com/u-root/u-root/pkg/cpio"
)

// file is a host file placed at a path in the initramfs.
type file struct{ host, guest string }

// writeInitramfs writes an uncompressed newc archive (decompressing is slow
// under TCG) to out: /init, the manifest, the modules and the files.
func writeInitramfs(out, initBin string, k *Kernel, m Manifest, files []file) (err error) {
	manifest, err := json.Marshal(m)
	if err != nil {
		return err
	}
	recs := append(guest.BaseRecords(),
		cpio.Directory("tmp", 0o1777),
		cpio.Directory("run", 0o755),
		cpio.Directory("var", 0o755),
		cpio.Symlink("var/run", "/run"),
		cpio.StaticFile(path.Clean(ManifestPath[1:]), string(manifest), 0o644),
	)
	all := append([]file{{initBin, "init"}}, files...)
	for _, mod := range m.Modules {
		all = append(all, file{filepath.Join(k.ModDir, mod), path.Join(ModulesDir[1:], mod)})
	}
	rec := cpio.NewRecorder()
	for _, f := range all {
		r, err := rec.GetRecord(f.host)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		r.Name = f.guest
		recs = append(recs, cpio.MakeReproducible(r))
	}
	fh, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer func() {
		if cerr := fh.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("initramfs: %w", cerr)
		}
	}()
	bw := bufio.NewWriterSize(fh, 1<<20)
	w := cpio.Newc.Writer(bw)
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return bw.Flush()
}

// treeFiles lists the regular files below hostDir, placed below guestDir.
func treeFiles(hostDir, guestDir string) ([]file, error) {
	var files []file
	err := filepath.WalkDir(hostDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(hostDir, p)
		if err != nil {
			return err
		}
		files = append(files, file{p, path.Join(guestDir, filepath.ToSlash(rel))})
		return nil
	})
	return files, err
}
