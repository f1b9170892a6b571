// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// TestMain fails the run if the tests leak file descriptors: a holder is
// long-lived, and a leaked tap queue or ring reader would pin resources.
func TestMain(m *testing.M) {
	// Start the runtime's netpoller (its epoll and eventfd live forever).
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	before := openFDs()
	code := m.Run()
	if code == 0 {
		var leaked []string
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			leaked = nil
			for _, fd := range openFDs() {
				if !slices.Contains(before, fd) {
					leaked = append(leaked, fd)
				}
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaked file descriptors: %v\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// openFDs lists this process's fds with their targets.
func openFDs() []string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own fd, already closed
		}
		out = append(out, e.Name()+" -> "+target)
	}
	return out
}
