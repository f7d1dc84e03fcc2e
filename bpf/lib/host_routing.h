/* SPDX-License-Identifier: Apache-2.0 */
/* eBPF host routing (Cilium's --enable-host-legacy-routing=false): what a pod sends and its egress
 * policy forwards does not go through the node namespace's IP stack.
 *
 *   to a pod of this node   (weir_lxc knows the destination address) weir_from_container tail
 *                           calls weir_to_local (weir_calls[CALL_TO_LOCAL]) with the destination
 *                           in skb->cb: the destination's ingress stage (the same pipeline
 *                           weir_to_container runs: its endpoint, conntrack, policy, events,
 *                           metrics), then the frame is addressed as the node's routing would
 *                           (the pod's MAC from its host veth's, TTL / hop limit - 1) and handed
 *                           to the pod's own interface with bpf_redirect_peer. The destination's
 *                           weir_to_container does not see it (tc egress of its host veth is
 *                           skipped).
 *   anywhere else           a FIB lookup in the node namespace; a forwarding route sends the
 *                           packet out of its device with bpf_redirect_neigh (the kernel fills
 *                           the neighbour's MAC). Local destinations (the node itself, the node
 *                           proxy) and anything the FIB does not forward take the stack.
 * Only the plain forward verdict is routed so: packets for the node proxy (marked, socket
 * assigned), hairpin, NodePort replies and refusals keep their own verdicts, and a packet whose
 * TTL would expire takes the stack (which answers with ICMP time exceeded). No stage in
 * weir_calls (not loaded yet): the packet takes the stack and the destination's weir_to_container
 * judges it, as in legacy mode. weir_host_routing = 0 (--host-routing legacy): always the stack.
 *
 *   host_route(skb, flow) -> tc verdict          at weir_from_container, after a forward verdict
 *   host_deliver_local(skb, flow) -> tc verdict   at weir_to_local, after the ingress verdict
 *   host_routing_target() -> destination ifindex  what weir_from_container put in skb->cb
 *
 * skb->cb between the two programs: cb[0] the destination's host veth ifindex, cb[1] a nonce,
 * cb[4] CB_MAGIC_FLOW; the scratch's hr_state (lib/stages.h) holds the same nonce, the destination
 * and the frame's new destination and source MAC addresses (struct lxc_info.mac, host_mac), and
 * its flow the packet as the sender parsed it, which weir_to_local takes over instead of parsing
 * the packet again. Entry programs of earlier weirs (attached until the agent re-attaches their
 * endpoints after an upgrade) write cb[1..3] = the MACs and cb[4] = CB_MAGIC, and an hr_state
 * that does not vouch for this packet (another load's scratch) is not used: then weir_to_local
 * parses the packet and takes the MACs from cb (CB_MAGIC) or weir_lxc (CB_MAGIC_FLOW). The TTL /
 * hop limit is the parser's (flow->ttl).
 */
#ifndef WEIR_HOST_ROUTING_H
#define WEIR_HOST_ROUTING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/common.h"
#include "lib/endpoint.h"
#include "lib/parse.h"
#include "lib/stages.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* 1: eBPF host routing (--host-routing bpf, the default); 0: legacy, the node's stack routes. */
volatile const __u32 weir_host_routing = 1;

#define CB_MAGIC 0x77656972      /* "weir": MACs in cb[1..3] (entry programs of earlier weirs) */
#define CB_MAGIC_FLOW 0x77656973 /* nonce in cb[1], MACs and flow in the scratch's hr_state */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lxc_key);
	__type(value, struct lxc_info);
	__uint(max_entries, 2 * WEIR_ENDPOINTS_MAX); /* an IPv4 and an IPv6 address per pod */
} weir_lxc SEC(".maps");

/* What the node's forwarding does to the IP header: TTL - 1 (IPv4 checksum updated). The TTL is the
 * parser's (flow->ttl): nothing before host routing changes it. */
static __always_inline int __hr_dec_ttl(struct __sk_buff *skb, const struct flow *f)
{
	__u8 family = f->tuple.family;
	__u8 ttl = f->ttl;

	if (ttl <= 1)
		return -1;
	ttl -= 1;
	if (family == 4 &&
	    bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), bpf_htons((__u16)(ttl + 1) << 8),
				bpf_htons((__u16)ttl << 8), 2) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, family == 4 ? ETH_HLEN + 8 : ETH_HLEN + 7, &ttl, 1, 0) < 0 ? -1 : 0;
}

