// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/bpf"
)

// Attach creates the persistent injection tap next to opts.Port, loads and
// attaches the programs, and pins everything under <PinRoot>/<Name>. The
// port starts in ModeBuffer at FirstEpoch: from the moment Attach returns,
// no guest output leaves unless released. Call it in the port's netns.
func Attach(opts Options) (_ *Port, err error) {
	if opts, err = opts.withDefaults(); err != nil {
		return nil, err
	}
	if err := checkCaps(); err != nil {
		return nil, err
	}
	if err := ensureBPFFS(opts.PinRoot); err != nil {
		return nil, err
	}
	unlock, err := lockDir(opts.PinRoot)
	if err != nil {
		return nil, err
	}
	defer unlock()
	removeStaleTemp(opts.PinRoot, opts.Logger)
	pinDir := filepath.Join(opts.PinRoot, opts.Name)
	if ok, err := exists(pinDir); err != nil {
		return nil, fmt.Errorf("vm %s: %w", opts.Name, err)
	} else if ok {
		return nil, fmt.Errorf("vm %s: %w", opts.Name, ErrAttached)
	}
	port, err := findBridgePort(opts.Port)
	if err != nil {
		return nil, err
	}
	p := &Port{name: opts.Name, pinDir: pinDir, pinRoot: opts.PinRoot, portName: opts.Port,
		tapName: TapNameFor(opts.Name), log: opts.Logger, links: map[string]link.Link{}}
	if opts.InputLog || opts.Group {
		// One guest-egress program logs and/or colours: its kind is the
		// input log's when there is one.
		if p.egress, err = resolveInputLog(opts.InputLogKind); err != nil {
			return nil, err
		}
		if opts.InputLog {
			p.inputLog = p.egress
		}
	}
	if p.path, p.objs, err = loadForAttach(opts, p.egress); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(opts.PinRoot, tmpPrefix)
	if err != nil {
		p.objs.close()
		return nil, fmt.Errorf("pin dir: %w", err)
	}
	defer func() {
		if err != nil {
			p.undo(tmp)
		}
	}()
	tapIndex, err := createTap(p.tapName)
	if err != nil {
		return nil, err
	}
	if err := p.writeInitialConfig(opts, port.Attrs().Index, tapIndex); err != nil {
		return nil, err
	}
	if err := pinState(tmp, p.objs); err != nil {
		return nil, err
	}
	p.hooks = p.hooksFor(port.Attrs().Index, tapIndex)
	if err := p.attachHooks(opts.Attach, tmp); err != nil {
		return nil, err
	}
	if err := p.updateConfigIn(tmp, func(c *bpf.CapturePortConfig) { c.Attach = uint32(p.attach) }); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, pinDir); err != nil {
		return nil, fmt.Errorf("move pinned state into %s: %w", pinDir, err)
	}
	p.log.Info("dataplane attached", "vm", p.name, "iface", p.portName, "path", p.path.String(),
		"attach", p.attach.String(), "tap", p.tapName)
	return p, nil
}

// removeStaleTemp removes temp pin dirs left by an Attach that crashed
// before its rename (the root lock is held, so none is in progress).
// Unpinning their tcx links detaches them, as their process is gone.
func removeStaleTemp(root string, log *slog.Logger) {
	stale, _ := filepath.Glob(filepath.Join(root, tmpPrefix+"*"))
	for _, dir := range stale {
		log.Warn("removing state of an interrupted attach", "dir", dir)
		_ = os.RemoveAll(dir)
	}
}

// loadForAttach picks the capture path and loads it with the guest-egress
// program of kind egress (0: none). In PathAuto the actual load of the ring
// object decides: if it fails, path redirect.
func loadForAttach(opts Options, egress InputLogKind) (CapturePath, *objects, error) {
	path, err := choosePath(opts.Path)
	if err != nil {
		return path, nil, err
	}
	objs, err := loadObjects(path, opts.RingBytes, egress, nil)
	if err != nil && opts.Path == PathAuto && path == PathRing && !errors.Is(err, ErrPermission) {
		opts.Logger.Warn("ring capture does not load here; using path redirect", "iface", opts.Port, "err", err)
		path = PathRedirect
		objs, err = loadObjects(path, opts.RingBytes, egress, nil)
	}
	return path, objs, err
}

