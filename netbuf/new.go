// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/resilire/resilire/dataplane"
)

// tapPort is what New needs from a dataplane.Port besides the epoch.
type tapPort interface {
	port
	OpenTapQueue() (*os.File, error)
	TapQueues() (int, error)
	WaitTapUp(timeout time.Duration) error
	Injected() (uint64, error)
}

// tapUpTimeout bounds the wait for the tap to come up once its queues are
// open (the kernel activates its qdisc asynchronously, within a second).
const tapUpTimeout = 5 * time.Second

var _ tapPort = (*dataplane.Port)(nil)

// New starts holding p's output: it attaches Options.Queues queues (default:
// the port's TapQueues) to the injection tap and starts the reader on the
// capture ring (path A) or on the tap's first queue (path B). Call it in the
// port's network namespace, like dataplane.Attach: the tap is found by name.
func New(p *dataplane.Port, opts Options) (*Buffer, error) {
	return open(p, opts)
}

func open(p tapPort, opts Options) (_ *Buffer, err error) {
	n := opts.Queues
	if n <= 0 {
		// A writer per CPU at most: more writers than CPUs only share them
		// (measured: 4 queues on 2 CPUs were no faster than 2).
		if n, err = p.TapQueues(); err != nil || n <= 0 {
			n = defaultQueues(0)
		}
		n = min(n, runtime.NumCPU())
	}
	var queues []*tapQueue
	var steer io.Closer
	var src source
	defer func() {
		if err != nil {
			for _, q := range queues {
				q.close()
			}
			if steer != nil {
				steer.Close()
			}
			if src != nil {
				src.close()
			}
		}
	}()
	for i := 0; i < n; i++ {
		f, err := p.OpenTapQueue()
		if err != nil {
			return nil, fmt.Errorf("open tap queue %d: %w", i, err)
		}
		q, err := newTapQueue(f)
		if err != nil {
			return nil, err
		}
		queues = append(queues, q)
	}
	// Until the tap is operationally up, path B's redirected frames are
	// dropped (lost, never leaked) and released frames would be too.
	if err := p.WaitTapUp(tapUpTimeout); err != nil {
		return nil, err
	}
	if ring := p.CaptureRing(); ring != nil {
		rd, err := ringbuf.NewReader(ring)
		if err != nil {
			return nil, fmt.Errorf("capture ring reader: %w", err)
		}
		src = &ringSource{rd: rd}
	} else {
		if steer, err = queues[0].steerToFirstQueue(); err != nil {
			return nil, err
		}
		if src, err = newTapSource(queues[0]); err != nil {
			return nil, err
		}
	}
	fds := make([]int, len(queues))
	for i, q := range queues {
		fds[i] = q.fd
	}
	b, err := newBuffer(p, src, fds, opts)
	if err != nil {
		return nil, err
	}
	b.queue, b.steer = queues, steer
	b.loss = newLossWatch(p)
	b.wr.setPacer(newPacer(p.Injected))
	return b, nil
}
