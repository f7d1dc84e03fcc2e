/* SPDX-License-Identifier: Apache-2.0 */
/* Refusing a connection to a service without backends, as Cilium does (bpf/lib/lb.h
 * tail_no_service_ipv4/6): the packet is turned, in place, into the ICMP "port unreachable" that
 * answers it, addressed back to its sender. The caller redirects it (back out of the device it came
 * in by, or to the pod's side of the veth) and counts the original as DROP_NO_SERVICE.
 *
 *   icmp_unreach_reply(skb, flow) -> 0, or -1 when no error is due (the packet stays as it was)
 *     IPv4: ICMP type 3 code 3 quoting the IP header and 8 bytes of L4 (RFC 792); packets with IP
 *           options get none.
 *     IPv6: ICMPv6 type 1 code 4 quoting the first 48 bytes (RFC 4443).
 *     Only for unfragmented TCP and UDP: never for an ICMP message (no error about an error).
 * The sender's stack turns it into ECONNREFUSED at once: a TCP connect in SYN_SENT is aborted, a
 * connected UDP socket reports it on its next call.
 */
#ifndef WEIR_ICMP_REPLY_H
#define WEIR_ICMP_REPLY_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/parse.h"

#define ICMP4_QUOTE (sizeof(struct iphdr) + 8)
#define ICMP6_QUOTE (sizeof(struct ipv6hdr) + 8)

static __always_inline __u16 __csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline void __swap_macs(struct ethhdr *eth)
{
	__u8 mac[ETH_ALEN];

	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
}

/* The messages are built in a per-CPU scratch buffer: the BPF stack (512 bytes for a program and
 * the functions it calls) has no room for them beside the datapath's own state. */
struct icmp4_msg {
	struct ethhdr eth;
	__u16 pad;
	struct iphdr ip;
	struct icmphdr icmp;
	__u8 quote[ICMP4_QUOTE];
};

struct icmp6_msg {
	struct ethhdr eth;
	__u16 pad;
	struct ipv6hdr ip6;
	/* The pseudo-header the checksum covers, then the message itself. */
	struct in6_addr saddr;
	struct in6_addr daddr;
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
	struct icmp6hdr icmp6;
	__u8 quote[ICMP6_QUOTE];
};

union icmp_scratch {
	struct icmp4_msg v4;
	struct icmp6_msg v6;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, union icmp_scratch);
	__uint(max_entries, 1);
} weir_icmp_scratch SEC(".maps");

static __always_inline union icmp_scratch *__icmp_scratch(void)
{
	__u32 zero = 0;
	union icmp_scratch *s = bpf_map_lookup_elem(&weir_icmp_scratch, &zero);

	if (s)
		__builtin_memset(s, 0, sizeof(*s));
	return s;
}

static __always_inline int __icmp_unreach4(struct __sk_buff *skb)
{
	union icmp_scratch *s = __icmp_scratch();
	struct icmp4_msg *m;

	const __u32 icmp_len = sizeof(struct icmphdr) + ICMP4_QUOTE;

	if (!s)
		return -1;
	m = &s->v4;
	if (bpf_skb_load_bytes(skb, 0, &m->eth, sizeof(m->eth)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, m->quote, sizeof(m->quote)) < 0)
		return -1;
	__builtin_memcpy(&m->ip, m->quote, sizeof(m->ip));
	if (m->ip.ihl != 5)
		return -1;
	m->icmp.type = ICMP_DEST_UNREACH;
	m->icmp.code = ICMP_PORT_UNREACH;
	m->icmp.checksum = __csum_fold(bpf_csum_diff(0, 0, (__be32 *)&m->icmp, icmp_len, 0));

	__swap_macs(&m->eth);
	m->ip.daddr = m->ip.saddr;
	__builtin_memcpy(&m->ip.saddr, m->quote + __builtin_offsetof(struct iphdr, daddr), 4);
	m->ip.tos = 0;
	m->ip.tot_len = bpf_htons(sizeof(struct iphdr) + icmp_len);
	m->ip.id = 0;
	m->ip.frag_off = 0;
	m->ip.ttl = 64;
	m->ip.protocol = IPPROTO_ICMP;
	m->ip.check = 0;
	m->ip.check = __csum_fold(bpf_csum_diff(0, 0, (__be32 *)&m->ip, sizeof(m->ip), 0));

	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(struct iphdr) + icmp_len, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 0, &m->eth, sizeof(m->eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &m->ip, sizeof(struct iphdr) + icmp_len, 0) < 0)
		return -1;
	return 0;
}

static __always_inline int __icmp_unreach6(struct __sk_buff *skb)
{
	union icmp_scratch *s = __icmp_scratch();
	const __u32 icmp_len = sizeof(struct icmp6hdr) + ICMP6_QUOTE;
	struct icmp6_msg *m;

	if (!s)
		return -1;
	m = &s->v6;
	if (bpf_skb_load_bytes(skb, 0, &m->eth, sizeof(m->eth)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, m->quote, sizeof(m->quote)) < 0)
		return -1;
	__builtin_memcpy(&m->ip6, m->quote, sizeof(m->ip6));
	m->saddr = m->ip6.daddr;
	m->daddr = m->ip6.saddr;
	m->len = bpf_htonl(icmp_len);
	m->nexthdr = IPPROTO_ICMPV6;
	m->icmp6.icmp6_type = ICMPV6_DEST_UNREACH;
	m->icmp6.icmp6_code = ICMPV6_PORT_UNREACH;
	m->icmp6.icmp6_cksum = __csum_fold(bpf_csum_diff(0, 0, (__be32 *)&m->saddr, 40 + icmp_len, 0));

	__swap_macs(&m->eth);
	m->ip6.saddr = m->saddr;
	m->ip6.daddr = m->daddr;
	m->ip6.priority = 0;
	m->ip6.flow_lbl[0] = 0;
	m->ip6.flow_lbl[1] = 0;
	m->ip6.flow_lbl[2] = 0;
	m->ip6.payload_len = bpf_htons(icmp_len);
	m->ip6.nexthdr = IPPROTO_ICMPV6;
	m->ip6.hop_limit = 64;

	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(struct ipv6hdr) + icmp_len, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 0, &m->eth, sizeof(m->eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &m->ip6, sizeof(struct ipv6hdr), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(struct ipv6hdr), &m->icmp6, icmp_len, 0) < 0)
		return -1;
	return 0;
}

static __always_inline int icmp_unreach_reply(struct __sk_buff *skb, const struct flow *f)
{
	if (f->frag != FRAG_NONE || (f->tuple.nexthdr != IPPROTO_TCP && f->tuple.nexthdr != IPPROTO_UDP))
		return -1;
	if (f->tuple.family == 4)
		return __icmp_unreach4(skb);
	if (f->tuple.family == 6)
		return __icmp_unreach6(skb);
	return -1;
}

#endif /* WEIR_ICMP_REPLY_H */
