/* SPDX-License-Identifier: Apache-2.0 */
/* Refusing a connection to a service without backends, at once: the packet is turned, in place,
 * into the answer that refuses it, addressed back to its sender. The caller redirects it (back out
 * of the device it came in by, or to the pod's side of the veth) and counts the original as
 * DROP_NO_SERVICE.
 *
 *   refuse_reply(skb, flow) -> 0, or -1 when no answer is due (the packet stays as it was)
 *     TCP  an RST (RFC 9293 reset generation: seq from the segment's ACK, else ACK of its
 *          sequence space); never for an RST. The sender's stack takes an RST even while the
 *          connecting process holds the socket (it is queued to the socket's backlog), unlike an
 *          ICMP error, which Linux drops then (LockDroppedIcmps): a connect() fails at once.
 *     UDP  ICMP port unreachable (IPv4 type 3 code 3 quoting the IP header and 8 bytes, RFC 792;
 *          IPv6 type 1 code 4 quoting the first 48 bytes, RFC 4443), which a connected socket
 *          reports as ECONNREFUSED. Cilium answers both protocols with ICMP.
 *     IPv4 packets with IP options and fragments get no answer.
 * The answers are built in a per-CPU scratch buffer: the BPF stack (512 bytes for a program and
 * the functions it calls) has no room for them beside the datapath's own state.
 */
#ifndef WEIR_REFUSE_H
#define WEIR_REFUSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <linux/tcp.h>
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

struct rst4_msg {
	struct ethhdr eth;
	__u16 pad;
	struct iphdr ip;
	struct tcphdr in; /* the segment refused */
	/* The pseudo-header the checksum covers, then the RST itself. */
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
	struct tcphdr out;
};

struct rst6_msg {
	struct ethhdr eth;
	__u16 pad;
	struct ipv6hdr ip6;
	struct tcphdr in;
	struct in6_addr saddr;
	struct in6_addr daddr;
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
	struct tcphdr out;
};

union refuse_scratch {
	struct icmp4_msg v4;
	struct icmp6_msg v6;
	struct rst4_msg rst4;
	struct rst6_msg rst6;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, union refuse_scratch);
	__uint(max_entries, 1);
} weir_refuse_scratch SEC(".maps");

static __always_inline union refuse_scratch *__refuse_scratch(void)
{
	__u32 zero = 0;
	union refuse_scratch *s = bpf_map_lookup_elem(&weir_refuse_scratch, &zero);

	if (s)
		__builtin_memset(s, 0, sizeof(*s));
	return s;
}

/* The IPv4 header of an answer: from the original's receiver to its sender, `l4_len` bytes after. */
static __always_inline void __ip4_answer(struct iphdr *ip, __be32 saddr, __be32 daddr, __u8 proto, __u32 l4_len)
{
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->tos = 0;
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + l4_len);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = proto;
	ip->check = 0;
	ip->check = __csum_fold(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
}

static __always_inline void __ip6_answer(struct ipv6hdr *ip6, const struct in6_addr *saddr,
					 const struct in6_addr *daddr, __u8 nexthdr, __u32 l4_len)
{
	ip6->saddr = *saddr;
	ip6->daddr = *daddr;
	ip6->priority = 0;
	ip6->flow_lbl[0] = 0;
	ip6->flow_lbl[1] = 0;
	ip6->flow_lbl[2] = 0;
	ip6->payload_len = bpf_htons(l4_len);
	ip6->nexthdr = nexthdr;
	ip6->hop_limit = 64;
}

