// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/resilire/resilire/testenv"
)

// requireFor skips tb where the kernel lacks what path and method need,
// as testenv's probes (not this package's Probe) prove. The fallbacks
// (PathRedirect, AttachClsact) and the Auto choices need nothing: they run
// on every kernel.
func requireFor(tb testing.TB, path CapturePath, method AttachMethod) {
	tb.Helper()
	testenv.RequirePrivileged(tb)
	if path == PathRing {
		testenv.RequireFeature(tb, testenv.FeatureRingPath, testenv.ProbeRingPath())
	}
	if method == AttachTCX {
		testenv.RequireFeature(tb, testenv.FeatureTCX, testenv.ProbeTCX())
	}
}

// TestMissingFeatureRefused: where the kernel lacks the ring path or tcx,
// Probe says so, Auto falls back, and asking for the feature fails with
// ErrKernelTooOld wrapping ebpf.ErrNotSupported, naming what is missing and
// not blaming BTF on a kernel that has it. Where the kernel has them, the
// probe and Auto pick them. This is what lets the other tests skip on a
// proven missing feature: the product refuses it, clearly.
func TestMissingFeatureRefused(t *testing.T) {
	testenv.RequirePrivileged(t)
	f := Probe()
	hasBTF := testenv.ProbeKfuncs() == nil
	e := newRigEnv(t, Options{}) // Auto: must attach on every kernel
	for _, c := range []struct {
		feature   string
		kernel    error // testenv's probe
		probe     error // this package's
		auto      bool  // what Auto chose is the feature
		opts      Options
		mentioned string
	}{
		{testenv.FeatureRingPath, testenv.ProbeRingPath(), f.Ring, e.port.Path() == PathRing, Options{Path: PathRing, Attach: AttachClsact}, "bpf_cast_to_kern_ctx"},
		{testenv.FeatureTCX, testenv.ProbeTCX(), f.TCX, e.port.AttachMethod() == AttachTCX, Options{Path: PathRedirect, Attach: AttachTCX}, "tcx"},
	} {
		if c.kernel == nil {
			if c.probe != nil || !c.auto {
				t.Errorf("kernel has %s: Probe says %v, Auto chose it: %v", c.feature, c.probe, c.auto)
			}
			continue
		}
		if c.auto {
			t.Errorf("kernel lacks %s (%v) but Auto chose it", c.feature, c.kernel)
		}
		var err error
		c.opts.Name, c.opts.Port, c.opts.PinRoot = testenv.UniqueName("rdp"), e.rig.Port, e.pinRoot
		e.inHost(func() error { p, aerr := Attach(c.opts); err = aerr; return detachIf(p) })
		for what, err := range map[string]error{"Probe": c.probe, "Attach": err} {
			switch {
			case err == nil:
				t.Errorf("kernel lacks %s but %s accepts it", c.feature, what)
			case !errors.Is(err, ErrKernelTooOld) || !errors.Is(err, ebpf.ErrNotSupported) || !strings.Contains(err.Error(), c.mentioned):
				t.Errorf("%s on a kernel without %s: %v; want ErrKernelTooOld wrapping ebpf.ErrNotSupported and naming %s", what, c.feature, err, c.mentioned)
			case hasBTF && errors.Is(err, ErrNoBTF):
				t.Errorf("%s blames BTF on a kernel that has it (missing: %s): %v", what, c.feature, err)
			}
		}
	}
}

// detachIf detaches p if an attach unexpectedly succeeded.
func detachIf(p *Port) error {
	if p == nil {
		return nil
	}
	return p.Detach()
}
