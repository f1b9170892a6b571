// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Pin names inside <PinRoot>/<vm>/. Programs are pinned so Open can check
// their tags; tcx links are pinned so they outlive the process (cls_bpf
// filters hold their program by themselves).
const (
	pinProgPrefix = "prog_"
	pinLinkPrefix = "link_"
	tmpPrefix     = "__tmp-" // Attach builds state here, then renames it
)

// mapsToPin are the maps Open needs; scratch maps are private to programs.
var mapsToPin = []string{mapConfig, mapCounters, mapCapRing, mapInputRing, mapPeers, mapHoldRing}

// ensureBPFFS creates root (on bpffs) if needed and checks its filesystem.
func ensureBPFFS(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("create %s: %w: %w", root, ErrPermission, err)
		}
		return fmt.Errorf("create %s: %w: %w", root, ErrNoBPFFS, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", root, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("%s: %w", root, ErrNoBPFFS)
	}
	return nil
}

// lockDir takes an exclusive flock on dir, serialising attach, detach and
// config updates between processes (daemon and CLI). Call the returned
// function to unlock.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// pinState pins objs into dir (a fresh temp dir that Attach renames into
// place, so a crash never leaves a half-built state under the VM's name).
func pinState(dir string, objs *objects) error {
	for _, name := range mapsToPin {
		if m, ok := objs.maps[name]; ok {
			if err := m.Pin(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("pin map %s: %w", name, err)
			}
		}
	}
	for name, p := range objs.progs {
		if err := p.Pin(filepath.Join(dir, pinProgPrefix+name)); err != nil {
			return fmt.Errorf("pin program %s: %w", name, err)
		}
	}
	return nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}
