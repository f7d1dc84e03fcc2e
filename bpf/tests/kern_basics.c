// SPDX-License-Identifier: Apache-2.0
/* Test programs for src/bpf (the TypeScript kernel interface), not part of the datapath.
 *
 *   weir_tc_count     tc: counts packets (and IPv4 ICMP echo requests, UDP) into maps; verdict and an
 *                     optional IPv4 TOS rewrite come from load-time config (volatile const).
 *   weir_ringbuf_emit tc: writes one record {seq, len, first 8 packet bytes} per run to `events`,
 *                     submitted with the flags in ringbuf_flags (.bss).
 *   weir_connect4     cgroup/connect4: counts connects, refuses those to port cfg_deny_port.
 *   lpm_outer         HASH_OF_MAPS whose inner maps are LPM tries (checks libbpf's __array).
 *   struct layout_probe  a struct with implicit padding, for checkLayout().
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Load-time configuration, set with BpfObject.setConfig(). */
volatile const __u32 cfg_drop = 0; /* 1: TC_ACT_SHOT every packet */
volatile const __u8 cfg_tos = 0;   /* non-zero: rewrite the IPv4 TOS byte */
volatile const __u16 cfg_deny_port = 0;

/* Globals in .bss/.data, read and written by the tests through the section maps. */
__u32 last_len = 0;
__u64 data_marker = 0x1122334455667788ULL;
__u32 ringbuf_seq = 0;
__u64 ringbuf_flags = 0; /* bpf_ringbuf_submit flags of weir_ringbuf_emit (BPF_RB_NO_WAKEUP: 1) */

struct layout_probe {
	__u8 a;
	/* 3 bytes of padding */
	__u32 b;
	__u16 c;
	/* 6 bytes of padding */
	__u64 d;
	__u8 e[3];
	/* 5 bytes of padding */
};

enum counter {
	CNT_PACKETS = 0,
	CNT_ICMP_ECHO = 1,
	CNT_CONNECT = 2,
	CNT_CONNECT_DENIED = 3,
	CNT_UDP4 = 4,
	CNT_MAX
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, CNT_MAX);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} pcpu_packets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct layout_probe);
	__uint(max_entries, 64);
} probes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

struct event {
	__u32 seq;
	__u32 len;
	__u8 head[8];
};

struct lpm_key {
	__u32 prefixlen;
	__u8 addr[4];
};

/* Sizes rather than __type(): clang 14 emits only a forward declaration of a struct reached
 * through the inner map definition alone, and libbpf cannot size that. */
struct lpm_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct lpm_key));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 16);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 8);
	__array(values, struct lpm_inner);
} lpm_outer SEC(".maps");

static __always_inline void bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("tc")
int weir_tc_count(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	__u32 zero = 0;
	__u64 *pc;

	bump(CNT_PACKETS);
	last_len = skb->len;
	pc = bpf_map_lookup_elem(&pcpu_packets, &zero);
	if (pc)
		*pc += 1;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		goto out;
	if (ip->protocol == IPPROTO_ICMP) {
		__u8 *type = (void *)ip + ip->ihl * 4;

		if ((void *)(type + 1) <= data_end && *type == 8 /* ICMP_ECHO */)
			bump(CNT_ICMP_ECHO);
	}
	if (ip->protocol == IPPROTO_UDP)
		bump(CNT_UDP4);
	if (cfg_tos) {
		__u16 old = *(__u16 *)ip; /* version/ihl + tos, as the checksum sees them */
		__u8 tos = cfg_tos;
		__u16 new_word;

		bpf_skb_store_bytes(skb, sizeof(*eth) + 1, &tos, 1, 0);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		ip = data + sizeof(*eth);
		if ((void *)(ip + 1) > data_end)
			return TC_ACT_SHOT;
		new_word = *(__u16 *)ip;
		bpf_l3_csum_replace(skb, sizeof(*eth) + 10, old, new_word, 2);
	}
out:
	return cfg_drop ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("tc")
int weir_ringbuf_emit(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return TC_ACT_SHOT;
	e->seq = ringbuf_seq++; /* runs are sequential in the tests; no atomic needed */
	e->len = skb->len;
	if (data + 8 <= data_end)
		__builtin_memcpy(e->head, data, 8);
	else
		__builtin_memset(e->head, 0, 8);
	bpf_ringbuf_submit(e, ringbuf_flags);
	return TC_ACT_OK;
}

SEC("cgroup/connect4")
int weir_connect4(struct bpf_sock_addr *ctx)
{
	bump(CNT_CONNECT);
	if (cfg_deny_port && ctx->user_port == bpf_htons(cfg_deny_port)) {
		bump(CNT_CONNECT_DENIED);
		return 0; /* connect() fails with EPERM */
	}
	return 1;
}

/* Keeps the LPM outer map and layout_probe referenced so they are not optimised away. */
SEC("tc")
int weir_lpm_lookup(struct __sk_buff *skb)
{
	__u32 id = skb->mark;
	struct lpm_key key = { .prefixlen = 32 };
	struct layout_probe *lp;
	void *inner;
	__u32 *v;

	lp = bpf_map_lookup_elem(&probes, &id);
	if (lp)
		return lp->b;
	inner = bpf_map_lookup_elem(&lpm_outer, &id);
	if (!inner)
		return -1;
	__builtin_memcpy(key.addr, &skb->remote_ip4, 4);
	key.addr[0] = 10;
	key.addr[1] = 1;
	key.addr[2] = 2;
	key.addr[3] = 3;
	v = bpf_map_lookup_elem(inner, &key);
	return v ? (int)*v : -2;
}

char _license[] SEC("license") = "GPL";
