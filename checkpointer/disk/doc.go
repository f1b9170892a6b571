// SPDX-License-Identifier: Apache-2.0

// Package disk replicates a protected VM's disk together with its memory
// checkpoint.
//
// On the primary, the agent serves the guest's disk image over NBD on a
// Unix socket (Export; QEMU attaches it with its nbd blockdev under a
// virtio-blk device). A guest write goes to the local image at local speed
// (FLUSH and FUA are honoured with fdatasync) and marks its 4 KiB blocks
// dirty. At the epoch cut, with the guest paused (QEMU's stop drains every
// in-flight request first), Export.Cut takes the dirty blocks and copies
// their contents: the Delta that travels with checkpoint e.
//
// On the backup, Replica keeps a copy of the image changed only by
// committed checkpoints. The records of epoch e are streamed into a
// journal file while the checkpoint arrives; once the whole checkpoint
// has verified, Commit writes a commit record and fdatasyncs the journal,
// then Apply writes the extents in place and fdatasyncs the image. Open
// replays a committed journal and discards an uncommitted one, so a
// backup that dies at any point leaves the previous committed image or
// the new one whole, never a torn one.
//
// The NBD server is ours (the fixed-newstyle handshake with NBD_OPT_GO
// and simple replies; READ, WRITE, FLUSH, DISC and the FUA flag): no Go
// NBD library was reachable through the module proxy. Its request parser
// is fuzzed (FuzzServe).
package disk
