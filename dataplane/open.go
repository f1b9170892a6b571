// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Open re-opens the pinned state of VM name after a daemon restart. It
// fails with ErrIncompatible if the pinned programs are not the ones built
// into this binary. pinRoot "" means DefaultPinRoot.
func Open(name, pinRoot string, log *slog.Logger) (*Port, error) {
	return openPinned(name, pinRoot, log, true)
}

// openPinned opens the pinned state; checkTags compares the programs with
// this build's (Detach and Status work without it).
func openPinned(name, pinRoot string, log *slog.Logger, checkTags bool) (_ *Port, err error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if pinRoot == "" {
		pinRoot = DefaultPinRoot
	}
	pinDir := filepath.Join(pinRoot, name)
	if ok, err := exists(pinDir); err != nil {
		return nil, fmt.Errorf("vm %s: %w", name, err)
	} else if !ok {
		return nil, fmt.Errorf("vm %s: %w", name, ErrNotAttached)
	}
	p := &Port{name: name, pinDir: pinDir, pinRoot: pinRoot, tapName: TapNameFor(name), log: orDiscard(log),
		objs: &objects{progs: map[string]*ebpf.Program{}, maps: map[string]*ebpf.Map{}}, links: map[string]link.Link{}}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := p.loadPinned(); err != nil {
		return nil, err
	}
	c, err := p.config()
	if err != nil {
		return nil, err
	}
	p.path, p.attach = CapturePath(c.Path), AttachMethod(c.Attach)
	if p.objs.progs[progInputLog] != nil {
		p.inputLog, p.egress = InputLogKind(c.InputLog), InputLogKind(c.Egress)
	}
	p.portName = cString(c.PortName[:])
	p.hooks = p.hooksFor(int(c.PortIfindex), int(c.TapIfindex))
	if checkTags {
		if err := p.checkTags(); err != nil {
			return nil, err
		}
	}
	if p.attach == AttachTCX {
		for _, h := range p.hooks {
			l, err := link.LoadPinnedLink(filepath.Join(pinDir, pinLinkPrefix+h.name), nil)
			if err != nil {
				return nil, fmt.Errorf("vm %s: open pinned link %s: %w", name, h.name, err)
			}
			p.links[h.name] = l
		}
	}
	return p, nil
}

// loadPinned opens every pinned map and program of p.
func (p *Port) loadPinned() error {
	entries, err := os.ReadDir(p.pinDir)
	if err != nil {
		return fmt.Errorf("vm %s: %w", p.name, err)
	}
	for _, e := range entries {
		path := filepath.Join(p.pinDir, e.Name())
		switch n := e.Name(); {
		case len(n) > len(pinProgPrefix) && n[:len(pinProgPrefix)] == pinProgPrefix:
			prog, err := ebpf.LoadPinnedProgram(path, nil)
			if err != nil {
				return fmt.Errorf("vm %s: open pinned program %s: %w", p.name, n, classify(err))
			}
			p.objs.progs[n[len(pinProgPrefix):]] = prog
		case len(n) > len(pinLinkPrefix) && n[:len(pinLinkPrefix)] == pinLinkPrefix:
			// opened after the tag check
		default:
			m, err := ebpf.LoadPinnedMap(path, nil)
			if err != nil {
				return fmt.Errorf("vm %s: open pinned map %s: %w", p.name, n, classify(err))
			}
			p.objs.maps[n] = m
		}
	}
	for _, want := range []string{mapConfig, mapCounters, progCapture, progTap} {
		if p.objs.maps[want] == nil && p.objs.progs[want] == nil {
			return fmt.Errorf("vm %s: pinned state lacks %s: %w", p.name, want, ErrIncompatible)
		}
	}
	return nil
}

// checkTags loads this binary's programs against the pinned maps and
// compares each program's tag with the pinned one's.
func (p *Port) checkTags() error {
	fresh, err := loadObjects(p.path, 0, p.egress, p.objs.maps)
	if err != nil {
		return fmt.Errorf("vm %s: load programs to compare: %w", p.name, err)
	}
	defer fresh.close()
	if len(fresh.progs) != len(p.objs.progs) {
		return fmt.Errorf("vm %s: %d programs pinned, %d in this build: %w", p.name, len(p.objs.progs), len(fresh.progs), ErrIncompatible)
	}
	for name, fp := range fresh.progs {
		pp := p.objs.progs[name]
		if pp == nil {
			return fmt.Errorf("vm %s: program %s not pinned: %w", p.name, name, ErrIncompatible)
		}
		fi, err1 := fp.Info()
		pi, err2 := pp.Info()
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("vm %s: program info %s: %w", p.name, name, err)
		}
		if fi.Tag != pi.Tag {
			return fmt.Errorf("vm %s: program %s tag %s pinned, %s built: %w", p.name, name, pi.Tag, fi.Tag, ErrIncompatible)
		}
	}
	return nil
}

// Detach removes the programs (links or filters), the injection tap and the
// pinned state, then closes p. Guest output flows unbuffered afterwards.
// Call it in the port's netns.
func (p *Port) Detach() error {
	unlock, err := lockDir(p.pinRoot)
	if err != nil {
		return err
	}
	defer unlock()
	errs := []error{p.detachHooks(), deleteTap(p.tapName)}
	if err := os.RemoveAll(p.pinDir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", p.pinDir, err))
	}
	errs = append(errs, p.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach vm %s: %w", p.name, err)
	}
	p.log.Info("dataplane detached", "vm", p.name, "iface", p.portName)
	return nil
}

// detachHooks detaches every program, in reverse attach order (capture
// first, so no frame is captured that could no longer be released).
func (p *Port) detachHooks() error {
	var errs []error
	for i := len(p.hooks) - 1; i >= 0; i-- {
		h := p.hooks[i]
		switch {
		case p.attach == AttachClsact:
			errs = append(errs, detachClsact(h))
		case p.links[h.name] != nil:
			// Detach, not just Close: another process may hold the link.
			if err := p.links[h.name].Detach(); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("detach %s: %w", h, err))
			}
		}
	}
	return errors.Join(errs...)
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
