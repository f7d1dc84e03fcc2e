/* SPDX-License-Identifier: Apache-2.0 */
/* Packet parsing: Ethernet -> IPv4/IPv6 (+ extension headers) -> L4 ports, into a struct flow.
 *
 *   parse_packet(skb, flow) -> PARSE_OK, PARSE_PASS or a DROP_* reason
 *     PARSE_OK    flow->tuple holds the addresses, ports and L4 protocol (flags 0)
 *     PARSE_PASS  ARP, IPv6 neighbour discovery and other link-scoped IPv6 (MLD, DAD, link-local
 *                 peers on the pod's own link): forward untouched, no conntrack, no policy
 *     DROP_UNSUPPORTED_L3  any other ethertype (VLAN tags included)
 *     DROP_INVALID         broken IP header: version, IHL < 5, lengths beyond the packet,
 *                          IPv6 jumbograms, more than IPV6_MAX_EXT extension headers
 *     DROP_CT_INVALID_HDR  truncated L4 header, TCP doff < 5, truncated ICMP error
 *
 * Every read goes through bpf_skb_load_bytes, which checks bounds at run time and works on
 * non-linear skbs. Lengths are bounded by the IP header's own length field, not only by skb->len,
 * so trailing padding is never parsed as payload.
 *
 * Ports in the tuple:
 *   TCP/UDP/SCTP   the header's ports
 *   ICMP echo      request: sport = identifier, dport = 0; reply: sport = 0, dport = identifier,
 *                  so that a reply is the reversed tuple of its request (conntrack needs this)
 *   other ICMP, other protocols   0 / 0
 *   later fragments               not parsed here: frag.h fills them from the first fragment
 * ICMP/ICMPv6 errors (unreachable, packet too big, time exceeded, parameter problem) also get the
 * tuple of the packet they quote in flow->inner (conntrack relates them to a connection).
 */
#ifndef WEIR_PARSE_H
#define WEIR_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/common.h"
#include "lib/drop_reasons.h"

#define PARSE_OK 0
#define PARSE_PASS 1

#define IPV6_MAX_EXT 8 /* extension headers skipped before giving up (DROP_INVALID) */

#define FRAG_NONE 0
#define FRAG_FIRST 1 /* offset 0, more fragments follow: carries the L4 header */
#define FRAG_LATER 2 /* offset > 0: no L4 header */

#define ICMP_KIND_NONE 0  /* not ICMP, or an ICMP type that is neither echo nor error */
#define ICMP_KIND_ECHO 1
#define ICMP_KIND_ERROR 2 /* flow->inner holds the quoted packet's tuple */

#define IP_MF_BIT 0x2000
#define IP_OFFSET_MASK 0x1fff
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

struct flow {
	struct ct_key tuple; /* as this packet carries it; flags are set by conntrack */
	struct ct_key inner; /* ICMP errors only */
	__u32 frag_id;
	__u8 frag;       /* FRAG_* */
	__u8 frag_proto; /* header after the IPv4 header / IPv6 Fragment header: same in all fragments */
	__u8 icmp_kind;  /* ICMP_KIND_* */
	__u8 tcp_flags;
	__u16 l4_off; /* where the L4 header starts (from the Ethernet header); 0 for later fragments */
	__u8 ct_reply_hint; /* conntrack: look for a reply first (lib/conntrack.h); the parser leaves it */
	__u8 ttl;           /* IPv4 TTL / IPv6 hop limit as parsed (lib/host_routing.h) */
};

