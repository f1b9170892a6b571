// SPDX-License-Identifier: Apache-2.0

// Package wire is the replication protocol between a primary and its
// backup: framing, the session hello, checkpoint and input-log messages,
// the one heartbeat, and the TCP/TLS plumbing.
//
// One TCP connection per VM, mutual TLS 1.3 when configured. Frames are an
// 8-byte header (type u8, three zero bytes, payload length u32 little
// endian) and a payload bounded per type (256 KiB for DATA, 64 KiB plus a
// small header for INPUT, 1 KiB otherwise), so a peer can never make the
// reader allocate more than that. A session starts with a Hello (VM name,
// memory size, codec, random session id) and its HelloAck (the backup's
// committed epoch). A checkpoint travels as BEGIN, DATA..., END; the codec
// stream inside the DATA frames is self-delimiting and END must follow
// exactly where the codec stopped. HEARTBEAT and INPUT frames may come
// anywhere. Every parser checks exact lengths first and never panics
// (FuzzFrames).
package wire
