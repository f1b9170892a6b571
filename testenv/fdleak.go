// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

// RunCheckingFDs runs the tests of m and fails (exit status 1) if file
// descriptors opened during the run are still open at the end: the daemon
// is long-lived, so a leak per call adds up. Descriptors the Go runtime
// opens lazily (epoll, its wake-up eventfd or pipe) are ignored.
// Use it as: func TestMain(m *testing.M) { os.Exit(testenv.RunCheckingFDs(m)) }
func RunCheckingFDs(m *testing.M) int {
	before := openFDs()
	code := m.Run()
	var leaked []string
	for fd, target := range openFDs() {
		if _, ok := before[fd]; ok || runtimeFD(target) {
			continue
		}
		leaked = append(leaked, fmt.Sprintf("fd %s -> %s", fd, target))
	}
	if len(leaked) > 0 {
		sort.Strings(leaked)
		fmt.Fprintf(os.Stderr, "FAIL: %d file descriptors leaked:\n  %s\n", len(leaked), strings.Join(leaked, "\n  "))
		if code == 0 {
			code = 1
		}
	}
	return code
}

func openFDs() map[string]string {
	fds := map[string]string{}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fds
	}
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the fd ReadDir itself used, now closed
		}
		fds[e.Name()] = target
	}
	return fds
}

func runtimeFD(target string) bool {
	return target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]" ||
		strings.HasPrefix(target, "pipe:")
}
