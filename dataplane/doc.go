// SPDX-License-Identifier: Apache-2.0

// Package dataplane loads, attaches and pins Resilire's tc programs on a
// guest's bridge port, and drives them: the port mode (pass, buffer, block),
// the epoch stamped into every captured frame, and the counters.
//
// Guest output arrives as ingress on the guest port. In buffer mode the
// capture program holds it: path A copies each frame into a BPF ring buffer
// (read by package netbuf) and drops the original; path B, for kernels
// without bpf_cast_to_kern_ctx or ring buffers, redirects the frame to the
// egress of an injection tap that netbuf reads. Released frames are written
// into that tap; tap_ingress marks them and redirects them to the port's
// ingress, where capture passes them on the mark, so the bridge learns the
// guest's MAC on the guest port.
//
// Everything is pinned under <PinRoot>/<vm>/ so a crash of the daemon leaves
// the programs attached and output held (fail closed). Open re-opens pinned
// state after a restart; Detach removes it.
//
// Network-namespace rule: Attach, Detach and opening a tap queue act on the
// network namespace of the calling OS thread, which must be the port's.
package dataplane
