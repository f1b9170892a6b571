// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/bpf"
)

// Names of programs and maps in the bpf objects (bpf2go constants).
const (
	progCapture   = bpf.CaptureProgCapture
	progTap       = bpf.CaptureProgTapIngress
	progInputLog  = bpf.InputlogProgInputLog
	progSetConfig = bpf.CaptureProgSetConfig
	mapConfig     = bpf.CaptureMapConfig
	mapCounters   = bpf.CaptureMapCounters
	mapCapRing    = bpf.CaptureMapCaptureRing
	mapInputRing  = bpf.InputlogMapInputRing
	mapScratch    = bpf.CaptureMapScratch
	mapPeers      = bpf.CaptureMapGroupPeers
	mapHoldRing   = bpf.InputlogMapHoldRing
)

// objects are the loaded programs and maps of one port.
type objects struct {
	progs map[string]*ebpf.Program
	maps  map[string]*ebpf.Map
}

func (o *objects) close() {
	for _, p := range o.progs {
		p.Close()
	}
	for _, m := range o.maps {
		m.Close()
	}
}

// loadObjects loads the capture object of path, and the guest-egress
// (input-log) object of kind egress (InputLogKernCtx or InputLogPortable; 0
// for none), sharing config, counters and group_peers. Maps named in reuse
// (pinned maps on Open) replace the spec's; the rest are created with ring
// buffers of ringBytes and a scratch slot per possible CPU.
func loadObjects(path CapturePath, ringBytes int, egress InputLogKind, reuse map[string]*ebpf.Map) (_ *objects, err error) {
	load, v := bpf.LoadCapture, view(&ringView{})
	switch {
	case path == PathRedirect:
		load, v = bpf.LoadRedirect, &redirectView{}
	case oneCopy():
		v = &ringCopyView{}
	}
	objs := &objects{progs: map[string]*ebpf.Program{}, maps: map[string]*ebpf.Map{}}
	defer func() {
		if err != nil {
			objs.close()
		}
	}()
	if err := loadInto(objs, load, v, ringBytes, reuse); err != nil {
		return nil, fmt.Errorf("load %s capture: %w", path, err)
	}
	if egress != 0 {
		shared := map[string]*ebpf.Map{mapConfig: objs.maps[mapConfig], mapCounters: objs.maps[mapCounters],
			mapPeers: objs.maps[mapPeers]}
		for name, m := range reuse {
			shared[name] = m
		}
		il, err := inputLogViewOf(egress)
		if err != nil {
			return nil, err
		}
		if err := loadInto(objs, bpf.LoadInputlog, il, ringBytes, shared); err != nil {
			return nil, fmt.Errorf("load %s input log: %w", egress, err)
		}
	}
	return objs, nil
}

// oneCopy reports whether the ring capture should load capture_copy (one
// copy per frame, ringCopyView) instead of capture (two, ringView). Tests
// override it to cover both.
var oneCopy = sync.OnceValue(haveDynptrCopy)

// haveDynptrCopy reports whether the kernel BTF has the kfuncs that
// capture_copy calls (bpf_dynptr_copy appeared in Linux 6.15).
func haveDynptrCopy() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	for _, name := range []string{"bpf_dynptr_copy", "bpf_dynptr_from_skb"} {
		var fn *btf.Func
		if spec.TypeByName(name, &fn) != nil {
			return false
		}
	}
	return true
}

// inputLogViewOf is the view that loads the input log of kind.
func inputLogViewOf(kind InputLogKind) (view, error) {
	switch kind {
	case InputLogKernCtx:
		return &inputLogView{}, nil
	case InputLogPortable:
		return &inputLogPortableView{}, nil
	}
	return nil, fmt.Errorf("input log kind %s: want kern-ctx or portable", kind)
}

// kernCtxKfunc is the kfunc the ring capture and the kern-ctx input log
// call, and the first Linux release that has it for tc programs.
const (
	kernCtxKfunc   = "bpf_cast_to_kern_ctx"
	kernCtxVersion = "6.2"
)

// kfuncSupport reports why the kernel cannot run a program calling the
// kfunc name (added in Linux since), or nil. A variable so that tests can
// play a kernel without it.
var kfuncSupport = func(name, since string) error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return noBTF(err)
	}
	var fn *btf.Func
	if err := spec.TypeByName(name, &fn); err != nil {
		return fmt.Errorf("no kfunc %s in the kernel (Linux >= %s): %w: %w", name, since, ebpf.ErrNotSupported, ErrKernelTooOld)
	}
	return nil
}

