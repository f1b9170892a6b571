// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"errors"
	"fmt"
	"strings"
)

// Defaults for Config.
const (
	DefaultBinary    = "qemu-system-x86_64"
	DefaultMemoryMiB = 128 // 64 MiB does not boot the cloud kernel; 80 is the minimum
	DefaultMAC       = "52:54:00:52:51:01"
	DefaultAppend    = "console=ttyS0 quiet panic=-1"
)

// Config is one QEMU process. The primary and its standby must share every
// machine field (accelerator, memory size, kernel, initrd, command line,
// MAC): the standby restores device state saved by the primary, and ROM
// blocks travel in that state. Only the per-host fields differ: Name,
// MemPath, Tap, QMPPath, SerialPath and Netns. Use ForHost to derive one.
type Config struct {
	Name      string // -name, and the VM name in logs
	Binary    string // default qemu-system-x86_64
	KVM       bool   // -accel kvm -cpu host instead of -accel tcg -cpu max
	MemoryMiB int    // default 128
	// MemPath is the guest RAM file, on /dev/shm (share=on). The primary's
	// is created by QEMU; a standby's must be the replica's file.
	MemPath string
	Kernel  string
	Initrd  string
	Append  string // kernel command line, default DefaultAppend
	// Tap is the guest port: an existing tap device (in Netns) that QEMU
	// attaches virtio-net to. Empty means no NIC.
	Tap        string
	MAC        string // default DefaultMAC
	QMPPath    string // QMP unix socket
	SerialPath string // guest console (ttyS0) is written to this file
	// Netns runs QEMU inside this named network namespace (ip netns exec),
	// as on the host that owns Tap.
	Netns string
	// KillWithParent sends QEMU SIGKILL when the process that started it
	// dies. Tests want it; an agent must not (its crash must leave the
	// guest running, held by the data plane).
	KillWithParent bool
	// DiskSocket, if set, is the agent's NBD export of the guest's disk
	// (disk.Export): a virtio-blk device the guest sees as /dev/vda.
	DiskSocket string
	Extra      []string // appended to the command line
}

// ForHost returns a copy of c for another host: same machine, other
// per-host fields.
func (c Config) ForHost(name, memPath, tap, qmpPath, serialPath, netns string) Config {
	c.Name, c.MemPath, c.Tap, c.QMPPath, c.SerialPath, c.Netns = name, memPath, tap, qmpPath, serialPath, netns
	return c
}

func (c *Config) defaults() {
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.MAC == "" {
		c.MAC = DefaultMAC
	}
	if c.Append == "" {
		c.Append = DefaultAppend
	}
}

func (c *Config) validate() error {
	if c.Name == "" || c.MemPath == "" || c.Kernel == "" || c.QMPPath == "" || c.SerialPath == "" {
		return errors.New("qemu config: Name, MemPath, Kernel, QMPPath and SerialPath are required")
	}
	if c.MemoryMiB < 80 {
		return fmt.Errorf("qemu config: %d MiB of RAM: the guest needs at least 80", c.MemoryMiB)
	}
	// QEMU option values are comma-separated; refuse paths it would split.
	for _, v := range []string{c.Name, c.MemPath, c.Kernel, c.Initrd, c.Tap, c.QMPPath, c.SerialPath, c.MAC, c.DiskSocket} {
		if strings.Contains(v, ",") {
			return fmt.Errorf("qemu config: %q contains a comma", v)
		}
	}
	return nil
}

// PIDPath is QEMU's pid file, beside the QMP socket: Attach reads it, and
// a fencing command can kill the process through it.
func (c Config) PIDPath() string { return c.QMPPath + ".pid" }

// MemoryBytes is the guest RAM size.
func (c Config) MemoryBytes() uint64 { return uint64(c.MemoryMiB) << 20 }

// Args returns QEMU's arguments (without the binary). A standby adds
// "-incoming defer -S": it waits, paused, for migrate-incoming.
func (c Config) Args(standby bool) []string {
	c.defaults()
	accel, cpu := "tcg", "max"
	if c.KVM {
		accel, cpu = "kvm", "host"
	}
	mem := fmt.Sprintf("%dM", c.MemoryMiB)
	a := []string{
		"-name", c.Name,
		"-accel", accel,
		"-machine", "pc,memory-backend=mem",
		"-cpu", cpu, "-smp", "1", "-m", mem,
		"-object", fmt.Sprintf("memory-backend-file,id=mem,size=%s,mem-path=%s,share=on", mem, c.MemPath),
		"-nodefaults", "-display", "none",
		"-serial", "file:" + c.SerialPath,
		"-kernel", c.Kernel,
	}
	if c.Initrd != "" {
		a = append(a, "-initrd", c.Initrd)
	}
	a = append(a, "-append", c.Append)
	if c.Tap != "" {
		a = append(a,
			"-netdev", "tap,id=n0,ifname="+c.Tap+",script=no,downscript=no",
			// romfile= keeps the NIC's option ROM out of the machine.
			"-device", "virtio-net-pci,netdev=n0,mac="+c.MAC+",romfile=")
	}
	a = append(a, c.diskArgs()...)
	a = append(a, "-qmp", "unix:"+c.QMPPath+",server=on,wait=off", "-pidfile", c.PIDPath(), "-no-reboot")
	if standby {
		a = append(a, "-incoming", "defer", "-S")
	}
	return append(a, c.Extra...)
}
