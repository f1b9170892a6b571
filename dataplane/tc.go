// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Our cls_bpf filters sit at priority 1 (first to run) with this handle, so
// Detach deletes exactly them and nothing of the host's.
const (
	clsactPrio   = 1
	clsactHandle = 0x52 // 'R'
)

// hook is one program on one side of one interface.
type hook struct {
	name    string // program name, also the pin name suffix
	ifindex int
	ingress bool
}

func (h hook) tcxType() ebpf.AttachType {
	if h.ingress {
		return ebpf.AttachTCXIngress
	}
	return ebpf.AttachTCXEgress
}

func (h hook) clsactParent() uint32 {
	if h.ingress {
		return netlink.HANDLE_MIN_INGRESS
	}
	return netlink.HANDLE_MIN_EGRESS
}

func (h hook) String() string {
	dir := "egress"
	if h.ingress {
		dir = "ingress"
	}
	return fmt.Sprintf("%s at %s of ifindex %d", h.name, dir, h.ifindex)
}

// attachTCX attaches prog first in the tcx chain of h (before any program
// already there), so nothing can pass a frame before capture sees it.
func attachTCX(h hook, prog *ebpf.Program) (link.Link, error) {
	l, err := link.AttachTCX(link.TCXOptions{
		Interface: h.ifindex,
		Program:   prog,
		Attach:    h.tcxType(),
		Anchor:    link.Head(),
	})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("tcx %s: %w: %w", h, ErrKernelTooOld, err)
		}
		return nil, fmt.Errorf("tcx %s: %w", h, err)
	}
	return l, nil
}

// attachClsact adds a clsact qdisc if missing and a direct-action cls_bpf
// filter running prog at priority 1. The filter holds the program: it stays
// attached when the process exits.
func attachClsact(h hook, prog *ebpf.Program) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: h.ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc on ifindex %d: %w", h.ifindex, err)
	}
	filter := clsactFilter(h)
	filter.Fd = prog.FD()
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("cls_bpf %s: %w", h, err)
	}
	return nil
}

// detachClsact deletes our filter of h; a missing filter or interface is
// not an error (the interface may be gone with its VM).
func detachClsact(h hook) error {
	err := netlink.FilterDel(clsactFilter(h))
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete cls_bpf %s: %w", h, err)
	}
	return nil
}

func clsactFilter(h hook) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: h.ifindex,
			Parent:    h.clsactParent(),
			Handle:    netlink.MakeHandle(0, clsactHandle),
			Priority:  clsactPrio,
			Protocol:  unix.ETH_P_ALL,
		},
		Name:         "resilire_" + h.name,
		DirectAction: true,
	}
}

// clsactAttached reports whether our filter is on h, for Open and status.
func clsactAttached(h hook) (bool, error) {
	lk, err := netlink.LinkByIndex(h.ifindex)
	if err != nil {
		return false, err
	}
	filters, err := netlink.FilterList(lk, h.clsactParent())
	if err != nil {
		return false, err
	}
	for _, f := range filters {
		a := f.Attrs()
		if a.Priority == clsactPrio && a.Handle == netlink.MakeHandle(0, clsactHandle) {
			return true, nil
		}
	}
	return false, nil
}