// findBridgePort returns the link named name, which must be a bridge port.
func findBridgePort(name string) (netlink.Link, error) {
	lk, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("iface %s: %w", name, ErrPortNotFound)
		}
		return nil, fmt.Errorf("find iface %s: %w", name, err)
	}
	master := lk.Attrs().MasterIndex
	if master == 0 {
		return nil, fmt.Errorf("iface %s is not a bridge port: it has no master; %w", name, ErrNotBridgePort)
	}
	ml, err := netlink.LinkByIndex(master)
	if err != nil {
		return nil, fmt.Errorf("iface %s: find its master %d: %w", name, master, err)
	}
	if ml.Type() != "bridge" {
		return nil, fmt.Errorf("iface %s is not a bridge port: its master %s is a %s; %w",
			name, ml.Attrs().Name, ml.Type(), ErrNotBridgePort)
	}
	return lk, nil
}

func (p *Port) writeInitialConfig(opts Options, portIndex, tapIndex int) error {
	var b [4]byte
	// The high 20 bits must not be 0: they mark frames the HoldQueue
	// releases (release_mark in bpf/inputlog.c, colour in the low 12).
	var magic uint32
	for magic&^colourMask == 0 {
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("magic mark: %w", err)
		}
		magic = binary.LittleEndian.Uint32(b[:])
	}
	c := bpf.CapturePortConfig{
		Epoch: FirstEpoch, Mode: bpf.CaptureMode(ModeBuffer), Magic: magic,
		PortIfindex: uint32(portIndex), TapIfindex: uint32(tapIndex),
		Path: uint32(p.path), TapQueues: uint32(opts.TapQueues),
	}
	c.InputLog = bpf.CaptureInputLogKind(p.inputLog)
	c.Egress = bpf.CaptureInputLogKind(p.egress)
	for i := 0; i < len(opts.Port) && i < len(c.PortName)-1; i++ {
		c.PortName[i] = int8(opts.Port[i])
	}
	if err := p.objs.maps[mapConfig].Update(uint32(0), &c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// updateConfigIn rewrites the whole config before the pin dir exists: no
// other process knows the port yet, and the programs already attached read
// only epoch and mode, whose bytes this rewrites with the same values.
func (p *Port) updateConfigIn(_ string, fn func(*bpf.CapturePortConfig)) error {
	c, err := p.config()
	if err != nil {
		return err
	}
	fn(&c)
	return p.objs.maps[mapConfig].Update(uint32(0), &c, ebpf.UpdateExist)
}

// hooksFor lists where each program goes. capture comes last, so when it
// starts holding, the release path already works.
func (p *Port) hooksFor(portIndex, tapIndex int) []hook {
	hooks := []hook{{name: progTap, ifindex: tapIndex, ingress: true}}
	if p.objs.progs[progInputLog] != nil {
		hooks = append(hooks, hook{name: progInputLog, ifindex: portIndex, ingress: false})
	}
	return append(hooks, hook{name: progCapture, ifindex: portIndex, ingress: true})
}

// attachHooks attaches every hook with method (tcx links pinned into dir);
// AttachAuto uses tcx when the kernel has it, else clsact.
func (p *Port) attachHooks(method AttachMethod, dir string) error {
	p.attach = method
	if method == AttachAuto {
		p.attach = AttachClsact
		if err := probeTCX(); err == nil {
			p.attach = AttachTCX
		} else {
			p.log.Info("no tcx on this kernel; using clsact", "iface", p.portName, "err", err)
		}
	}
	for _, h := range p.hooks {
		if err := p.attachHook(h, dir); err != nil {
			return err
		}
	}
	return nil
}

func (p *Port) attachHook(h hook, dir string) error {
	prog := p.objs.progs[h.name]
	if p.attach == AttachClsact {
		return attachClsact(h, prog)
	}
	l, err := attachTCX(h, prog)
	if err != nil {
		return err
	}
	p.links[h.name] = l
	if err := l.Pin(filepath.Join(dir, pinLinkPrefix+h.name)); err != nil {
		return fmt.Errorf("pin link %s: %w", h.name, err)
	}
	return nil
}

// undo reverts a failed Attach: detach, delete the tap, drop the temp pins.
func (p *Port) undo(tmp string) {
	_ = p.detachHooks()
	_ = os.RemoveAll(tmp)
	_ = p.Close()
	_ = deleteTap(p.tapName)
}
