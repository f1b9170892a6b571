// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"errors"
	"fmt"
	"os"
	"testing"

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
		return
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

// isNoDevice reports whether err is ENODEV.
func isNoDevice(err error) bool { return errors.Is(err, unix.ENODEV) }

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
