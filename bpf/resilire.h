/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared definitions of Resilire's tc programs: the ring-buffer record
 * header (struct frame_hdr, parsed by dataplane.ParseRecord), the per-port
 * config, the counters, and the maps every object shares.
 *
 * Go gets these types from bpf2go -type; never mirror them by hand.
 */
#ifndef RESILIRE_H
#define RESILIRE_H

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

/* Largest frame captured whole: a 64 KiB GSO super-packet. BIG TCP frames
 * (gso_max_size > 64 KiB) are dropped and counted as too big. */
#define MAX_CAP 65536

/* Port modes. 0 is deliberately not a mode: an unset config drops (fail closed). */
enum mode {
	MODE_PASS = 1,   /* forward guest output untouched */
	MODE_BUFFER = 2, /* capture guest output, drop the original */
	MODE_BLOCK = 3,  /* drop everything, re-injected frames included (fenced copy) */
};

/* Per-CPU counters, indexed by enum counter. */
enum counter {
	CNT_CAPTURED = 0,      /* frames copied to the ring (path A) or redirected to the tap (path B) */
	CNT_PASSED,            /* frames passed in pass mode */
	CNT_INJECTED,          /* re-injected frames (marked by tap_ingress) passed to the bridge */
	CNT_BLOCKED,           /* frames dropped in block mode (or with no valid mode) */
	CNT_RING_FULL,         /* capture ring full: frame dropped, never passed */
	CNT_TOO_BIG,           /* frame longer than MAX_CAP: dropped */
	CNT_INPUT_LOGGED,      /* frames to the guest copied to the input log */
	CNT_INPUT_LOG_FULL,    /* frames to the guest NOT logged (ring full, too big, read error) */
	CNT_ERRORS,            /* capture failures (runt frame, scratch or load error): dropped */
	CNT_INTERNAL_SENT,     /* frames to a group peer tagged with our colour and passed (no output commit) */
	CNT_INTERNAL_RECEIVED, /* tagged frames from a peer delivered to the guest, tag removed */
	CNT_IN_TRANSIT,        /* of those, frames from an earlier round than ours (logged for replay) */
	CNT_HELD,              /* frames from a later round copied to hold_ring and dropped */
	CNT_HOLD_FULL,         /* frames from a later round that hold_ring could not take: dropped */
	CNT_MAX,
};

/* Ring-buffer record header: 40 bytes, then len bytes of frame from the
 * Ethernet header on. Layout: dataplane/record.go. */
struct frame_hdr {
	__u64 epoch;     /* config epoch at capture time */
	__u64 tstamp_ns; /* bpf_ktime_get_ns() at capture */
	__u32 len;       /* frame bytes that follow */
	__u32 ifindex;   /* guest port ifindex */
	__u16 gso_size;  /* 0 if not GSO */
	__u16 gso_segs;
	__u16 gso_type;    /* raw skb_shared_info gso_type bits (low 16) */
	__u8 ip_summed;    /* 0 NONE, 1 UNNECESSARY, 2 COMPLETE, 3 PARTIAL */
	__u8 flags;        /* enum frame_flags */
	__u16 csum_start;  /* relative to the mac header (PARTIAL only) */
	__u16 csum_offset; /* PARTIAL only */
	__u32 colour;      /* sender's round (12 bits) of an internal frame (FRAME_INTERNAL), else 0 */
};

/* Bits of frame_hdr.flags. */
enum frame_flags {
	FRAME_LOG_BROKEN = 1,   /* log broken before this frame (unused for output) */
	FRAME_META_UNKNOWN = 2, /* ip_summed, csum_* and gso_type not read: 0 (input log without kfunc) */
	FRAME_INTERNAL = 4,     /* a frame from a group peer; colour holds the sender's round */
};

/* Bits of port_config.flags. */
enum port_flags {
	/* Negative control, never for production: frames from a peer's later
	 * round are delivered at once instead of held (orphans allowed). */
	PORT_UNSAFE_NO_HOLD = 1,
};

