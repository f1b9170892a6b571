/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel and UAPI definitions Resilire's tc programs need, written
 * by hand instead of a 3 MB vmlinux.h so the committed tree stays small.
 * See README for where each piece comes from and how to check it.
 *
 * - struct __sk_buff and the BPF constants are UAPI (include/uapi/linux/bpf.h):
 *   their layout is ABI and must match it exactly.
 * - struct sk_buff is CO-RE (preserve_access_index): only the fields we read
 *   are declared; offsets and bitfield positions are relocated against the
 *   running kernel's BTF at load time, so the order here does not matter.
 */
#ifndef RESILIRE_KERNEL_H
#define RESILIRE_KERNEL_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;

/* libbpf's bpf_helper_defs.h names these types in prototypes. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

/* bpf_redirect() flags. */
#define BPF_F_INGRESS (1ULL << 0)

/* tc verdicts (include/uapi/linux/pkt_cls.h); not in vmlinux BTF. */
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define TC_ACT_REDIRECT 7

#define ETH_HLEN 14
#define ETH_ALEN 6

/* 802.1ad service tag (include/uapi/linux/if_ether.h), host order. */
#define ETH_P_8021AD 0x88A8
#define VLAN_HLEN 4
#define VLAN_VID_MASK 0x0fff

#define __bpf_md_ptr(type, name) \
	union {                      \
		type name;               \
		__u64 : 64;              \
	} __attribute__((aligned(8)))

struct bpf_flow_keys;
struct bpf_sock;

/* UAPI (include/uapi/linux/bpf.h): opaque, filled by dynptr helpers. */
struct bpf_dynptr {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

/* UAPI context of tc programs: layout is ABI (include/uapi/linux/bpf.h). */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	__bpf_md_ptr(struct bpf_flow_keys *, flow_keys);
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	__bpf_md_ptr(struct bpf_sock *, sk);
	__u32 gso_size;
	__u8 tstamp_type;
	__u32 : 24;
	__u64 hwtstamp;
};

/*
 * CO-RE view of the kernel sk_buff: only what the ring-buffer capture reads.
 * In the kernel these fields sit in anonymous structs and unions; CO-RE
 * matches them by name through anonymous members.
 */
struct sk_buff {
	__u8 ip_summed : 2;
	__u16 csum_start;
	__u16 csum_offset;
	__u16 mac_header;
	unsigned int end;
	unsigned char *head;
} __attribute__((preserve_access_index));

/* CO-RE view of skb_shared_info (at skb->head + skb->end). */
struct skb_shared_info {
	unsigned int gso_type;
} __attribute__((preserve_access_index));

#endif /* RESILIRE_KERNEL_H */
