// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// The optional kernel features of the data plane, as RequireFeature names
// them. Everything else (tc programs, clsact, the redirect path, the
// two-copy capture, the input log) has a fallback and must work on every
// kernel the tests run on.
const (
	FeatureTCX        = "tcx links (Linux 6.6)"
	FeatureRingPath   = "ring capture path: kfunc bpf_cast_to_kern_ctx and BPF ring buffers (Linux 6.2)"
	FeatureDynptrCopy = "one-copy capture: kfuncs bpf_dynptr_from_skb and bpf_dynptr_copy (Linux 6.15)"
)

// RequireFeature is the one way a test depends on an optional kernel
// feature. probeErr is the result of probing the kernel for feature (see
// ProbeTCX, ProbeRingPath, ProbeKfuncs):
//
//   - nil: the feature is there; the test goes on.
//   - wraps ebpf.ErrNotSupported (or errors.ErrUnsupported, for a feature
//     outside BPF such as PAGEMAP_SCAN): the probe proved the kernel lacks it; the
//     test skips, naming feature, on every tier (RESILIRE_TEST_PRIVILEGED=1
//     included: an old kernel is not a broken test machine).
//   - anything else: the probe proved nothing (no privileges, no BTF
//     file, a bug); the test fails under RESILIRE_TEST_PRIVILEGED=1 and
//     skips otherwise, like RequirePrivileged.
//
// Tests never skip on a kernel version number, and never for what has a
// fallback: a test of a fallback runs everywhere. That the product itself
// refuses a missing feature with a clear error is a test of its own, not a
// reason to skip.
func RequireFeature(tb testing.TB, feature string, probeErr error) {
	tb.Helper()
	switch {
	case probeErr == nil:
	case errors.Is(probeErr, ebpf.ErrNotSupported), errors.Is(probeErr, errors.ErrUnsupported):
		tb.Skipf("kernel lacks %s: %v", feature, probeErr)
	default:
		skipOrFail(tb, "probe %s: %v", feature, probeErr)
	}
}

// ProbeKfuncs reports whether the kernel's BTF declares every kfunc in
// names. A missing kfunc, or a kernel without BTF, is an error wrapping
// ebpf.ErrNotSupported.
func ProbeKfuncs(names ...string) error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("kernel BTF: %w", err)
	}
	for _, name := range names {
		var fn *btf.Func
		err := spec.TypeByName(name, &fn)
		if errors.Is(err, btf.ErrNotFound) {
			return fmt.Errorf("kfunc %s not in kernel BTF: %w", name, ebpf.ErrNotSupported)
		}
		if err != nil {
			return fmt.Errorf("kfunc %s: %w", name, err)
		}
	}
	return nil
}

// ProbeRingPath checks what the ring capture path needs: ring buffer maps
// and the kfunc bpf_cast_to_kern_ctx.
func ProbeRingPath() error {
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return fmt.Errorf("ring buffer maps: %w", err)
	}
	return ProbeKfuncs("bpf_cast_to_kern_ctx")
}

// ProbeDynptrCopy checks for the kfuncs of the one-copy capture.
func ProbeDynptrCopy() error { return ProbeKfuncs("bpf_dynptr_from_skb", "bpf_dynptr_copy") }

// ProbeTCX checks for tcx links: cilium/ebpf's own feature test runs when
// a tcx link is asked for, here on an interface that cannot exist, so
// nothing is attached (ENODEV means tcx is there).
func ProbeTCX() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return fmt.Errorf("tcx probe program: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: math.MaxInt32, Program: prog, Attach: ebpf.AttachTCXIngress})
	switch {
	case err == nil:
		l.Close()
		return errors.New("tcx probe attached to a nonexistent interface")
	case errors.Is(err, ebpf.ErrNotSupported):
		return err
	case isNoDevice(err):
		return nil
	}
	return fmt.Errorf("tcx probe: %w", err)
}