/* Makes the packet the answer: Ethernet (addresses swapped by the caller), L3, L4. */
static __always_inline int __store_answer(struct __sk_buff *skb, const struct ethhdr *eth, const void *l3,
					  __u32 l3_len, const void *l4, __u32 l4_len)
{
	if (bpf_skb_change_tail(skb, ETH_HLEN + l3_len + l4_len, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 0, eth, sizeof(*eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, l3, l3_len, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + l3_len, l4, l4_len, 0) < 0)
		return -1;
	return 0;
}

static __always_inline int __icmp_unreach4(struct __sk_buff *skb)
{
	union refuse_scratch *s = __refuse_scratch();
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
	__ip4_answer(&m->ip, m->ip.daddr, m->ip.saddr, IPPROTO_ICMP, icmp_len);
	return __store_answer(skb, &m->eth, &m->ip, sizeof(m->ip), &m->icmp, icmp_len);
}

static __always_inline int __icmp_unreach6(struct __sk_buff *skb)
{
	union refuse_scratch *s = __refuse_scratch();
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
	__ip6_answer(&m->ip6, &m->saddr, &m->daddr, IPPROTO_ICMPV6, icmp_len);
	return __store_answer(skb, &m->eth, &m->ip6, sizeof(m->ip6), &m->icmp6, icmp_len);
}

/* The RST answering `in` (a segment of `payload` bytes), from its receiver. */
static __always_inline void __rst_fill(struct tcphdr *out, const struct tcphdr *in, __u32 payload)
{
	__u32 seq_len = payload + in->syn + in->fin;

	out->source = in->dest;
	out->dest = in->source;
	out->doff = 5;
	out->rst = 1;
	if (in->ack) {
		out->seq = in->ack_seq;
	} else {
		out->ack = 1;
		out->ack_seq = bpf_htonl(bpf_ntohl(in->seq) + seq_len);
	}
}

static __always_inline int __rst4(struct __sk_buff *skb, const struct flow *f)
{
	union refuse_scratch *s = __refuse_scratch();
	struct rst4_msg *m;
	__u32 hdrs;

	if (!s)
		return -1;
	m = &s->rst4;
	if (bpf_skb_load_bytes(skb, 0, &m->eth, sizeof(m->eth)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, &m->ip, sizeof(m->ip)) < 0 || m->ip.ihl != 5 ||
	    bpf_skb_load_bytes(skb, f->l4_off, &m->in, sizeof(m->in)) < 0)
		return -1;
	hdrs = sizeof(struct iphdr) + m->in.doff * 4;
	__rst_fill(&m->out, &m->in, bpf_ntohs(m->ip.tot_len) > hdrs ? bpf_ntohs(m->ip.tot_len) - hdrs : 0);
	m->saddr = m->ip.daddr;
	m->daddr = m->ip.saddr;
	m->proto = IPPROTO_TCP;
	m->len = bpf_htons(sizeof(struct tcphdr));
	m->out.check = __csum_fold(bpf_csum_diff(0, 0, &m->saddr, 12 + sizeof(struct tcphdr), 0));

	__swap_macs(&m->eth);
	__ip4_answer(&m->ip, m->saddr, m->daddr, IPPROTO_TCP, sizeof(m->out));
	return __store_answer(skb, &m->eth, &m->ip, sizeof(m->ip), &m->out, sizeof(m->out));
}

static __always_inline int __rst6(struct __sk_buff *skb, const struct flow *f)
{
	union refuse_scratch *s = __refuse_scratch();
	struct rst6_msg *m;
	__u32 payload, hdrs;

	if (!s)
		return -1;
	m = &s->rst6;
	if (bpf_skb_load_bytes(skb, 0, &m->eth, sizeof(m->eth)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, &m->ip6, sizeof(m->ip6)) < 0 ||
	    bpf_skb_load_bytes(skb, f->l4_off, &m->in, sizeof(m->in)) < 0)
		return -1;
	/* The payload length counts extension headers too: what follows the TCP header is data. */
	hdrs = f->l4_off - ETH_HLEN - sizeof(struct ipv6hdr) + m->in.doff * 4;
	payload = bpf_ntohs(m->ip6.payload_len);
	__rst_fill(&m->out, &m->in, payload > hdrs ? payload - hdrs : 0);
	m->saddr = m->ip6.daddr;
	m->daddr = m->ip6.saddr;
	m->len = bpf_htonl(sizeof(struct tcphdr));
	m->nexthdr = IPPROTO_TCP;
	m->out.check = __csum_fold(bpf_csum_diff(0, 0, (__be32 *)&m->saddr, 40 + sizeof(struct tcphdr), 0));

	__swap_macs(&m->eth);
	__ip6_answer(&m->ip6, &m->saddr, &m->daddr, IPPROTO_TCP, sizeof(m->out));
	return __store_answer(skb, &m->eth, &m->ip6, sizeof(m->ip6), &m->out, sizeof(m->out));
}

static __always_inline int refuse_reply(struct __sk_buff *skb, const struct flow *f)
{
	if (f->frag != FRAG_NONE)
		return -1;
	if (f->tuple.nexthdr == IPPROTO_TCP) {
		if (f->tcp_flags & TCP_FLAG_RST)
			return -1;
		return f->tuple.family == 4 ? __rst4(skb, f) : __rst6(skb, f);
	}
	if (f->tuple.nexthdr != IPPROTO_UDP)
		return -1;
	if (f->tuple.family == 4)
		return __icmp_unreach4(skb);
	return __icmp_unreach6(skb);
}

#endif /* WEIR_REFUSE_H */