/* How the input log reads frame metadata (port_config.input_log). */
enum input_log_kind {
	INPUT_LOG_NONE = 0,
	INPUT_LOG_KERN_CTX = 1, /* input_log: exact metadata via bpf_cast_to_kern_ctx (>= 6.2) */
	INPUT_LOG_PORTABLE = 2, /* input_log_portable: __sk_buff only (>= 5.8) */
};

/* One config per port, written by Go. Only epoch, mode, round and flags
 * change after attach; the rest describes the attachment so Open can find
 * it again. */
struct port_config {
	__u64 epoch; /* stamped into each record; advanced while the guest is paused */
	enum mode mode;
	__u32 magic;                   /* skb->mark of re-injected frames; random per attach, never 0 */
	__u32 port_ifindex;            /* guest port (bridge port) */
	__u32 tap_ifindex;             /* injection tap, same netns as the port */
	__u32 path;                    /* Go CapturePath in use */
	__u32 attach;                  /* Go AttachMethod in use */
	enum input_log_kind input_log; /* input log on, and which program logs; NONE: no log */
	enum input_log_kind egress;    /* guest-egress program attached (input log and/or group member); NONE: none */
	__u32 tap_queues;              /* queues the tap is meant to be opened with */
	char port_name[16];            /* guest port ifname (IFNAMSIZ), for Open and status */
	/* VDEchp colour: the round this guest executes (between its
	 * checkpoints round-1 and round). 0: not a group member, no frame is
	 * tagged or held. Advanced while the guest is paused, like epoch. */
	__u32 round;
	enum port_flags flags;
};

/* Single-entry config of this port. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_config);
} config SEC(".maps");

/* A group peer's MAC, padded to 8 bytes (the pad is always 0). */
struct peer_key {
	__u8 mac[ETH_ALEN];
	__u8 pad[2];
};

/* MACs of the other members of this port's VDEchp group, written by Go
 * (the value is unused). Unicast guest output to one of them is internal:
 * tagged with our colour and passed at once; a tagged frame to the guest
 * counts as coloured only if its source is one of them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct peer_key);
	__type(value, __u8);
} group_peers SEC(".maps");

/* Per-CPU counters; Go sums them over CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, enum counter);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(enum counter c)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += 1; /* per-CPU slot: tc programs do not migrate, no atomic needed */
}

static __always_inline struct port_config *get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&config, &zero);
}

/* is_peer reports whether mac (6 bytes) is in group_peers. */
static __always_inline int is_peer(const __u8 *mac)
{
	struct peer_key key = {};

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	return bpf_map_lookup_elem(&group_peers, &key) != 0;
}

/* send_internal tags guest output to a group peer with the sender's colour
 * (an 802.1ad tag, VID = round mod 4096: TPID 0x88a8 never clashes with a
 * guest's own 802.1Q VLANs) and passes it at once: internal frames are not
 * held for output commit, the receiver's data plane keeps the cut
 * consistent instead. Multicast and broadcast also reach non-members, so
 * they stay under output commit. Returns -1 for "not internal". */
static __always_inline int send_internal(struct __sk_buff *skb, struct port_config *cfg)
{
	__u32 round = *(volatile __u32 *)&cfg->round;
	__u8 dst[ETH_ALEN];

	if (round == 0)
		return -1;
	if (bpf_skb_load_bytes(skb, 0, dst, sizeof(dst)) < 0 || (dst[0] & 1) || !is_peer(dst))
		return -1;
	/* An untagged internal frame would reach the peer uncoloured, where it
	 * could be an orphan: fail closed. */
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021AD), round & VLAN_VID_MASK) < 0) {
		count(CNT_ERRORS);
		return TC_ACT_SHOT;
	}
	count(CNT_INTERNAL_SENT);
	return TC_ACT_OK;
}

