// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

//go:build ignore
/*
 * Guest egress (frames to the guest): the VDEchp receiver and the input log.
 *
 * input_log runs at egress of the guest port. It is attached when the input
 * log (LLM) is on, or when the port is a VDEchp group member, or both.
 *
 * Receiver (Lai-Yang colours): a frame from a group peer carries the
 * sender's round c in an 802.1ad tag (see send_internal). Against our round
 * i, with 12-bit serial arithmetic d = c - i:
 *   d > 0   the sender already took checkpoint i, we did not: delivering
 *           would make an orphan. The frame, untagged, goes to hold_ring
 *           with its colour and is dropped; Go transmits it again once our
 *           round reached c (HoldQueue), marked with release_mark.
 *   d <= 0  the tag is removed and the frame delivered; d < 0 means in
 *           transit for the cut (sent before the sender's checkpoint,
 *           received after ours): the input log keeps its colour so that a
 *           rollback to round R replays exactly the logged colours <= R.
 * A frame the hold ring cannot take is dropped and counted, never
 * delivered early. The guest never sees the tag. Untagged frames are
 * untouched.
 *
 * Input log (LLM): each frame to the guest is copied into input_ring
 * stamped with the current epoch (internal ones with their colour and
 * FRAME_INTERNAL), and passed. A record that cannot be written is counted
 * in CNT_INPUT_LOG_FULL: any non-zero increase marks that epoch's log
 * broken. The log never drops a packet.
 *
 * input_log_portable is the same without the bpf_cast_to_kern_ctx kfunc
 * (Debian 12's 6.1): its records carry FRAME_META_UNKNOWN instead of the
 * checksum state, which the reader completes from the frame itself
 * (dataplane.CompleteChecksum). Go loads one of the two, under the name
 * input_log.
 *
 * config, counters and group_peers are replaced at load time by the
 * capture object's maps.
 */
#include "record.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Frames to the guest: struct frame_hdr + frame per record. Size set from Go. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} input_ring SEC(".maps");

/* Internal frames held until our round reaches their colour: struct
 * frame_hdr (colour set, FRAME_INTERNAL) + the untagged frame. Size set
 * from Go; drained by dataplane.HoldQueue. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} hold_ring SEC(".maps");

/* Where a frame's colour came from. */
enum colour_src {
	COLOUR_NONE = 0,   /* not internal */
	COLOUR_ACCEL = 1,  /* our tag, in skb->vlan_* (veth and taps offload it) */
	COLOUR_INLINE = 2, /* our tag, in the frame after the MACs */
	COLOUR_MARK = 3,   /* released by HoldQueue: colour in the low bits of the mark */
};

/* release_mark is the skb->mark base of frames HoldQueue transmits again
 * (colour in the low 12 bits): the attach magic with those bits cleared.
 * Go keeps magic's high bits non-zero. */
static __always_inline __u32 release_mark(struct port_config *cfg)
{
	return cfg->magic & ~(__u32)VLAN_VID_MASK;
}

/* The MACs and the first tag (if any) of a frame. */
struct eth_vlan {
	__u8 dst[ETH_ALEN];
	__u8 src[ETH_ALEN];
	__be16 proto;
	__be16 tci;
};

/* frame_colour finds whether skb is an internal frame and its colour. A
 * tag counts only from a group peer's source MAC, so a stranger's 802.1ad
 * frame is delivered as it is, never held. */
static __always_inline enum colour_src frame_colour(struct __sk_buff *skb, struct port_config *cfg, __u32 *colour)
{
	__u32 base = release_mark(cfg);
	struct eth_vlan e;

	if (base != 0 && (skb->mark & ~(__u32)VLAN_VID_MASK) == base) {
		*colour = skb->mark & VLAN_VID_MASK;
		skb->mark = 0; /* keep our mark out of host policy */
		return COLOUR_MARK;
	}
	if (skb->vlan_present && skb->vlan_proto == bpf_htons(ETH_P_8021AD)) {
		if (bpf_skb_load_bytes(skb, 0, &e, 2 * ETH_ALEN) < 0 || !is_peer(e.src))
			return COLOUR_NONE;
		*colour = skb->vlan_tci & VLAN_VID_MASK;
		return COLOUR_ACCEL;
	}
	if (bpf_skb_load_bytes(skb, 0, &e, sizeof(e)) < 0 || e.proto != bpf_htons(ETH_P_8021AD) || !is_peer(e.src))
		return COLOUR_NONE;
	*colour = bpf_ntohs(e.tci) & VLAN_VID_MASK;
	return COLOUR_INLINE;
}

/* untag removes our tag; false if the frame would still carry it. */
static __always_inline int untag(struct __sk_buff *skb, enum colour_src src)
{
	__be16 proto;

	if (src != COLOUR_ACCEL && src != COLOUR_INLINE)
		return 1;
	if (bpf_skb_vlan_pop(skb) < 0)
		return 0;
	if (src == COLOUR_ACCEL)
		return 1;
	/* skb_vlan_pop removes an in-frame tag only when skb->protocol names
	 * it: check that it did. */
	if (bpf_skb_load_bytes(skb, 2 * ETH_ALEN, &proto, sizeof(proto)) < 0)
		return 0;
	return proto != bpf_htons(ETH_P_8021AD);
}

/* colour_diff is c - i in 12-bit serial arithmetic, in [-2048, 2047]:
 * rounds wrap at 4096 in the tag, and two members are never 2048 rounds
 * apart. */
static __always_inline __s32 colour_diff(__u32 c, __u32 i)
{
	__s32 d = (c - i) & VLAN_VID_MASK;

	return d >= 2048 ? d - 4096 : d;
}

static __always_inline int guest_egress(struct __sk_buff *skb, enum meta_src src)
{
	struct port_config *cfg = get_config();
	__u32 colour = 0, round;
	enum colour_src from;
	__u8 flags = 0;
	__s32 d = 0;

	if (!cfg) {
		count(CNT_INPUT_LOG_FULL);
		return TC_ACT_OK;
	}
	from = frame_colour(skb, cfg, &colour);
	if (from != COLOUR_NONE) {
		if (!untag(skb, from)) {
			count(CNT_ERRORS); /* the guest must never see the colour */
			return TC_ACT_SHOT;
		}
		flags = FRAME_INTERNAL;
		round = *(volatile __u32 *)&cfg->round;
		/* Round 0: not a member (yet); nothing to hold against. */
		if (round != 0)
			d = colour_diff(colour, round & VLAN_VID_MASK);
		if (d > 0 && !(cfg->flags & PORT_UNSAFE_NO_HOLD)) {
			if (record(skb, cfg, &hold_ring, src, colour, flags) == REC_OK)
				count(CNT_HELD);
			else
				count(CNT_HOLD_FULL);
			return TC_ACT_SHOT;
		}
		count(CNT_INTERNAL_RECEIVED);
		if (d < 0)
			count(CNT_IN_TRANSIT);
	}
	if (cfg->input_log == INPUT_LOG_NONE)
		return TC_ACT_OK;
	if (record(skb, cfg, &input_ring, src, colour, flags) == REC_OK)
		count(CNT_INPUT_LOGGED);
	else
		count(CNT_INPUT_LOG_FULL);
	return TC_ACT_OK;
}

SEC("tc")
int input_log(struct __sk_buff *skb)
{
	return guest_egress(skb, META_KERN);
}

SEC("tc")
int input_log_portable(struct __sk_buff *skb)
{
	return guest_egress(skb, META_SKB);
}
