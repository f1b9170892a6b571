// SPDX-License-Identifier: Apache-2.0

package kernelvm

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultModules are the modules the data-plane tests need on a kernel
// that builds them as modules (the guest has no modprobe, so nothing loads
// on demand): the bridge and veth pairs of testenv's rigs, tun/tap, and the
// tc pieces of the clsact fallback.
var DefaultModules = []string{
	"bridge", "veth", "tun", "sch_ingress", "cls_bpf", "act_bpf", "act_gact",
}

// ModuleOrder returns the files (relative to modDir) of the modules named
// in want and of everything they depend on, each after its dependencies.
// Modules built into the kernel (modules.builtin) are left out; a module
// that is neither built in nor in the tree is an error. The dependencies
// come from each module's .modinfo, since the package ships no modules.dep.
func ModuleOrder(modDir string, want []string) ([]string, error) {
	files, err := indexModules(modDir)
	if err != nil {
		return nil, err
	}
	builtin, err := builtinModules(modDir)
	if err != nil {
		return nil, err
	}
	var order []string
	state := make(map[string]int) // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		file, ok := files[name]
		if !ok {
			if builtin[name] {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("module %s (needed by %s) is neither in %s nor built in", name, from, modDir)
		}
		state[name] = 1
		deps, err := moduleDepends(filepath.Join(modDir, file))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, file)
		return nil
	}
	for _, w := range want {
		if err := visit(modName(w), "the tests"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modName is the kernel's name of a module: dashes become underscores.
func modName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
}

// indexModules maps module names to their .ko files under modDir.
func indexModules(modDir string) (map[string]string, error) {
	files := make(map[string]string)
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, err := filepath.Rel(modDir, p)
			if err != nil {
				return err
			}
			files[modName(p)] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules: %w", err)
	}
	return files, nil
}

// builtinModules reads modules.builtin: the modules compiled in.
func builtinModules(modDir string) (map[string]bool, error) {
	f, err := os.Open(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("builtin modules: %w", err)
	}
	defer f.Close()
	m := make(map[string]bool)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			m[modName(l)] = true
		}
	}
	return m, sc.Err()
}

// moduleDepends reads the depends= field of a module's .modinfo section.
func moduleDepends(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", file, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", file)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", file, err)
	}
	var deps []string
	for _, field := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(field, []byte("depends=")); ok {
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, modName(d))
				}
			}
		}
	}
	return deps, nil
}