/* Ports of the L4 header at `off` (TCP/UDP/SCTP start with sport, dport; ICMP echo uses the id). */
static __always_inline int __parse_ports(struct __sk_buff *skb, struct ct_key *t, __u32 off, __u32 end)
{
	__be16 ports[4];

	if (t->nexthdr != IPPROTO_TCP && t->nexthdr != IPPROTO_UDP && t->nexthdr != IPPROTO_SCTP &&
	    t->nexthdr != IPPROTO_ICMP && t->nexthdr != IPPROTO_ICMPV6)
		return PARSE_OK;
	/* RFC 792/4443 errors quote at least 8 bytes of the L4 header: all we read. */
	if (off + 8 > end || bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
		return DROP_CT_INVALID_HDR;
	if (t->nexthdr == IPPROTO_ICMP || t->nexthdr == IPPROTO_ICMPV6) {
		__u8 type = ((__u8 *)ports)[0];
		int v4 = t->nexthdr == IPPROTO_ICMP;

		/* ports[2] is the echo identifier. */
		if (type == (v4 ? ICMP_ECHO : ICMPV6_ECHO_REQUEST))
			t->sport = ports[2];
		else if (type == (v4 ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY))
			t->dport = ports[2];
		return PARSE_OK;
	}
	t->sport = ports[0];
	t->dport = ports[1];
	return PARSE_OK;
}

/* The packet quoted by an ICMP error, at `off`; only its header and first 8 L4 bytes. */
static __always_inline int __parse_inner4(struct __sk_buff *skb, struct flow *f, __u32 off, __u32 end)
{
	struct iphdr ip;

	if (off + sizeof(ip) > end || bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return DROP_CT_INVALID_HDR;
	if (ip.version != 4 || ip.ihl < 5)
		return DROP_CT_INVALID_HDR;
	f->inner.family = 4;
	f->inner.nexthdr = ip.protocol;
	__builtin_memcpy(f->inner.saddr, &ip.saddr, 4);
	__builtin_memcpy(f->inner.daddr, &ip.daddr, 4);
	return __parse_ports(skb, &f->inner, off + ip.ihl * 4, end);
}

/* Quoted IPv6 packet: extension headers in it are not skipped, so such an error relates to nothing. */
static __always_inline int __parse_inner6(struct __sk_buff *skb, struct flow *f, __u32 off, __u32 end)
{
	struct ipv6hdr ip6;

	if (off + sizeof(ip6) > end || bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
		return DROP_CT_INVALID_HDR;
	if (ip6.version != 6)
		return DROP_CT_INVALID_HDR;
	f->inner.family = 6;
	f->inner.nexthdr = ip6.nexthdr;
	__builtin_memcpy(f->inner.saddr, &ip6.saddr, 16);
	__builtin_memcpy(f->inner.daddr, &ip6.daddr, 16);
	return __parse_ports(skb, &f->inner, off + sizeof(ip6), end);
}

static __always_inline int __parse_icmp(struct __sk_buff *skb, struct flow *f, __u32 off, __u32 end)
{
	__u8 type;

	if (bpf_skb_load_bytes(skb, off, &type, 1) < 0)
		return DROP_CT_INVALID_HDR;
	if (f->tuple.nexthdr == IPPROTO_ICMP) {
		if (type == ICMP_ECHO || type == ICMP_ECHOREPLY)
			f->icmp_kind = ICMP_KIND_ECHO;
		if (type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB) {
			f->icmp_kind = ICMP_KIND_ERROR;
			return __parse_inner4(skb, f, off + 8, end);
		}
		return PARSE_OK;
	}
	if (type >= 133 && type <= 137) /* router/neighbour solicitation/advertisement, redirect */
		return PARSE_PASS;
	if (type == ICMPV6_ECHO_REQUEST || type == ICMPV6_ECHO_REPLY)
		f->icmp_kind = ICMP_KIND_ECHO;
	if (type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG || type == ICMPV6_TIME_EXCEED ||
	    type == ICMPV6_PARAMPROB) {
		f->icmp_kind = ICMP_KIND_ERROR;
		return __parse_inner6(skb, f, off + 8, end);
	}
	return PARSE_OK;
}

/* L4 header at `off`; `end` is where the IP payload ends. */
static __always_inline int __parse_l4(struct __sk_buff *skb, struct flow *f, __u32 off, __u32 end)
{
	if (f->frag == FRAG_LATER)
		return PARSE_OK;
	if (off > end)
		return DROP_INVALID;
	f->l4_off = off;

	switch (f->tuple.nexthdr) {
	case IPPROTO_TCP: {
		struct tcphdr tcp;

		if (off + sizeof(tcp) > end || bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)) < 0)
			return DROP_CT_INVALID_HDR;
		if (tcp.doff < 5 || off + tcp.doff * 4 > end)
			return DROP_CT_INVALID_HDR;
		f->tuple.sport = tcp.source;
		f->tuple.dport = tcp.dest;
		f->tcp_flags = ((__u8 *)&tcp)[13];
		return PARSE_OK;
	}
	case IPPROTO_UDP: {
		struct udphdr udp;

		if (off + sizeof(udp) > end || bpf_skb_load_bytes(skb, off, &udp, sizeof(udp)) < 0)
			return DROP_CT_INVALID_HDR;
		/* A first fragment carries only part of the datagram the UDP length describes. */
		if (bpf_ntohs(udp.len) < sizeof(udp) ||
		    (f->frag == FRAG_NONE && off + bpf_ntohs(udp.len) > end))
			return DROP_CT_INVALID_HDR;
		f->tuple.sport = udp.source;
		f->tuple.dport = udp.dest;
		return PARSE_OK;
	}
	case IPPROTO_SCTP: /* common header: sport, dport, verification tag, checksum */
		if (off + 12 > end)
			return DROP_CT_INVALID_HDR;
		return __parse_ports(skb, &f->tuple, off, end);
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		int ret;

		if (off + 8 > end)
			return DROP_CT_INVALID_HDR;
		ret = __parse_ports(skb, &f->tuple, off, end);
		if (ret != PARSE_OK)
			return ret;
		return __parse_icmp(skb, f, off, end);
	}
	default:
		return PARSE_OK;
	}
}

