// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

//go:build ignore
/*
 * Path A: hold guest output by copying it into a ring buffer.
 *
 * capture runs at ingress of the guest port (guest output). In buffer mode
 * every frame is copied, with an exact epoch stamp, into capture_ring and the
 * original is dropped: nothing leaves before netbuf commits it. A full ring
 * or an oversized frame is dropped and counted, never passed.
 * tap_ingress runs at ingress of the injection tap (see resilire.h).
 */
#include "record.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Held guest output: struct frame_hdr + frame per record. Size set from Go. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} capture_ring SEC(".maps");

/* count_record counts the outcome of one capture; the frame is dropped
 * either way (captured frames leave later, from the tap). */
static __always_inline int count_record(enum record_result r)
{
	switch (r) {
	case REC_OK:
		count(CNT_CAPTURED);
		break;
	case REC_TOO_BIG:
		count(CNT_TOO_BIG);
		break;
	case REC_RING_FULL:
		count(CNT_RING_FULL);
		break;
	default:
		count(CNT_ERRORS);
		break;
	}
	return TC_ACT_SHOT;
}

/* capture copies each held frame twice (skb -> scratch -> ring): it runs
 * on every kernel with BTF and ring buffers. */
SEC("tc")
int capture(struct __sk_buff *skb)
{
	struct port_config *cfg = get_config();
	int verdict;

	if (!cfg) {
		count(CNT_BLOCKED);
		return TC_ACT_SHOT;
	}
	verdict = common_verdict(skb, cfg);
	if (verdict >= 0)
		return verdict;
	return count_record(record(skb, cfg, &capture_ring, META_KERN, 0, 0));
}

/* Frames up to this size are cheaper to copy twice: for them the dynptr
 * calls of record_copy cost more than the second copy saves (measured with
 * BPF_PROG_TEST_RUN: 64 B 113 vs 170 ns, 1500 B 240 vs 285 ns, 3000 B
 * equal). GSO super-packets, where the copies dominate, take one copy. */
#define ONE_COPY_MIN 2048

/* capture_copy is capture with one copy (skb -> ring, record_copy) for
 * frames above ONE_COPY_MIN. Go loads it in capture's place when the
 * kernel has bpf_dynptr_copy. */
SEC("tc")
int capture_copy(struct __sk_buff *skb)
{
	struct port_config *cfg = get_config();
	int verdict;

	if (!cfg) {
		count(CNT_BLOCKED);
		return TC_ACT_SHOT;
	}
	verdict = common_verdict(skb, cfg);
	if (verdict >= 0)
		return verdict;
	if (skb->len <= ONE_COPY_MIN)
		return count_record(record(skb, cfg, &capture_ring, META_KERN, 0, 0));
	return count_record(record_copy(skb, cfg, &capture_ring));
}

SEC("tc")
int tap_ingress(struct __sk_buff *skb)
{
	return do_tap_ingress(skb);
}

SEC("tc")
int set_config(struct __sk_buff *skb)
{
	return do_set_config(skb);
}
