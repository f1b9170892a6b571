// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"
	"math"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Features is what the running kernel offers the data plane; a nil error
// means available. Probe fills it at start-up; Attach resolves PathAuto and
// AttachAuto from it.
type Features struct {
	TC   error // tc (sched_cls) programs: needed by every path
	Ring error // path ring: BTF, ring buffers, and an actual load of the capture object
	TCX  error // tcx links (kernel >= 6.6); else clsact
	// KernCtx: the kfunc bpf_cast_to_kern_ctx (kernel >= 6.2), which path
	// ring and the kern-ctx input log call; without it the input log is
	// the portable one.
	KernCtx error
}

// Probe checks the kernel. It loads the ring capture object once (and
// unloads it) and asks for a tcx link on a nonexistent interface, so it
// attaches nothing.
func Probe() Features {
	var f Features
	if err := features.HaveProgramType(ebpf.SchedCLS); err != nil {
		f.TC = classify(fmt.Errorf("tc programs: %w", err))
	}
	f.KernCtx = kfuncSupport(kernCtxKfunc, kernCtxVersion)
	f.Ring = probeRing()
	f.TCX = probeTCX()
	return f
}

// InputLog is the input-log kind InputLogAuto resolves to.
func (f Features) InputLog() InputLogKind {
	if f.KernCtx == nil {
		return InputLogKernCtx
	}
	return InputLogPortable
}

// Path is the capture path PathAuto resolves to.
func (f Features) Path() CapturePath {
	if f.Ring == nil {
		return PathRing
	}
	return PathRedirect
}

// Attach is the method AttachAuto resolves to.
func (f Features) Attach() AttachMethod {
	if f.TCX == nil {
		return AttachTCX
	}
	return AttachClsact
}

func probeRing() error {
	if err := ringSupport(); err != nil {
		return err
	}
	objs, err := loadObjects(PathRing, ringSize(1), 0, nil)
	if err != nil {
		return err
	}
	objs.close()
	return nil
}

// probeTCX asks the kernel for a tcx link on an interface that cannot
// exist: ENODEV means tcx is there (the same test cilium/ebpf runs).
func probeTCX() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return classify(err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: math.MaxInt32, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		l.Close()
		return errors.New("tcx probe attached to a nonexistent interface")
	}
	if errors.Is(err, unix.ENODEV) {
		return nil
	}
	return fmt.Errorf("%w: tcx: %w", ErrKernelTooOld, err)
}
