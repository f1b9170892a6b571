/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Copying a whole frame plus its struct frame_hdr into a ring buffer. Used
 * by the path-A capture and the input log; needs BTF (CO-RE), the
 * bpf_cast_to_kern_ctx kfunc (kernel > 6.1) and BPF ring buffers (5.8).
 */
#ifndef RESILIRE_RECORD_H
#define RESILIRE_RECORD_H

#include "resilire.h"

#define CHECKSUM_PARTIAL 3

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* A header plus the largest frame, so the record can be emitted with one
 * bpf_ringbuf_output (bpf_ringbuf_reserve needs a constant size). */
struct scratch {
	struct frame_hdr hdr;
	__u8 data[MAX_CAP];
};

/* One scratch slot per possible CPU: a plain ARRAY, because per-CPU values
 * are limited to 32 KiB. Go sets max_entries to the number of possible CPUs
 * before loading; tc programs run with BH disabled on one CPU and do not
 * nest, so a slot is never shared. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

enum record_result {
	REC_OK = 0,
	REC_TOO_BIG,
	REC_ERROR,
	REC_RING_FULL,
};

/* record copies skb (from its mac header, which is skb->data at tc) and
 * its GSO/checksum metadata into ring, stamped with cfg's epoch. */
static __always_inline enum record_result record(struct __sk_buff *skb, struct port_config *cfg, void *ring)
{
	__u32 len = skb->len;
	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch *s;
	struct sk_buff *k;

	if (len > MAX_CAP)
		return REC_TOO_BIG;
	s = bpf_map_lookup_elem(&scratch, &cpu);
	if (!s)
		return REC_ERROR;
	/* One unsigned compare bounds len to [ETH_HLEN, MAX_CAP] for the
	 * verifier, right where the helper needs it. */
	len -= ETH_HLEN;
	if (len > MAX_CAP - ETH_HLEN)
		return REC_ERROR;
	len += ETH_HLEN;
	if (bpf_skb_load_bytes(skb, 0, s->data, len) < 0)
		return REC_ERROR;

	s->hdr.epoch = *(volatile __u64 *)&cfg->epoch;
	s->hdr.tstamp_ns = bpf_ktime_get_ns();
	s->hdr.len = len;
	s->hdr.ifindex = skb->ifindex;
	s->hdr.gso_size = skb->gso_size;
	s->hdr.gso_segs = skb->gso_segs;
	s->hdr.gso_type = 0;
	s->hdr.flags = 0;
	s->hdr.csum_start = 0;
	s->hdr.csum_offset = 0;
	s->hdr.reserved = 0;

	k = bpf_cast_to_kern_ctx(skb);
	s->hdr.ip_summed = BPF_CORE_READ_BITFIELD(k, ip_summed);
	if (s->hdr.ip_summed == CHECKSUM_PARTIAL) {
		/* csum_start counts from skb->head; the frame starts at the mac header. */
		s->hdr.csum_start = k->csum_start - k->mac_header;
		s->hdr.csum_offset = k->csum_offset;
	}
	if (s->hdr.gso_size != 0) {
		unsigned char *head = BPF_CORE_READ(k, head);
		unsigned int end = BPF_CORE_READ(k, end);
		struct skb_shared_info *sh = (void *)(head + end);

		s->hdr.gso_type = (__u16)BPF_CORE_READ(sh, gso_type);
	}

	if (bpf_ringbuf_output(ring, s, sizeof(s->hdr) + len, 0) != 0)
		return REC_RING_FULL;
	return REC_OK;
}

#endif /* RESILIRE_RECORD_H */
