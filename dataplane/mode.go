// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"fmt"
	"strings"

	"github.com/resilire/resilire/bpf"
)

// Mode is what the capture program does with guest output.
type Mode uint32

// Port modes; the values are the C enum mode in bpf/resilire.h.
const (
	// ModePass forwards guest output untouched.
	ModePass = Mode(bpf.CaptureModeMODE_PASS)
	// ModeBuffer holds guest output until netbuf releases it.
	ModeBuffer = Mode(bpf.CaptureModeMODE_BUFFER)
	// ModeBlock drops all guest output, released frames included (a
	// fenced or demoted copy must emit nothing).
	ModeBlock = Mode(bpf.CaptureModeMODE_BLOCK)
)

var modeNames = map[Mode]string{ModePass: "pass", ModeBuffer: "buffer", ModeBlock: "block"}

// String returns pass, buffer or block.
func (m Mode) String() string {
	if s, ok := modeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("mode(%d)", uint32(m))
}

// CapturePath is how buffered output is held.
type CapturePath int

// Capture paths.
const (
	// PathAuto picks PathRing when the kernel can load it, else PathRedirect.
	PathAuto CapturePath = iota
	// PathRing copies each frame into a BPF ring buffer with its epoch and
	// GSO/checksum metadata (needs BTF, bpf_cast_to_kern_ctx, ring buffers).
	PathRing
	// PathRedirect redirects the original frame to the injection tap's
	// egress; netbuf reads it from the tap (portable, about half the speed).
	PathRedirect
)

var pathNames = map[CapturePath]string{PathAuto: "auto", PathRing: "ring", PathRedirect: "redirect"}

// String returns auto, ring or redirect.
func (p CapturePath) String() string {
	if s, ok := pathNames[p]; ok {
		return s
	}
	return fmt.Sprintf("path(%d)", int(p))
}

// ParseCapturePath parses auto, ring or redirect.
func ParseCapturePath(s string) (CapturePath, error) {
	for p, name := range pathNames {
		if strings.EqualFold(s, name) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("path %q: want auto, ring or redirect", s)
}

// AttachMethod is how the programs are attached to the interfaces.
type AttachMethod int

// Attach methods.
const (
	// AttachAuto uses tcx when the kernel has it (>= 6.6), else clsact.
	AttachAuto AttachMethod = iota
	// AttachTCX uses tcx links (pinned; kernel >= 6.6).
	AttachTCX
	// AttachClsact uses a clsact qdisc and cls_bpf direct-action filters.
	AttachClsact
)

var attachNames = map[AttachMethod]string{AttachAuto: "auto", AttachTCX: "tcx", AttachClsact: "clsact"}

// String returns auto, tcx or clsact.
func (a AttachMethod) String() string {
	if s, ok := attachNames[a]; ok {
		return s
	}
	return fmt.Sprintf("attach(%d)", int(a))
}

// ParseAttachMethod parses auto, tcx or clsact.
func ParseAttachMethod(s string) (AttachMethod, error) {
	for a, name := range attachNames {
		if strings.EqualFold(s, name) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("attach %q: want auto, tcx or clsact", s)
}

// InputLogKind is how the input log reads each frame's metadata; the
// values are the C enum input_log_kind in bpf/resilire.h.
type InputLogKind uint32

// Input-log kinds.
const (
	// InputLogAuto (an option only) picks InputLogKernCtx when the kernel
	// has the bpf_cast_to_kern_ctx kfunc, else InputLogPortable.
	InputLogAuto InputLogKind = 0
	// InputLogKernCtx reads the exact checksum state and GSO type from the
	// kernel's sk_buff (kfunc bpf_cast_to_kern_ctx, Linux >= 6.2).
	InputLogKernCtx = InputLogKind(bpf.CaptureInputLogKindINPUT_LOG_KERN_CTX)
	// InputLogPortable reads only struct __sk_buff (Linux >= 5.8, Debian
	// 12's 6.1); its records carry FrameMetaUnknown and CompleteChecksum
	// finishes their checksums from the frame itself.
	InputLogPortable = InputLogKind(bpf.CaptureInputLogKindINPUT_LOG_PORTABLE)
)

var inputLogNames = map[InputLogKind]string{InputLogAuto: "auto", InputLogKernCtx: "kern-ctx", InputLogPortable: "portable"}

// String returns auto, kern-ctx or portable.
func (k InputLogKind) String() string {
	if s, ok := inputLogNames[k]; ok {
		return s
	}
	return fmt.Sprintf("input-log(%d)", uint32(k))
}

// ParseInputLogKind parses auto, kern-ctx or portable.
func ParseInputLogKind(s string) (InputLogKind, error) {
	for k, name := range inputLogNames {
		if strings.EqualFold(s, name) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("input log kind %q: want auto, kern-ctx or portable", s)
}
