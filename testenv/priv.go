// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// PrivilegedEnv is the variable that turns skips of privileged tests into
// failures. CI sets it so that nothing skips silently.
const PrivilegedEnv = "RESILIRE_TEST_PRIVILEGED"

// mustRunPrivileged reports whether privileged tests must run rather than skip.
func mustRunPrivileged() bool { return os.Getenv(PrivilegedEnv) == "1" }

// skipOrFail skips the test, or fails it when privileged tests are required.
func skipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if mustRunPrivileged() {
		tb.Fatalf("%s (%s=1 forbids skipping)", msg, PrivilegedEnv)
	}
	tb.Skip(msg)
}

// RequirePrivileged skips tb unless the process can load BPF programs and
// manage network devices (root, or CAP_BPF+CAP_NET_ADMIN+CAP_SYS_ADMIN).
// With RESILIRE_TEST_PRIVILEGED=1 it fails instead of skipping.
func RequirePrivileged(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		skipOrShort(tb)
		return
	}
	if !hasCaps(unix.CAP_BPF, unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN) {
		skipOrFail(tb, "needs root or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN")
	}
}

// skipOrShort skips privileged tests under -short: -short is the unit tier,
// and CI runs the privileged tier separately without it.
func skipOrShort(tb testing.TB) {
	tb.Helper()
	tb.Skip("privileged test skipped in -short mode")
}

// SkipIfNotSupported skips tb when err says the kernel lacks a feature, or
// fails when privileged tests are required.
func SkipIfNotSupported(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, ebpf.ErrNotSupported) {
		skipOrFail(tb, "kernel feature not supported: %v", err)
	}
}

// RequireKernel skips tb if the running kernel is older than version
// ("6.6"), naming feature in the message.
func RequireKernel(tb testing.TB, version, feature string) {
	tb.Helper()
	have, err := KernelVersion()
	if err != nil {
		tb.Fatalf("kernel version: %v", err)
	}
	want, err := parseVersion(version)
	if err != nil {
		tb.Fatalf("bad version %q: %v", version, err)
	}
	if have[0] < want[0] || (have[0] == want[0] && have[1] < want[1]) {
		skipOrFail(tb, "%s needs kernel %s, have %d.%d", feature, version, have[0], have[1])
	}
}

// KernelVersion returns the running kernel's major and minor version.
func KernelVersion() ([2]int, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return [2]int{}, err
	}
	return parseVersion(unix.ByteSliceToString(u.Release[:]))
}

func parseVersion(s string) ([2]int, error) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return [2]int{}, fmt.Errorf("version %q has no minor number", s)
	}
	var v [2]int
	for i := 0; i < 2; i++ {
		digits := strings.TrimFunc(parts[i], func(r rune) bool { return r < '0' || r > '9' })
		if j := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
			digits = digits[:j]
		}
		n, err := strconv.Atoi(digits)
		if err != nil {
			return [2]int{}, fmt.Errorf("version %q: %w", s, err)
		}
		v[i] = n
	}
	return v, nil
}

// hasCaps reports whether the effective capability set holds every cap.
func hasCaps(caps ...int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	for _, c := range caps {
		if data[c/32].Effective&(1<<(uint(c)%32)) == 0 {
			return false
		}
	}
	return true
}
