// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// recordTB records what RequireFeature does instead of ending the test.
type recordTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordTB) Helper()                        {}
func (r *recordTB) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recordTB) Skip(a ...any)                  { r.skipped = fmt.Sprint(a...) }
func (r *recordTB) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

// A proven missing feature skips, naming it, even when privileged tests
// must run; an error that proves nothing fails then and skips otherwise;
// no error does nothing.
func TestRequireFeature(t *testing.T) {
	missing := fmt.Errorf("kfunc bpf_x not in kernel BTF: %w", ebpf.ErrNotSupported)
	other := errors.New("open /sys/kernel/btf/vmlinux: permission denied")
	for _, tc := range []struct {
		priv          string
		err           error
		skip, fail    bool
		wantInMessage string
	}{
		{"1", nil, false, false, ""},
		{"", nil, false, false, ""},
		{"1", missing, true, false, "kernel lacks feature X: kfunc bpf_x"},
		{"", missing, true, false, "kernel lacks feature X: kfunc bpf_x"},
		{"1", other, false, true, "probe feature X: open /sys/kernel/btf/vmlinux: permission denied (RESILIRE_TEST_PRIVILEGED=1 forbids skipping)"},
		{"", other, true, false, "probe feature X: open"},
	} {
		t.Setenv(PrivilegedEnv, tc.priv)
		r := &recordTB{TB: t}
		RequireFeature(r, "feature X", tc.err)
		if (r.skipped != "") != tc.skip || (r.failed != "") != tc.fail {
			t.Errorf("priv=%q err=%v: skipped %q failed %q; want skip %v fail %v", tc.priv, tc.err, r.skipped, r.failed, tc.skip, tc.fail)
		}
		if msg := r.skipped + r.failed; !strings.Contains(msg, tc.wantInMessage) {
			t.Errorf("priv=%q err=%v: message %q lacks %q", tc.priv, tc.err, msg, tc.wantInMessage)
		}
	}
}

// On the running kernel the probes either find a feature or prove it
// missing: never an error that proves nothing (as root).
func TestProbesDecide(t *testing.T) {
	RequirePrivileged(t)
	for name, probe := range map[string]func() error{
		FeatureTCX: ProbeTCX, FeatureRingPath: ProbeRingPath, FeatureDynptrCopy: ProbeDynptrCopy,
	} {
		err := probe()
		if err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
			t.Errorf("probe %s: %v (neither present nor proven missing)", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}
