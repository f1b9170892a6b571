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

// newTapQueue wraps a queue fd opened by dataplane.Port.OpenTapQueue
// (non-blocking, registered with the Go poller, offloads set) and checks
// that its virtio-net header is the one netbuf writes.
func newTapQueue(f *os.File) (*tapQueue, error) {
	q := &tapQueue{f: f}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tap queue: %w", err)
	}
	var sz int
	cerr := rc.Control(func(fd uintptr) {
		q.fd = int(fd)
		sz, err = unix.IoctlGetInt(int(fd), unix.TUNGETVNETHDRSZ)
	})
	if err = errors.Join(cerr, err); err != nil || sz != VnetHdrLen {
		f.Close()
		return nil, fmt.Errorf("%s: %w: %d (%v)", f.Name(), ErrVnetHdrSize, sz, err)
	}
	return q, nil
}

// close is idempotent: path B's reader and Buffer.Close both close queue 0.
func (q *tapQueue) close() error {
	q.once.Do(func() { q.err = q.f.Close() })
	return q.err
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
