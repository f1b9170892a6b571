// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Pacing a release against the kernel's backlog.
//
// A released frame enters the host's receive path through a tap write: the
// tap's ingress program redirects it to the guest port's ingress, which
// queues it on the writing CPU's backlog (netif_rx). When softirq work
// falls behind (a slow or busy host; measured on Debian 12's 6.1 under
// TCG), a burst of a few thousand frames overruns that backlog
// (net.core.netdev_max_backlog, 1000 by default) and the kernel drops the
// tail: 4000 held datagrams released by 4 writers arrived 2400, with 1595
// backlog drops. So the writers keep the frames written but not yet seen by
// the guest port's capture program (its injected counter) below half the
// backlog, waiting briefly when they are ahead. A frame lost for another
// reason never shows up there; if the counter stops moving for paceStall,
// pacing stops waiting for the rest of that release (the loss is counted
// as Released minus Reinjected).
type pacer struct {
	injected func() (uint64, error)
	window   uint64
	base     uint64
	sent     atomic.Uint64
	off      atomic.Bool
}

const (
	// paceEvery is how many frames a writer writes between checks.
	paceEvery = 32
	// paceStall ends the waiting when the port sees nothing for this long.
	paceStall = 20 * time.Millisecond
	// pacePoll is the sleep between two looks at the counter.
	pacePoll = 20 * time.Microsecond
)

// newPacer paces against injected (the port's counter); nil: no pacing.
func newPacer(injected func() (uint64, error)) *pacer {
	if injected == nil {
		return nil
	}
	return &pacer{injected: injected, window: backlogWindow()}
}

// backlogWindow is half of net.core.netdev_max_backlog (500 if unreadable).
func backlogWindow() uint64 {
	b, err := os.ReadFile("/proc/sys/net/core/netdev_max_backlog")
	if err != nil {
		return 500
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 2 {
		return 500
	}
	return n / 2
}

// start begins a release: frames are counted from here.
func (p *pacer) start() {
	if p == nil {
		return
	}
	p.sent.Store(0)
	n, err := p.injected()
	p.base = n
	p.off.Store(err != nil)
}

// wrote counts one written frame and, every paceEvery of a writer's frames
// (mine counts the writer's own), waits while the port is too far behind.
func (p *pacer) wrote(mine uint64) {
	if p == nil {
		return
	}
	p.sent.Add(1)
	if mine%paceEvery != 0 || p.off.Load() {
		return
	}
	deadline, last := time.Now().Add(paceStall), uint64(0)
	for {
		n, err := p.injected()
		if err != nil {
			p.off.Store(true)
			return
		}
		var seen uint64
		if n > p.base {
			seen = n - p.base
		}
		if p.sent.Load() <= seen+p.window {
			return
		}
		if seen != last {
			last, deadline = seen, time.Now().Add(paceStall)
		}
		if time.Now().After(deadline) {
			p.off.Store(true)
			return
		}
		time.Sleep(pacePoll)
	}
}
