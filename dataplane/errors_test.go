// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestAttachErrors: each failure names what to do.
func TestAttachErrors(t *testing.T) {
	e := newRigEnv(t, Options{})
	try := func(opts Options) error {
		opts.PinRoot = e.pinRoot
		var err error
		if herr := e.rig.Host.Do(func() error { _, err = Attach(opts); return nil }); herr != nil {
			t.Fatal(herr)
		}
		return err
	}
	e.inHost(func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "rdpdum0"}, PeerName: "rdpdum1"})
	})
	stale := filepath.Join(e.pinRoot, tmpPrefix+"stale")
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		opts Options
		want error
		text string
	}{
		{Options{Name: "rdp-x", Port: "rdpnothere"}, ErrPortNotFound, "rdpnothere"},
		{Options{Name: "rdp-x", Port: "rdpdum0"}, ErrNotBridgePort, "iface rdpdum0 is not a bridge port"},
		{Options{Name: e.port.Name(), Port: e.rig.Port}, ErrAttached, "detach first"},
	}
	for _, c := range cases {
		err := try(c.opts)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("attach %+v: %v, want %v mentioning %q", c.opts, err, c.want, c.text)
		}
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp dir of an interrupted attach survived: %v", err)
	}
	if _, err := Open("rdp-none", e.pinRoot, nil); !errors.Is(err, ErrNotAttached) {
		t.Errorf("open missing: %v", err)
	}
	ents, err := os.ReadDir(e.pinRoot)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, ent := range ents {
		if ent.IsDir() {
			dirs = append(dirs, ent.Name())
		}
	}
	if !slices.Equal(dirs, []string{e.port.Name()}) {
		t.Errorf("pin root holds %v after failed attaches, want only %s", dirs, e.port.Name())
	}
}

// TestOpenIncompatible: Open refuses pinned programs that differ from this
// build; status still reads them and DetachPinned still removes them.
func TestOpenIncompatible(t *testing.T) {
	e := newRigEnv(t, Options{Path: PathRing})
	name, dir := e.port.Name(), e.port.PinDir()
	if err := e.port.Close(); err != nil {
		t.Fatal(err)
	}
	e.port = nil
	other, err := loadObjects(PathRedirect, 4096, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.close()
	pin := filepath.Join(dir, pinProgPrefix+progCapture)
	if err := os.Remove(pin); err != nil {
		t.Fatal(err)
	}
	if err := other.progs[progCapture].Pin(pin); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name, e.pinRoot, nil); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Open with a foreign program: %v, want ErrIncompatible", err)
	}
	s, err := ReadStatus(name, e.pinRoot)
	if err != nil || s.Compatible || s.Mode != ModeBuffer || s.Port != e.rig.Port {
		t.Fatalf("status %+v, err %v", s, err)
	}
	e.inHost(func() error { return DetachPinned(name, e.pinRoot, nil) })
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir left: %v", err)
	}
}

// TestAttachWithoutCaps: a thread without the BPF and network capabilities
// gets ErrPermission naming them, and nothing is left behind.
func TestAttachWithoutCaps(t *testing.T) {
	e := newRigEnv(t, Options{})
	var err error
	e.inHost(func() error {
		restore, cerr := dropCaps(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN)
		if cerr != nil {
			return cerr
		}
		_, err = Attach(Options{Name: "rdp-nocaps", Port: e.rig.Port, PinRoot: e.pinRoot})
		return restore()
	})
	if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "CAP_BPF") || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Fatalf("attach without caps: %v, want ErrPermission naming CAP_BPF and CAP_NET_ADMIN", err)
	}
	if _, serr := os.Stat(filepath.Join(e.pinRoot, "rdp-nocaps")); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("pins left after a refused attach: %v", serr)
	}
}

// dropCaps clears caps from the calling thread's effective set (they stay
// permitted); the returned function raises them again.
func dropCaps(caps ...int) (func() error, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var orig [2]unix.CapUserData
	if err := unix.Capget(&hdr, &orig[0]); err != nil {
		return nil, err
	}
	dropped := orig
	for _, c := range caps {
		dropped[c/32].Effective &^= 1 << (uint(c) % 32)
	}
	if err := unix.Capset(&hdr, &dropped[0]); err != nil {
		return nil, err
	}
	return func() error { return unix.Capset(&hdr, &orig[0]) }, nil
}
