// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TapFlags are the flags of the injection tap; every queue must be opened
// with exactly these.
const TapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_MULTI_QUEUE

// VnetHdrLen is the virtio-net header length on the tap (the kernel
// default, struct virtio_net_hdr without num_buffers).
const VnetHdrLen = 10

// tapTxQueueLen bounds what path B holds in the tap's queue before the tap
// drops (counted only as tap TX drops).
const tapTxQueueLen = 10000

// Offloads the tap accepts so GSO super-packets and partial checksums reach
// netbuf whole (path B); USO needs kernel >= 6.2, so it is tried first.
const (
	tapOffloads    = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	tapOffloadsUSO = tapOffloads | unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// openTun opens /dev/net/tun and binds it to the tap name (creating it if
// missing) in the calling thread's network namespace.
func openTun(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("open /dev/net/tun: %w: %w", ErrPermission, err)
		}
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap name %q: %w", name, err)
	}
	ifr.SetUint16(TapFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}

// OpenTapQueue opens one queue of the injection tap for reading and writing
// frames with a VnetHdrLen-byte virtio-net header. It sets the offloads so
// the kernel hands GSO frames over whole. Call it in the tap's netns.
func OpenTapQueue(name string) (*os.File, error) {
	f, err := openTun(name)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			err = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, tapOffloadsUSO)
			if err != nil {
				err = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, tapOffloads)
			}
		})
		err = errors.Join(err, cerr)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("TUNSETOFFLOAD %s: %w", name, err)
	}
	return f, nil
}

// createTap creates the persistent injection tap, not bridged, without an
// address, with IPv6 off (no router solicitations or DAD frames), and up.
// It returns its ifindex.
func createTap(name string) (_ int, err error) {
	f, err := openTun(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	if cerr := rc.Control(func(fd uintptr) { err = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, 1) }); cerr != nil {
		return 0, cerr
	}
	if err != nil {
		return 0, fmt.Errorf("TUNSETPERSIST %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			_ = deleteTap(name)
		}
	}()
	if err := disableIPv6(name); err != nil {
		return 0, err
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("find tap %s: %w", name, err)
	}
	if err := netlink.LinkSetTxQLen(link, tapTxQueueLen); err != nil {
		return 0, fmt.Errorf("tap %s txqueuelen: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return 0, fmt.Errorf("tap %s up: %w", name, err)
	}
	return link.Attrs().Index, nil
}

// disableIPv6 turns IPv6 off on iface; a kernel without IPv6 is fine.
func disableIPv6(iface string) error {
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+iface+"/disable_ipv6", []byte("1"), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("disable ipv6 on %s: %w", iface, err)
	}
	return nil
}

// deleteTap removes the persistent tap; a missing tap is not an error.
func deleteTap(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find tap %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	return nil
}

// WaitTapUp waits until the injection tap is operationally up. A tap has
// no carrier until a queue is open, and after carrier-on the kernel
// activates its qdisc asynchronously (linkwatch, up to a second): until
// then path B's redirected frames are dropped (held output lost, never
// leaked). netbuf calls this after opening its queues. Call it in the
// port's netns.
func (p *Port) WaitTapUp(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		lk, err := netlink.LinkByName(p.tapName)
		if err != nil {
			return fmt.Errorf("tap %s: %w", p.tapName, err)
		}
		if lk.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tap %s still %s after %v (is a queue open?)", p.tapName, lk.Attrs().OperState, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
