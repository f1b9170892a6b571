// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

//go:build ignore
/*
 * Path B (portable: no BTF, no kfunc, no ring buffer; kernels >= 4.19).
 *
 * capture runs at ingress of the guest port. In buffer mode the original
 * frame is redirected to the egress of the injection tap, where netbuf reads
 * it from the tap fd with the kernel's own virtio-net header. With no reader
 * attached the tap drops it: output stays held (fail closed).
 * tap_ingress runs at ingress of the injection tap (see resilire.h).
 */
#include "resilire.h"

char __license[] SEC("license") = "Dual BSD/GPL";

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
	if (cfg->tap_ifindex == 0) {
		count(CNT_ERRORS);
		return TC_ACT_SHOT;
	}
	count(CNT_CAPTURED);
	return bpf_redirect(cfg->tap_ifindex, 0);
}

SEC("tc")
int tap_ingress(struct __sk_buff *skb)
{
	return do_tap_ingress(skb);
}
