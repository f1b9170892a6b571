// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"
)

// NS is a named network namespace made by a test (visible to
// `ip netns exec NAME` while the test runs).
type NS struct {
	Name   string
	handle netns.NsHandle
}

var nsSeq atomic.Uint32

// UniqueName returns prefix-<pid>-<n>, unique among concurrent test
// processes on this machine.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid()%100000, nsSeq.Add(1))
}

// NewNS creates the named network namespace, with IPv6 off (so every frame
// seen in a test is one the test caused) and lo up. It is deleted when tb
// ends.
func NewNS(tb testing.TB, name string) *NS {
	tb.Helper()
	var ns *NS
	err := onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if err != nil {
			return fmt.Errorf("create netns %s: %w", name, err)
		}
		ns = &NS{Name: name, handle: h}
		return netns.Set(orig)
	})
	if ns != nil {
		tb.Cleanup(func() {
			ns.handle.Close()
			if err := netns.DeleteNamed(name); err != nil {
				tb.Errorf("delete netns %s: %v", name, err)
			}
		})
	}
	if err != nil {
		tb.Fatal(err)
	}
	err = ns.Do(func() error {
		for _, knob := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+knob+"/disable_ipv6", []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return linkUp("lo")
	})
	if err != nil {
		tb.Fatalf("set up netns %s: %v", name, err)
	}
	return ns
}

// Handle returns the namespace's fd handle (valid until the test ends).
func (n *NS) Handle() netns.NsHandle { return n.handle }

// Do runs fn on an OS thread switched into n, then switches it back. If
// switching back fails, the thread is never reused (it exits with its
// goroutine still locked).
func (n *NS) Do(fn func() error) error { return doIn(n.handle, n.Name, fn) }

// doIn runs fn on an OS thread switched into the namespace h (named name
// in errors) and back.
func doIn(h netns.NsHandle, name string, fn func() error) error {
	return onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter netns %s: %w", name, err)
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			return errors.Join(ferr, errThreadTainted)
		}
		return ferr
	})
}

var errThreadTainted = errors.New("could not restore the thread's netns")

// onLockedThread runs fn on a fresh goroutine locked to its OS thread. The
// thread is released only if fn left it in its original netns.
func onLockedThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		if !errors.Is(err, errThreadTainted) {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// RigPrefix makes a rig prefix (for NewRig, hacluster) unique to this test
// process: base (at most 4 characters) and 4 hex digits of the pid. A rig
// removes leftovers of its own prefix first, so two runs on one machine
// sharing a fixed prefix would tear down each other's namespaces.
func RigPrefix(base string) string {
	return fmt.Sprintf("%.4s%04x", base, os.Getpid()&0xffff)
}