static __always_inline int __parse4(struct __sk_buff *skb, struct flow *f)
{
	struct iphdr ip;
	__u32 hlen, tot;
	__u16 frag_off;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return DROP_INVALID;
	if (ip.version != 4 || ip.ihl < 5)
		return DROP_INVALID;
	hlen = ip.ihl * 4;
	tot = bpf_ntohs(ip.tot_len);
	if (tot < hlen || ETH_HLEN + tot > skb->len)
		return DROP_INVALID;

	f->tuple.family = 4;
	f->tuple.nexthdr = ip.protocol;
	f->ttl = ip.ttl;
	__builtin_memcpy(f->tuple.saddr, &ip.saddr, 4);
	__builtin_memcpy(f->tuple.daddr, &ip.daddr, 4);

	frag_off = bpf_ntohs(ip.frag_off);
	if (frag_off & IP_OFFSET_MASK)
		f->frag = FRAG_LATER;
	else if (frag_off & IP_MF_BIT)
		f->frag = FRAG_FIRST;
	f->frag_id = bpf_ntohs(ip.id);
	f->frag_proto = ip.protocol;

	return __parse_l4(skb, f, ETH_HLEN + hlen, ETH_HLEN + tot);
}

/* Link-scoped IPv6: a destination that is link-local (fe80::/10) or interface- or link-local
 * multicast (ff01::/16, ff02::/16), or a source that is unspecified (::) or link-local. No router
 * forwards such a packet: it is the pod talking to its own link (neighbour discovery, MLD, DAD),
 * never to a peer, so it is not subject to pod-to-pod policy (as for ARP). */
static __always_inline int __link_scoped6(const struct ipv6hdr *ip6)
{
	const __u8 *d = ip6->daddr.in6_u.u6_addr8;
	const __u8 *s = ip6->saddr.in6_u.u6_addr8;
	int s_unspec = !(ip6->saddr.in6_u.u6_addr32[0] | ip6->saddr.in6_u.u6_addr32[1] |
			 ip6->saddr.in6_u.u6_addr32[2] | ip6->saddr.in6_u.u6_addr32[3]);

	if (d[0] == 0xfe && (d[1] & 0xc0) == 0x80)
		return 1;
	if (d[0] == 0xff && ((d[1] & 0x0f) == 0x01 || (d[1] & 0x0f) == 0x02))
		return 1;
	return s_unspec || (s[0] == 0xfe && (s[1] & 0xc0) == 0x80);
}

static __always_inline int __parse6(struct __sk_buff *skb, struct flow *f)
{
	struct ipv6hdr ip6;
	__u32 off, end;
	__u8 nh;
	int i;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
		return DROP_INVALID;
	if (ip6.version != 6)
		return DROP_INVALID;
	off = ETH_HLEN + sizeof(ip6);
	end = off + bpf_ntohs(ip6.payload_len);
	/* payload_len 0 is a jumbogram (hop-by-hop option): not supported. */
	if (end == off || end > skb->len)
		return DROP_INVALID;

	f->tuple.family = 6;
	f->ttl = ip6.hop_limit;
	__builtin_memcpy(f->tuple.saddr, &ip6.saddr, 16);
	__builtin_memcpy(f->tuple.daddr, &ip6.daddr, 16);
	if (__link_scoped6(&ip6))
		return PARSE_PASS;

	nh = ip6.nexthdr;
	for (i = 0; i < IPV6_MAX_EXT; i++) {
		__u8 hdr[8];

		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING && nh != IPPROTO_DSTOPTS &&
		    nh != IPPROTO_FRAGMENT && nh != IPPROTO_AH)
			break;
		if (off + 8 > end || bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)) < 0)
			return DROP_INVALID;
		if (nh == IPPROTO_FRAGMENT) {
			__u16 frag_off = bpf_ntohs(*(__be16 *)&hdr[2]);

			if (frag_off & 0xfff8)
				f->frag = FRAG_LATER;
			else if (frag_off & 1)
				f->frag = FRAG_FIRST;
			/* offset 0 without M ("atomic fragment", RFC 6946) is a whole packet */
			f->frag_id = bpf_ntohl(*(__be32 *)&hdr[4]);
			f->frag_proto = hdr[0];
			off += 8;
			/* What follows in a later fragment is the middle of the payload, not headers. */
			if (f->frag == FRAG_LATER) {
				nh = hdr[0];
				break;
			}
		} else if (nh == IPPROTO_AH) {
			off += (hdr[1] + 2) * 4;
		} else {
			off += (hdr[1] + 1) * 8;
		}
		nh = hdr[0];
	}
	if (f->frag != FRAG_LATER && (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
				      nh == IPPROTO_FRAGMENT || nh == IPPROTO_AH))
		return DROP_INVALID;
	f->tuple.nexthdr = nh;

	return __parse_l4(skb, f, off, end);
}

static __always_inline int parse_packet(struct __sk_buff *skb, struct flow *f)
{
	__be16 proto;

	if (bpf_skb_load_bytes(skb, __builtin_offsetof(struct ethhdr, h_proto), &proto, sizeof(proto)) < 0)
		return DROP_INVALID;
	switch (proto) {
	case bpf_htons(ETH_P_ARP):
		return PARSE_PASS;
	case bpf_htons(ETH_P_IP):
		return __parse4(skb, f);
	case bpf_htons(ETH_P_IPV6):
		return __parse6(skb, f);
	default:
		return DROP_UNSUPPORTED_L3;
	}
}

#endif /* WEIR_PARSE_H */
