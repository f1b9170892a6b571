/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Copying a whole frame plus its struct frame_hdr into a ring buffer. Used
 * by the path-A capture and the input log. With META_KERN the header's
 * checksum and GSO-type fields come from the kernel's sk_buff, which needs
 * BTF (CO-RE) and the bpf_cast_to_kern_ctx kfunc (kernel >= 6.2); with
 * META_SKB only what struct __sk_buff exposes is read (ring buffers, 5.8;
 * __sk_buff gso_size, 5.7) and the header says so (FRAME_META_UNKNOWN).
 */
#ifndef RESILIRE_RECORD_H
#define RESILIRE_RECORD_H

#include "resilire.h"

#define CHECKSUM_PARTIAL 3

/* Not weak: cilium/ebpf resolves kfuncs per program, so an object whose
 * kfunc-free programs are loaded alone (the portable input log on 6.1)
 * loads without it, and a program that calls it fails with a clear
 * "kfunc not supported" instead of a poisoned call the verifier rejects. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* Where fill_hdr takes the checksum and GSO-type metadata from. */
enum meta_src {
	META_KERN = 0, /* the kernel sk_buff, through bpf_cast_to_kern_ctx */
	META_SKB = 1,  /* struct __sk_buff only: ip_summed and gso_type unknown */
};

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

/* meta_unknown is a separate (noinline) subprogram so enum frame_flags is
 * in BTF and bpf2go generates it for Go. */
static __noinline __attribute__((optnone)) __u8 meta_unknown(enum frame_flags f)
{
	return f;
}

/* fill_hdr stamps h from skb and cfg (len already set), with colour and
 * flags (enum frame_flags) from the caller. src is a compile-time
 * constant: the META_SKB variant has no kfunc call. */
static __always_inline void fill_hdr(struct frame_hdr *h, struct __sk_buff *skb, struct port_config *cfg,
                                     enum meta_src src, __u32 colour, __u8 flags)
{
	struct sk_buff *k;

	h->epoch = *(volatile __u64 *)&cfg->epoch;
	h->tstamp_ns = bpf_ktime_get_ns();
	h->ifindex = skb->ifindex;
	h->gso_size = skb->gso_size;
	h->gso_segs = skb->gso_segs;
	h->gso_type = 0;
	h->ip_summed = 0;
	h->flags = flags;
	h->csum_start = 0;
	h->csum_offset = 0;
	h->colour = colour;
	if (src == META_SKB) {
		h->flags = flags | meta_unknown(FRAME_META_UNKNOWN);
		return;
	}

	k = bpf_cast_to_kern_ctx(skb);
	h->ip_summed = BPF_CORE_READ_BITFIELD(k, ip_summed);
	if (h->ip_summed == CHECKSUM_PARTIAL) {
		/* csum_start counts from skb->head; the frame starts at the mac header. */
		h->csum_start = k->csum_start - k->mac_header;
		h->csum_offset = k->csum_offset;
	}
	if (h->gso_size != 0) {
		unsigned char *head = BPF_CORE_READ(k, head);
		unsigned int end = BPF_CORE_READ(k, end);
		struct skb_shared_info *sh = (void *)(head + end);

		h->gso_type = (__u16)BPF_CORE_READ(sh, gso_type);
	}
}

/* record copies skb (from its mac header, which is skb->data at tc) and
 * its GSO/checksum metadata into ring, stamped with cfg's epoch and the
 * given colour and flags. */
static __always_inline enum record_result record(struct __sk_buff *skb, struct port_config *cfg, void *ring,
                                                 enum meta_src src, __u32 colour, __u8 flags)
{
	__u32 len = skb->len;
	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch *s;

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

	s->hdr.len = len;
	fill_hdr(&s->hdr, skb, cfg, src, colour, flags);

	if (bpf_ringbuf_output(ring, s, sizeof(s->hdr) + len, 0) != 0)
		return REC_RING_FULL;
	return REC_OK;
}

/* Kernel 6.15+ kfuncs for the one-copy path (record_copy). Weak, so an
 * object that references them still loads where they are missing: Go loads
 * the program that calls them only when the kernel BTF has both. */
extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags, struct bpf_dynptr *ptr) __ksym __weak;
extern int bpf_dynptr_copy(struct bpf_dynptr *dst, __u32 dst_off, struct bpf_dynptr *src, __u32 src_off, __u32 size)
        __ksym __weak;

/* record_copy is record with one copy instead of two: it reserves a
 * record of the exact size with bpf_ringbuf_reserve_dynptr, writes the
 * header in place and copies the frame straight from the skb into the
 * reservation (bpf_dynptr_copy reads the skb into the contiguous ring
 * slice with skb_copy_bits). No scratch slot, no second copy by
 * bpf_ringbuf_output. The record is byte for byte the one record() emits. */
static __always_inline enum record_result record_copy(struct __sk_buff *skb, struct port_config *cfg, void *ring)
{
	__u32 len = skb->len;
	struct bpf_dynptr src, dst;
	struct frame_hdr *h;

	if (len > MAX_CAP)
		return REC_TOO_BIG;
	if (len < ETH_HLEN)
		return REC_ERROR;
	if (bpf_dynptr_from_skb(skb, 0, &src) < 0)
		return REC_ERROR;
	if (bpf_ringbuf_reserve_dynptr(ring, sizeof(*h) + len, 0, &dst) < 0) {
		bpf_ringbuf_discard_dynptr(&dst, 0); /* the verifier wants it released even on failure */
		return REC_RING_FULL;
	}
	h = bpf_dynptr_data(&dst, 0, sizeof(*h));
	if (!h || bpf_dynptr_copy(&dst, sizeof(*h), &src, 0, len) < 0) {
		bpf_ringbuf_discard_dynptr(&dst, 0);
		return REC_ERROR;
	}
	h->len = len;
	fill_hdr(h, skb, cfg, META_KERN, 0, 0);
	bpf_ringbuf_submit_dynptr(&dst, 0);
	return REC_OK;
}

#endif /* RESILIRE_RECORD_H */
