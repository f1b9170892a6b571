// SPDX-License-Identifier: Apache-2.0

// Package netbuf holds a protected VM's network output until the checkpoint
// that produced it is safe on the backup (Remus "output commit").
//
// Frames captured by the data plane (package dataplane) arrive stamped with
// the epoch during which the guest sent them. netbuf keeps them in
// per-epoch arenas bounded in bytes and, when the backup acknowledges
// checkpoint e, Release(e) writes every held frame of epochs <= e to the
// port's injection tap, in capture order, with a virtio-net header rebuilt
// from the capture record so GSO super-packets and partial checksums survive.
//
// The invariant every path keeps: a frame sent during epoch e leaves the host
// only after Release(e') with e' >= e. Overload drops frames (tail drop,
// counted); it never releases them early.
package netbuf