/* Out of the device the node's FIB names, without the stack. A subprogram: its lookup structures
 * stay off the entry program's stack (which tail calls keep from being split). */
static __noinline int __hr_fib(struct __sk_buff *skb, const struct flow *f)
{
	struct bpf_fib_lookup p = {
		.l4_protocol = f->tuple.nexthdr,
		.ifindex = skb->ifindex,
	};
	struct bpf_redir_neigh nh = {};
	long rc;

	if (f->tuple.family == 4) {
		p.family = AF_INET;
		__builtin_memcpy(&p.ipv4_src, f->tuple.saddr, 4);
		__builtin_memcpy(&p.ipv4_dst, f->tuple.daddr, 4);
	} else {
		p.family = AF_INET6;
		__builtin_memcpy(p.ipv6_src, f->tuple.saddr, 16);
		__builtin_memcpy(p.ipv6_dst, f->tuple.daddr, 16);
	}
	rc = bpf_fib_lookup(skb, &p, sizeof(p), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || p.ifindex == skb->ifindex)
		return TC_ACT_OK;
	if (__hr_dec_ttl(skb, f) < 0)
		return TC_ACT_OK;
	nh.nh_family = p.family;
	if (f->tuple.family == 4)
		nh.ipv4_nh = p.ipv4_dst; /* the gateway, or the destination itself */
	else
		__builtin_memcpy(nh.ipv6_nh, p.ipv6_dst, 16);
	return bpf_redirect_neigh(p.ifindex, &nh, sizeof(nh), 0);
}

static __always_inline struct lxc_info *lxc_lookup(__u8 family, const __u8 *addr)
{
	struct lxc_key key = { .family = family };

	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&weir_lxc, &key);
}

/* `f` is the scratch's flow (lib/stages.h): weir_to_local takes it over instead of parsing again. */
static __always_inline int host_route(struct __sk_buff *skb, struct flow *f)
{
	struct hr_state *hr = &((struct flow_scratch *)f)->hr; /* f is the scratch's first member */
	const __u32 *macs;
	struct lxc_info *to;
	__u32 nonce;

	if (!weir_host_routing || f->ttl <= 1)
		return TC_ACT_OK;
	to = lxc_lookup(f->tuple.family, f->tuple.daddr);
	if (!to)
		return __hr_fib(skb, f);
	if (to->ifindex == skb->ifindex)
		return TC_ACT_OK;
	macs = (const __u32 *)to->mac; /* 12 bytes at offset 4 of the value: aligned words */
	nonce = bpf_get_prandom_u32();
	hr->magic = STAGE_MAGIC;
	hr->nonce = nonce;
	hr->ifindex = to->ifindex;
	hr->mac[0] = macs[0];
	hr->mac[1] = macs[1];
	hr->mac[2] = macs[2];
	skb->cb[0] = to->ifindex;
	skb->cb[1] = nonce;
	skb->cb[4] = CB_MAGIC_FLOW;
	bpf_tail_call(skb, &weir_calls, CALL_TO_LOCAL);
	/* No stage loaded: the stack routes it, the destination's weir_to_container judges it. */
	skb->cb[4] = 0;
	return TC_ACT_OK;
}

/* The destination's host veth as weir_from_container named it; 0: not called by it. */
static __always_inline __u32 host_routing_target(struct __sk_buff *skb)
{
	return skb->cb[4] == CB_MAGIC || skb->cb[4] == CB_MAGIC_FLOW ? skb->cb[0] : 0;
}

/* The scratch holds this packet's flow as weir_from_container parsed it, for `ifindex`. */
static __always_inline int host_routing_flow_ok(struct __sk_buff *skb, const struct flow_scratch *sc, __u32 ifindex)
{
	return skb->cb[4] == CB_MAGIC_FLOW && sc->hr.magic == STAGE_MAGIC && sc->hr.nonce == skb->cb[1] &&
	       sc->hr.ifindex == ifindex;
}

/* `macs`: the frame's new destination and source MAC addresses (struct hr_state's mac). */
static __always_inline int host_deliver_local(struct __sk_buff *skb, const struct flow *f, __u32 ifindex,
					      const __u32 *macs)
{
	__u32 m[3] = { macs[0], macs[1], macs[2] };

	/* Cannot fail on a header the parser read; if it did, the stack would still route it. */
	if (__hr_dec_ttl(skb, f) < 0 || bpf_skb_store_bytes(skb, 0, m, 12, 0) < 0)
		return TC_ACT_OK;
	return bpf_redirect_peer(ifindex, 0);
}

#endif /* WEIR_HOST_ROUTING_H */
