// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"bytes"
	"log/slog"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/testenv"
)

// openTap creates a tap in the current namespace and returns its queue
// (what QEMU reads: the frames transmitted on the tap).
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:], name)
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TAP | unix.IFF_NO_PI
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		unix.Close(fd)
		return nil, e
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	lk, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetUp(lk)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// The replay direction: frames the injector sends on a tap come out of
// the tap's queue, i.e. reach the guest, in order.
func TestInjectorReachesTapReader(t *testing.T) {
	testenv.RequirePrivileged(t)
	ns := testenv.NewNS(t, testenv.UniqueName("rll"))
	var tap *os.File
	if err := ns.Do(func() (err error) { tap, err = openTap("rlltap0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	frames := make([][]byte, 3)
	for i := range frames {
		f := make([]byte, 60)
		copy(f, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5}) // local experimental ethertype
		f[20] = byte(i + 1)
		frames[i] = f
	}
	var n int
	err := ns.Do(func() (err error) {
		n, err = Injector{Iface: "rlltap0", Logger: slog.New(slog.DiscardHandler)}.Inject(frames)
		return err
	})
	if err != nil || n != len(frames) {
		t.Fatalf("inject: %d sent, %v", n, err)
	}
	var got [][]byte
	buf := make([]byte, 2048)
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < len(frames) && time.Now().Before(deadline) {
		_ = tap.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		m, err := tap.Read(buf)
		if err != nil {
			continue
		}
		if m == 60 && bytes.Equal(buf[12:14], []byte{0x88, 0xb5}) {
			got = append(got, append([]byte(nil), buf[:m]...))
		}
	}
	if len(got) != len(frames) {
		t.Fatalf("tap reader got %d of %d injected frames", len(got), len(frames))
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d out of order or changed", i)
		}
	}
}
