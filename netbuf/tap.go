// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// TUNSETOFFLOAD flags (include/uapi/linux/if_tun.h; not in x/sys/unix).
const (
	tunFCsum   = 0x01
	tunFTSO4   = 0x02
	tunFTSO6   = 0x04
	tunFTSOECN = 0x08
	tunFUSO4   = 0x20
	tunFUSO6   = 0x40
)

// tapFlags are the flags the data plane created the injection tap with;
// attaching a queue must repeat them exactly.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_MULTI_QUEUE

// ErrVnetHdrSize means the tap's virtio-net header is not the 10-byte
// struct virtio_net_hdr that netbuf writes.
var ErrVnetHdrSize = errors.New("unexpected virtio-net header size on tap")

// tapQueue is one queue of the multi-queue injection tap.
type tapQueue struct {
	f    *os.File
	fd   int
	once sync.Once
	err  error
}

// openTapQueue attaches a new queue to the persistent tap name. It must run
// in the tap's network namespace. The fd is non-blocking and registered
// with the Go poller (path B reads it through f.SyscallConn).
func openTapQueue(name string) (*tapQueue, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	ifr.SetUint16(tapFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach queue to tap %s (is it a multi-queue vnet-hdr tap in this netns?): %w", name, err)
	}
	sz, err := unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ)
	if err != nil || sz != VnetHdrLen {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w: %d (%v)", name, ErrVnetHdrSize, sz, err)
	}
	return &tapQueue{f: os.NewFile(uintptr(fd), "tap:"+name), fd: fd}, nil
}

// close is idempotent: path B's reader and Buffer.Close both close queue 0.
func (q *tapQueue) close() error {
	q.once.Do(func() { q.err = q.f.Close() })
	return q.err
}

// setOffload lets the kernel hand path B's tap whole GSO super-packets and
// CHECKSUM_PARTIAL frames with a virtio-net header; without it every GSO
// skb is segmented before the tap (measured: 6x slower).
func (q *tapQueue) setOffload() error {
	flags := tunFCsum | tunFTSO4 | tunFTSO6 | tunFTSOECN | tunFUSO4 | tunFUSO6
	if err := unix.IoctlSetInt(q.fd, unix.TUNSETOFFLOAD, flags); err != nil {
		// Kernels before 6.2 lack USO: retry without it.
		if err2 := unix.IoctlSetInt(q.fd, unix.TUNSETOFFLOAD, flags&^(tunFUSO4|tunFUSO6)); err2 != nil {
			return fmt.Errorf("tap TUNSETOFFLOAD: %w", err)
		}
	}
	return nil
}

// steerToFirstQueue installs a steering program that sends every frame the
// tap transmits to queue 0, so path B reads all captured frames, in their
// order, from one fd whatever the number of release queues.
func (q *tapQueue) steerToFirstQueue() (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "rsl_tap_steer",
		Type:    ebpf.SocketFilter,
		License: "Apache-2.0",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0), // queue index 0
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load tap steering program: %w", err)
	}
	if err := unix.IoctlSetPointerInt(q.fd, unix.TUNSETSTEERINGEBPF, prog.FD()); err != nil {
		prog.Close()
		return nil, fmt.Errorf("tap TUNSETSTEERINGEBPF: %w", err)
	}
	return prog, nil
}
