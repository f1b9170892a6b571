// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

//go:build ignore
/*
 * Input log (LLM): input_log runs at egress of the guest port (frames to the
 * guest), copies each frame into input_ring stamped with the current epoch,
 * and always passes it. A record that cannot be written is counted in
 * CNT_INPUT_LOG_FULL: any non-zero increase marks that epoch's log broken.
 * It never drops a packet. input_log_portable is the same without the
 * bpf_cast_to_kern_ctx kfunc (Debian 12's 6.1): its records carry
 * FRAME_META_UNKNOWN instead of the checksum state, which the primary
 * completes from the frame itself (dataplane.CompleteChecksum). Go loads
 * one of the two, under the name input_log.
 *
 * config and counters are replaced at load time by the capture object's maps.
 */
#include "record.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Frames to the guest: struct frame_hdr + frame per record. Size set from Go. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} input_ring SEC(".maps");

static __always_inline int log_frame(struct __sk_buff *skb, enum meta_src src)
{
	struct port_config *cfg = get_config();

	if (!cfg) {
		count(CNT_INPUT_LOG_FULL);
		return TC_ACT_OK;
	}
	if (record(skb, cfg, &input_ring, src) == REC_OK)
		count(CNT_INPUT_LOGGED);
	else
		count(CNT_INPUT_LOG_FULL);
	return TC_ACT_OK;
}

SEC("tc")
int input_log(struct __sk_buff *skb)
{
	return log_frame(skb, META_KERN);
}

SEC("tc")
int input_log_portable(struct __sk_buff *skb)
{
	return log_frame(skb, META_SKB);
}