// noBTF wraps err from btf.LoadKernelSpec: ErrNoBTF only when the kernel
// truly has no BTF.
func noBTF(err error) error {
	if errors.Is(err, btf.ErrNotSupported) {
		return fmt.Errorf("%w: %w", ErrNoBTF, err)
	}
	return fmt.Errorf("kernel btf: %w", err)
}

// resolveInputLog turns kind into the input log this kernel runs:
// InputLogAuto picks kern-ctx where the kfunc exists, else portable; a
// forced kern-ctx fails naming the missing kfunc.
func resolveInputLog(kind InputLogKind) (InputLogKind, error) {
	switch kind {
	case InputLogPortable:
		return kind, nil
	case InputLogKernCtx:
		if err := kfuncSupport(kernCtxKfunc, kernCtxVersion); err != nil {
			return kind, fmt.Errorf("input log kern-ctx: %w", err)
		}
		return kind, nil
	case InputLogAuto:
		if kfuncSupport(kernCtxKfunc, kernCtxVersion) != nil {
			return InputLogPortable, nil
		}
		return InputLogKernCtx, nil
	}
	return kind, fmt.Errorf("input log kind %s: want auto, kern-ctx or portable", kind)
}

// loadInto loads what v names of the spec load returns into objs. Maps it
// takes from reuse are not owned by objs (their holder closes them).
func loadInto(objs *objects, load func() (*ebpf.CollectionSpec, error), v view, ringBytes int, reuse map[string]*ebpf.Map) error {
	spec, err := load()
	if err != nil {
		return err
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("possible cpus: %w", err)
	}
	repl := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		if m, ok := reuse[name]; ok {
			ms.MaxEntries = m.MaxEntries()
			repl[name] = m
			continue
		}
		switch ms.Type {
		case ebpf.RingBuf:
			ms.MaxEntries = uint32(ringBytes)
		case ebpf.Array:
			if name == mapScratch {
				ms.MaxEntries = uint32(ncpu)
			}
		}
	}
	if err := spec.LoadAndAssign(v, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		return classify(err)
	}
	progs, maps := v.named()
	for name, p := range progs {
		objs.progs[name] = p
	}
	for name, m := range maps {
		if _, shared := repl[name]; shared {
			m.Close() // a duplicate fd of the replacement
			continue
		}
		if _, dup := objs.maps[name]; dup {
			name = "inputlog_" + name // the input log's own scratch
		}
		objs.maps[name] = m
	}
	return nil
}

// classify wraps load errors in the package's sentinels. A missing
// feature (cilium/ebpf's ErrNotSupported, a missing kfunc included: btf's
// ErrNotSupported is the same value) is ErrKernelTooOld, and err names the
// feature; only ringSupport and kfuncSupport, which load the kernel BTF
// themselves, say ErrNoBTF.
func classify(err error) error {
	switch {
	case errors.Is(err, ErrKernelTooOld), errors.Is(err, ErrNoBTF):
		return err
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES) && !isVerifierError(err):
		return fmt.Errorf("%w: %w", ErrPermission, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %w", err, ErrKernelTooOld)
	}
	return err
}

func isVerifierError(err error) bool {
	var ve *ebpf.VerifierError
	return errors.As(err, &ve)
}

// choosePath resolves PathAuto: ring when the kernel has BTF and ring
// buffers (the actual load of the ring object is the final test, in Attach).
func choosePath(p CapturePath) (CapturePath, error) {
	if err := features.HaveProgramType(ebpf.SchedCLS); err != nil {
		return p, classify(fmt.Errorf("tc programs: %w", err))
	}
	ringErr := ringSupport()
	switch p {
	case PathRing:
		return p, ringErr
	case PathRedirect:
		return p, nil
	}
	if ringErr != nil {
		return PathRedirect, nil
	}
	return PathRing, nil
}

// ringSupport reports why path ring cannot work here, or nil: it needs
// kernel BTF, ring buffers and the bpf_cast_to_kern_ctx kfunc.
func ringSupport() error {
	if _, err := btf.LoadKernelSpec(); err != nil {
		return noBTF(err)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return classify(fmt.Errorf("ring buffer: %w", err))
	}
	return kfuncSupport(kernCtxKfunc, kernCtxVersion)
}
