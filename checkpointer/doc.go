// SPDX-License-Identifier: Apache-2.0

// Package checkpointer replicates a protected VM to a backup host: the epoch
// loop on the primary (pause, harvest, resume, encode, ship, wait for the
// ACK, release held output), the backup that applies each checkpoint
// atomically, heartbeats and failover. Hypervisors are reached through the
// Domain interface; the FGBI codec lives in the fgbi sub-package.
//
// # Primary (primary.go, epoch.go, pipeline.go, sync.go, session.go)
//
// Run connects to the backup, synchronises it (sync.go: iterative pre-copy
// while the guest runs, unless the backup still holds a committed
// checkpoint), then runs one epoch per Interval (default 50 ms, a common
// Remus setting that keeps the added output latency near one interval):
//
//	Pause -> Output.Advance -> HarvestDirty, ReadPages, SaveState -> Resume
//	      -> Encode + stream -> wait ACK e -> Output.Release(e)
//
// Release(e) is called in exactly one place, after ACK e. Without Pipeline
// the next epoch starts after that release; with it (pipeline.go, the
// CLI's default) epoch e+1 is taken while e is shipped, and shipping, ACKs
// and releases stay one at a time in epoch order.
//
// # Losing the backup
//
// A broken stream, a heartbeat silence of HeartbeatTimeout or an ACK
// overdue by AckTimeout means the backup is lost. The encoder is Reset (the
// backup may hold any prefix of what was sent) and the policy applies:
//
//   - block (default): nothing is released; the guest runs, its output is
//     held (bounded by the output buffer, which drops at the tail and
//     counts) until a backup acknowledges a checkpoint again; that ACK
//     releases everything held, which is then safe.
//   - continue: the output of every unacknowledged epoch is Discarded, never
//     released: the backup, if alive and about to fail over, resumes from
//     an older state that never produced it. New output is released every
//     interval (Advance inside a tiny pause, then Release) with no
//     checkpoint: the guest runs unprotected, and says so loudly.
//
// In both modes the primary redials every RetryInterval and re-protects
// with a full resynchronisation. During it output is held again until the
// first consistent checkpoint is acknowledged.
//
// # Scrub (scrub.go)
//
// Every ScrubEvery epochs the primary hashes all guest memory in that
// epoch's pause and sends the chunk hashes of the tree (SCRUB) right
// after the checkpoint's END; the backup hashes its replica, just
// committed at that epoch, and answers with its page hashes of the chunks
// that differ (SCRUB_REPORT). A divergence (a write the dirty log missed)
// is an alarm on both sides, naming the pages, and the pages are re-sent.
//
// # Backup (backup.go, backupsession.go, failover.go, fence.go)
//
// One session writes at a time; a newer connection replaces the older one.
// Each checkpoint (BEGIN, DATA..., END) is decoded and verified whole, END
// must follow exactly, the sequence number must be the next one and a
// consistent checkpoint's epoch must be above the committed one; only then
// is it applied to the replica (codec.Staged.Apply), synced, recorded as
// committed with its device state, and ACKed. Anything else is refused,
// logged and counted, and closes the session; the replica keeps the last
// committed checkpoint byte for byte.
//
// When the primary is silent for HeartbeatTimeout and a consistent
// checkpoint is held, the backup fences (a command that must exit 0; with
// none configured it refuses to go live unless UnsafeNoFence), then
// Standby.Activate with the committed state, switches its port to pass and
// sends gratuitous ARP. A failed fence leaves it passive (fence-failed).
//
// # Around the engine
//
// The replication protocol (frames, hello, TLS, the heartbeat both ends
// send) is package wire; the checkpoint codecs behind the Encoder and
// Decoder interfaces are package codec (FGBI, and a raw reference codec);
// the simulated guests, trace replay and the bench harness are package sim;
// hypervisor drivers are packages qemu and xen; the guest's packet I/O
// (output buffer, input log reader, replay injector, gratuitous ARP) is the
// data plane's (packages dataplane and netbuf), reached through the
// OutputCommit, InputInjector, PortSwitch and Announcer interfaces.
package checkpointer
