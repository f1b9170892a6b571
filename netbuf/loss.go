// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// lossWatch reads the two kernel counters that show held frames lost
// outside netbuf, so that no such loss is silent:
//
//   - the injection tap's tx_dropped: on path B the capture program
//     redirects held frames to the tap, and the tap drops them when its
//     queue (txqueuelen frames) is full because the reader fell behind;
//   - the port's injected counter: every released frame that reaches the
//     guest port's capture program counts there, so Released minus
//     Reinjected were lost between tap and port (for example a port that
//     went down), are still in flight, or met ModeBlock.
//
// Both are read relative to their values at New. It works best effort: a
// counter it cannot read stays 0.
type lossWatch struct {
	nl       *netlink.Handle // opened in the port's netns, usable from any thread
	tapIndex int
	tapBase  uint64
	injected func() (uint64, error)
	injBase  uint64
}

// newLossWatch snapshots the counters of p. Call it in the port's netns.
func newLossWatch(p tapPort) *lossWatch {
	w := &lossWatch{injected: p.Injected}
	if n, err := w.injected(); err == nil {
		w.injBase = n
	}
	// Only the route family: NewHandle() without families opens one socket
	// per family and fails (leaking the ones it opened) on a kernel
	// without, say, xfrm (Debian's 6.1 cloud kernel).
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return w
	}
	lk, err := nl.LinkByName(p.TapName())
	if err != nil {
		nl.Close()
		return w
	}
	w.nl, w.tapIndex = nl, lk.Attrs().Index
	if st := lk.Attrs().Statistics; st != nil {
		w.tapBase = st.TxDropped
	}
	return w
}

// read returns the tap drops and the reinjected frames since New.
func (w *lossWatch) read() (tapDropped, reinjected uint64) {
	if w == nil {
		return 0, 0
	}
	if n, err := w.injected(); err == nil && n >= w.injBase {
		reinjected = n - w.injBase
	}
	if w.nl != nil {
		if lk, err := w.nl.LinkByIndex(w.tapIndex); err == nil && lk.Attrs().Statistics != nil {
			if d := lk.Attrs().Statistics.TxDropped; d >= w.tapBase {
				tapDropped = d - w.tapBase
			}
		}
	}
	return tapDropped, reinjected
}

func (w *lossWatch) close() {
	if w != nil && w.nl != nil {
		w.nl.Close()
	}
}
