// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"os"
	"strings"
	"testing"
)

func TestUnseenWritersRefused(t *testing.T) {
	for _, c := range []struct {
		extra []string
		want  string // substring of the reason, "" = accepted
	}{
		{nil, ""},
		{[]string{"-device", "virtio-rng-pci"}, ""},
		{[]string{"-chardev", "socket,id=c,path=/s", "-netdev", "vhost-user,id=n1,chardev=c"}, "vhost-user"},
		{[]string{"-device", "vhost-user-fs-pci,chardev=c,tag=fs"}, "vhost-user"},
		{[]string{"-device", "virtio-balloon-pci"}, "balloon"},
		{[]string{"-object", "memory-backend-file,id=m2,discard-data=on"}, "discard"},
		{[]string{"-netdev", "tap,id=n1,vhost=on"}, "vhost"},
	} {
		got := unseenWriters(Config{Extra: c.extra})
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%q: reason %q, want one naming %q", c.extra, got, c.want)
		}
		if c.want != "" {
			// The probe reports it before touching the kernel or any process.
			if info := ProbeTracking(Config{Extra: c.extra}); info.Mechanism != TrackHash || !strings.Contains(info.Reason, c.want) {
				t.Errorf("%q: probe says %+v", c.extra, info)
			}
		}
	}
}

func TestParseTracking(t *testing.T) {
	for in, want := range map[string]string{"": TrackAuto, "auto": TrackAuto, "uffd-wp": TrackUffd, "hash": TrackHash} {
		if got, err := ParseTracking(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	if _, err := ParseTracking("softdirty"); err == nil {
		t.Error("softdirty accepted")
	}
}

func TestSeccompRefused(t *testing.T) {
	if info := ProbeTracking(Config{Extra: []string{"-sandbox", "on"}}); info.Mechanism != TrackHash || !strings.Contains(info.Reason, "seccomp") {
		t.Errorf("-sandbox on: probe says %+v", info)
	}
	if err := checkNoSeccomp(os.Getpid()); err != nil { // go test runs without a filter
		t.Errorf("this process: %v", err)
	}
}
