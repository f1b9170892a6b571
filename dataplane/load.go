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
	progCapture     = bpf.CaptureProgCapture
	progCaptureCopy = bpf.CaptureProgCaptureCopy
	progTap         = bpf.CaptureProgTapIngress
	progInputLog    = bpf.InputlogProgInputLog
	progSetConfig   = bpf.CaptureProgSetConfig
	mapConfig       = bpf.CaptureMapConfig
	mapCounters     = bpf.CaptureMapCounters
	mapCapRing      = bpf.CaptureMapCaptureRing
	mapInputRing    = bpf.InputlogMapInputRing
	mapScratch      = bpf.CaptureMapScratch
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

// loadObjects loads the capture object of path, and the input-log object if
// inputLog, sharing config and counters. Maps named in reuse (pinned maps
// on Open) replace the spec's; the rest are created with ring buffers of
// ringBytes and a scratch slot per possible CPU.
func loadObjects(path CapturePath, ringBytes int, inputLog bool, reuse map[string]*ebpf.Map) (_ *objects, err error) {
	load := loadCaptureSpec
	if path == PathRedirect {
		load = bpf.LoadRedirect
	}
	objs := &objects{progs: map[string]*ebpf.Program{}, maps: map[string]*ebpf.Map{}}
	defer func() {
		if err != nil {
			objs.close()
		}
	}()
	if err := loadInto(objs, load, ringBytes, reuse); err != nil {
		return nil, fmt.Errorf("load %s capture: %w", path, err)
	}
	if inputLog {
		shared := map[string]*ebpf.Map{mapConfig: objs.maps[mapConfig], mapCounters: objs.maps[mapCounters]}
		for name, m := range reuse {
			shared[name] = m
		}
		if err := loadInto(objs, bpf.LoadInputlog, ringBytes, shared); err != nil {
			return nil, fmt.Errorf("load input log: %w", err)
		}
	}
	return objs, nil
}

// oneCopy reports whether the ring capture should use capture_copy (one
// copy per frame) instead of capture (two). Tests override it to cover both.
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

// loadCaptureSpec is the path-ring capture object with exactly one capture
// program, named capture: capture_copy where the kernel supports it, the
// two-copy capture elsewhere. The scratch map stays (the input log shares
// record.h); capture_copy never touches it.
func loadCaptureSpec() (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadCapture()
	if err != nil {
		return nil, err
	}
	if oneCopy() {
		spec.Programs[progCapture] = spec.Programs[progCaptureCopy]
	}
	delete(spec.Programs, progCaptureCopy)
	return spec, nil
}

// loadInto loads one collection spec into objs. Maps it takes from reuse are
// not owned by objs (their holder closes them) unless objs created them.
func loadInto(objs *objects, load func() (*ebpf.CollectionSpec, error), ringBytes int, reuse map[string]*ebpf.Map) error {
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
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return classify(err)
	}
	for name, p := range coll.Programs {
		objs.progs[name] = p
	}
	for name, m := range coll.Maps {
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

// classify wraps load errors in the package's sentinels.
func classify(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES) && !isVerifierError(err):
		return fmt.Errorf("%w: %w", ErrPermission, err)
	case errors.Is(err, btf.ErrNotSupported):
		return fmt.Errorf("%w: %w", ErrNoBTF, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %w", ErrKernelTooOld, err)
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

// ringSupport reports why path ring cannot work here, or nil.
func ringSupport() error {
	if _, err := btf.LoadKernelSpec(); err != nil {
		return fmt.Errorf("%w: %w", ErrNoBTF, err)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return classify(fmt.Errorf("ring buffer: %w", err))
	}
	return nil
}
