// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"bytes"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/testenv"
)

// openTap creates a tap the way the data plane does (openTun: QEMU opens
// its guest taps alike, with a virtio-net header) in the current namespace,
// brings it up and returns its queue: what QEMU reads.
func openTap(name string) (*os.File, error) {
	f, err := openTun(name)
	if err != nil {
		return nil, err
	}
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
		if err != nil || m < VnetHdrLen {
			continue
		}
		f := buf[VnetHdrLen:m] // after the virtio-net header
		if len(f) == 60 && bytes.Equal(f[12:14], []byte{0x88, 0xb5}) {
			got = append(got, append([]byte(nil), f...))
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