/* Verdict shared by both capture paths: block drops everything; a frame
 * carrying the magic mark was re-injected by tap_ingress after commit and
 * passes with its mark cleared; a frame to a group peer is tagged and
 * passes; pass mode passes. Returns -1 for "buffer". */
static __always_inline int common_verdict(struct __sk_buff *skb, struct port_config *cfg)
{
	int verdict;

	enum mode mode = cfg->mode;

	if (mode == MODE_BLOCK || (mode != MODE_PASS && mode != MODE_BUFFER)) {
		count(CNT_BLOCKED);
		return TC_ACT_SHOT;
	}
	if (cfg->magic != 0 && skb->mark == cfg->magic) {
		skb->mark = 0; /* keep our mark out of host policy */
		count(CNT_INJECTED);
		return TC_ACT_OK;
	}
	verdict = send_internal(skb, cfg);
	if (verdict >= 0)
		return verdict;
	if (mode == MODE_PASS) {
		count(CNT_PASSED);
		return TC_ACT_OK;
	}
	return -1;
}

/* tap_ingress: frames netbuf writes into the injection tap are marked and
 * redirected to the guest port's ingress, so the bridge sees them arrive
 * from the guest port. The mark survives only because tap and port share a
 * netns. */
static __always_inline int do_tap_ingress(struct __sk_buff *skb)
{
	struct port_config *cfg = get_config();

	if (!cfg || cfg->port_ifindex == 0 || cfg->magic == 0)
		return TC_ACT_SHOT;
	skb->mark = cfg->magic;
	return bpf_redirect(cfg->port_ifindex, BPF_F_INGRESS);
}

enum set_what {
	SET_EPOCH = 1,
	SET_MODE = 2,
	SET_ROUND = 4,
	SET_FLAGS = 8,
};

/* Argument of set_config, passed as the packet data of BPF_PROG_TEST_RUN.
 * The kernel parses it as a frame: it must be at least 14 bytes, and the
 * low bytes of what land on the ethertype, where SET_FLAGS (8) reads as
 * IPv4 and makes the kernel want a 20-byte header behind it; the pad keeps
 * the argument longer than any header the kernel looks for (IPv6: 40). */
struct set_config_arg {
	__u64 epoch;
	enum mode mode;
	enum set_what what; /* bit set of SET_EPOCH, SET_MODE, SET_ROUND, SET_FLAGS */
	__u32 round;
	enum port_flags flags; /* written whole */
	__u8 pad[40];
};

/* A separate (noinline) subprogram so struct set_config_arg is in BTF and
 * bpf2go generates it for Go. */
static __noinline int apply_set_config(struct set_config_arg *arg)
{
	struct port_config *cfg = get_config();

	if (!cfg)
		return 1;
	if (arg->what & SET_EPOCH)
		*(volatile __u64 *)&cfg->epoch = arg->epoch;
	if (arg->what & SET_MODE)
		*(volatile __u32 *)&cfg->mode = arg->mode;
	if (arg->what & SET_ROUND)
		*(volatile __u32 *)&cfg->round = arg->round;
	if (arg->what & SET_FLAGS)
		*(volatile __u32 *)&cfg->flags = arg->flags;
	return 0;
}

/* set_config is run by Go through BPF_PROG_TEST_RUN, never attached. A map
 * update from userspace copies the value with memcpy, which another CPU can
 * observe half-written; this program instead writes the epoch with one
 * aligned 8-byte store (one instruction once JITed), so capture and
 * input_log read either the old or the new epoch, never a mix; the round
 * (the VDEchp colour) likewise with one aligned 4-byte store. */
static __always_inline int do_set_config(struct __sk_buff *skb)
{
	struct set_config_arg arg;

	if (bpf_skb_load_bytes(skb, 0, &arg, sizeof(arg)) < 0)
		return 2;
	return apply_set_config(&arg);
}

#endif /* RESILIRE_H */
