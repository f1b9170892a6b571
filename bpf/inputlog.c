// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

//go:build ignore
/*
 * Input log (LLM): input_log runs at egress of the guest port (frames to the
 * guest), copies each frame into input_ring stamped with the current epoch,
 * and always passes it. A record that cannot be written is counted in
 * CNT_INPUT_LOG_FULL: any non-zero increase marks that epoch's log broken.
 * It never drops a packet.
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

SEC("tc")
int input_log(struct __sk_buff *skb)
{
	struct port_config *cfg = get_config();

	if (!cfg) {
		count(CNT_INPUT_LOG_FULL);
		return TC_ACT_OK;
	}
	if (record(skb, cfg, &input_ring) == REC_OK)
		count(CNT_INPUT_LOGGED);
	else
		count(CNT_INPUT_LOG_FULL);
	return TC_ACT_OK;
}
