// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"slices"
	"strings"
	"testing"
)

func testConfig() Config {
	return Config{Name: "p", MemPath: "/dev/shm/x.ram", Kernel: "/k", Initrd: "/i", Tap: "tap0",
		QMPPath: "/run/p.qmp", SerialPath: "/run/p.serial"}
}

func TestArgs(t *testing.T) {
	c := testConfig()
	got := strings.Join(c.Args(false), " ")
	for _, want := range []string{
		"-accel tcg", "-cpu max", "-m 128M", "-machine pc,memory-backend=mem",
		"memory-backend-file,id=mem,size=128M,mem-path=/dev/shm/x.ram,share=on",
		"-serial file:/run/p.serial", "-kernel /k", "-initrd /i", "-append " + DefaultAppend,
		"tap,id=n0,ifname=tap0,script=no,downscript=no", "mac=" + DefaultMAC + ",romfile=",
		"-qmp unix:/run/p.qmp,server=on,wait=off", "-no-reboot",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "-incoming") {
		t.Errorf("primary args have -incoming: %s", got)
	}
	sb := c.Args(true)
	if !slices.Equal(sb[len(sb)-3:], []string{"-incoming", "defer", "-S"}) {
		t.Errorf("standby args end %v", sb[len(sb)-3:])
	}
	c.KVM = true
	if got := strings.Join(c.Args(false), " "); !strings.Contains(got, "-accel kvm") || !strings.Contains(got, "-cpu host") {
		t.Errorf("kvm args: %s", got)
	}
}

// TestForHostKeepsMachine checks that a standby derived with ForHost has
// the primary's command line except for the per-host fields.
func TestForHostKeepsMachine(t *testing.T) {
	p := testConfig()
	p.Append = "console=ttyS0 guest.ip=10.77.0.10/24"
	s := p.ForHost("s", "/dev/shm/y.ram", "tap1", "/run/s.qmp", "/run/s.serial", "host-b")
	pa, sa := p.Args(false), s.Args(true)
	sa = sa[:len(sa)-3]
	if len(pa) != len(sa) {
		t.Fatalf("lengths differ:\n%v\n%v", pa, sa)
	}
	var diff []string
	for i := range pa {
		if pa[i] != sa[i] {
			diff = append(diff, pa[i]+" -> "+sa[i])
		}
	}
	if len(diff) != 6 {
		t.Errorf("want exactly name, RAM, serial, netdev, qmp and pid file to differ, got %d: %v", len(diff), diff)
	}
}

func TestValidate(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no name":   func(c *Config) { c.Name = "" },
		"no memory": func(c *Config) { c.MemPath = "" },
		"64M":       func(c *Config) { c.MemoryMiB = 64 },
		"comma":     func(c *Config) { c.MemPath = "/dev/shm/a,b" },
	} {
		c := testConfig()
		mod(&c)
		c.defaults()
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := testConfig()
	c.defaults()
	if err := c.validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
