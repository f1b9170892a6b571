// SPDX-License-Identifier: Apache-2.0

package dataplane

import "errors"

// Errors returned (wrapped) by this package. Each message says what to do.
var (
	// ErrPortNotFound: no interface with the given name in this netns.
	ErrPortNotFound = errors.New("port not found: check the interface name (ip link) and run in the port's network namespace")
	// ErrNotBridgePort: the interface exists but is not enslaved to a bridge.
	ErrNotBridgePort = errors.New("add it to the guest's bridge first (ip link set IFACE master BRIDGE)")
	// ErrNoBTF: the kernel exposes no BTF, which path A needs for CO-RE.
	ErrNoBTF = errors.New("kernel has no BTF (/sys/kernel/btf/vmlinux): use a kernel built with CONFIG_DEBUG_INFO_BTF=y or force --path redirect")
	// ErrPermission: the process may not load BPF programs or manage links.
	ErrPermission = errors.New("not permitted: run as root or grant CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_ADMIN")
	// ErrKernelTooOld: a required kernel feature is missing; the error
	// wrapping it names the feature and also wraps ebpf.ErrNotSupported.
	ErrKernelTooOld = errors.New("kernel lacks a feature: path ring needs >= 6.2 (kfunc bpf_cast_to_kern_ctx, ring buffer), the input log >= 5.8 (--input-log-kind portable below 6.2), path redirect >= 4.19 with clsact, tcx >= 6.6; pick another --path/--attach/--input-log-kind or upgrade")
	// ErrAttached: pinned state for this VM already exists.
	ErrAttached = errors.New("already attached: use Open, or detach first (resilire dataplane detach --vm NAME)")
	// ErrNotAttached: no pinned state for this VM.
	ErrNotAttached = errors.New("not attached: attach first (resilire dataplane attach --vm NAME --port IFACE)")
	// ErrIncompatible: the pinned programs differ from the ones in this binary.
	ErrIncompatible = errors.New("pinned programs differ from this build: detach and attach again (this briefly stops buffering)")
	// ErrNoBPFFS: the pin root is not on a bpf filesystem.
	ErrNoBPFFS = errors.New("pin root is not on bpffs: mount -t bpf bpf /sys/fs/bpf")
	// ErrClosed: the Port was closed; Open it again.
	ErrClosed = errors.New("port closed: open it again (dataplane.Open)")
	// ErrBadRecord: a ring record is malformed (a bug, or a foreign ring).
	ErrBadRecord = errors.New("malformed ring record")
	// ErrNoInputLog: the port was attached without the input log.
	ErrNoInputLog = errors.New("no input log")
	// ErrNoGroup: the port was attached without the guest-egress program,
	// which a VDEchp group member needs to hold frames from a peer's later
	// round (else they would be delivered as orphans).
	ErrNoGroup = errors.New("not attached as a group member: detach and attach again with --group (or --input-log)")
)
