// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/resilire/resilire/testenv/guest/kv"
	"github.com/resilire/resilire/testenv/guest/xbank"
	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		fmt.Printf("INIT FAILED: %v\n", err)
		unix.Sync()
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		select {}
	}
}

func run() error {
	start := time.Now()
	if err := mountAll(); err != nil {
		return err
	}
	if err := loadModules("/modules.order", "/lib/modules"); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read cmdline: %w", err)
	}
	disk, db, err := startDisk(string(cmdline))
	if err != nil {
		return err
	}
	addr, err := guestIP(string(cmdline))
	if err != nil && disk {
		fmt.Println("init: disk workload only, no network")
		select {}
	}
	if err != nil {
		return err
	}
	if err := setUp("lo", nil); err != nil {
		return err
	}
	if err := waitLink("eth0", 10*time.Second); err != nil {
		return err
	}
	if err := setUp("eth0", addr); err != nil {
		return err
	}
	store := kv.NewStore()
	store.Dirtier = kv.NewDirtier()
	go store.Dirtier.Run(context.Background())
	if err := serveBank(db); err != nil {
		return err
	}
	if err := startXbank(string(cmdline)); err != nil {
		return err
	}
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", kv.Port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Printf("init: eth0 %s, setup %v\n%s\n", addr, time.Since(start).Round(time.Millisecond), kv.ReadyLine)
	return kv.Serve(l, store)
}

func mountAll() error {
	for _, m := range []struct{ fstype, dir string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	return nil
}

// loadModules loads, in order, every module named in the order file.
func loadModules(orderFile, dir string) error {
	b, err := os.ReadFile(orderFile)
	if err != nil {
		return fmt.Errorf("read module order: %w", err)
	}
	for _, name := range strings.Fields(string(b)) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("open module: %w", err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err == unix.ENODEV && strings.HasPrefix(name, "xen-") {
			continue // a Xen front end outside Xen
		}
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return nil
}

func waitLink(name string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat("/sys/class/net/" + name); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s after %v", name, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// setUp assigns addr (if non-nil) and brings the interface up, with plain
// ioctls: no netlink library or busybox in the guest.
func setUp(name string, addr *net.IPNet) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("ifreq %s: %w", name, err)
	}
	if addr != nil {
		if err := ifr.SetInet4Addr(addr.IP.To4()); err != nil {
			return fmt.Errorf("%s address: %w", name, err)
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
			return fmt.Errorf("SIOCSIFADDR %s: %w", name, err)
		}
		if err := ifr.SetInet4Addr(net.IP(addr.Mask).To4()); err != nil {
			return fmt.Errorf("%s netmask: %w", name, err)
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
			return fmt.Errorf("SIOCSIFNETMASK %s: %w", name, err)
		}
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS %s: %w", name, err)
	}
	return nil
}

// guestIP returns the address given as guest.ip=A.B.C.D/N on the command line.
func guestIP(cmdline string) (*net.IPNet, error) {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "guest.ip="); ok {
			ip, n, err := net.ParseCIDR(v)
			if err != nil || ip.To4() == nil {
				return nil, fmt.Errorf("guest.ip=%q: want an IPv4 CIDR", v)
			}
			n.IP = ip.To4()
			return n, nil
		}
	}
	return nil, fmt.Errorf("no guest.ip= on the kernel command line")
}

// startXbank starts the group workload when the command line asks for it
// (guest.xbank=): transfers to the other guests every 20 ms.
func startXbank(cmdline string) error {
	cfg, ok, err := xbank.ParseCmdline(cmdline)
	if !ok || err != nil {
		return err
	}
	ready, errc := make(chan struct{}), make(chan error, 1)
	go func() {
		err := xbank.NewNode(cfg, 20*time.Millisecond).Run(context.Background(), func() { close(ready) })
		fmt.Printf("XBANK STOPPED: %v\n", err)
		errc <- err
	}()
	select {
	case <-ready:
		fmt.Println(xbank.ReadyLine)
		return nil
	case err := <-errc:
		return fmt.Errorf("xbank: %w", err)
	}
}
