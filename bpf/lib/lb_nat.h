/* SPDX-License-Identifier: Apache-2.0 */
/* East-west service translation at tc, for what did not pass a socket hook (a process that
 * entered a pod's network namespace but not its cgroup, an agent with the socket LB off): Cilium's
 * per-packet load balancing in bpf_lxc (lb4_local/lb6_local with CT_SERVICE entries).
 *
 *   lb_nat_egress(skb, flow, rev_nat_index, reason) -> LB_NAT_NONE | LB_NAT_DONE | LB_NAT_DROP
 *     At weir_from_container, for a packet conntrack does not know, whose destination is a
 *     frontend (weir_lb_services). The service tuple, as the pod sent it, keys weir_lb_ct: a
 *     tuple seen before keeps its backend while that backend exists (a terminating one too),
 *     except that a TCP SYN keeps it only while it is an ACTIVE backend of the service (a
 *     retransmitted SYN must reach the backend the first one did; a new connection must not
 *     reach a terminating one).
 *     Otherwise lb_select picks one (random, Maglev over the tuple, ClientIP affinity by the pod's
 *     address). The destination address and port are rewritten (checksums fixed) and so is
 *     flow->tuple: conntrack, policy and flow events all see the pod -> backend flow, and the
 *     conntrack entry created for it carries *rev_nat_index.
 *     LB_NAT_DROP: *reason is DROP_NO_SERVICE (no ACTIVE backend; the caller refuses with an RST
 *     or ICMP port unreachable, lib/refuse.h), DROP_FRAG_NOSUPPORT (a fragmented datagram to a
 *     frontend) or a map/rewrite failure. Never forwarded to the frontend address untranslated.
 *   lb_nat_reply(skb, flow, rev_nat_index) -> 0 | -1
 *     At weir_to_container, for a reply whose conntrack entry has a rev_nat_index: the source
 *     becomes the frontend again (weir_lb_revnat), so the pod sees the address it dialled.
 *     -1 (frontend gone meanwhile): the reply passes as it is and the pod's stack refuses it.
 *
 * Hairpin (IPv4): a pod whose Service picked the pod itself. Its own address as the source would
 * make its stack drop the packet, so the source becomes LB_HAIRPIN4 (Cilium's IPV4_LOOPBACK,
 * 169.254.42.1) and the packet goes straight back into the pod (lb_nat_bounce: bpf_redirect_peer,
 * it never leaves the veth); LB_NAT_HAIRPIN tells the caller, which judges the pod's egress and
 * ingress policy (self traffic is policy-evaluated, as Kubernetes' conformance expects).
 *   lb_nat_hairpin_reply(skb, flow, bytes, now) -> 0 | -1
 *     At weir_from_container, for the pod answering LB_HAIRPIN4: the hairpin's conntrack entry
 *     (tracked as the pod's egress) turns it into frontend -> pod, and lb_nat_bounce sends it back.
 * Unfragmented TCP and UDP, IPv4 and IPv6 (no IPv6 hairpin). ICMP errors about a translated
 * connection are not translated back (the pod's socket ignores them; its own timeouts apply).
 */
#ifndef WEIR_LB_NAT_H
#define WEIR_LB_NAT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"
#include "lib/conntrack.h"
#include "lib/drop_reasons.h"
#include "lib/lb.h"
#include "lib/parse.h"
#include "lib/refuse.h"

#define WEIR_LB_CT_MAX 65536

#define LB_NAT_NONE 0
#define LB_NAT_DONE 1
#define LB_NAT_DROP 2
#define LB_NAT_HAIRPIN 3 /* done, and the backend is the pod itself: send with lb_nat_bounce */

#define LB_HAIRPIN4 0xa9fe2a01 /* 169.254.42.1, host order */

/* The backend a service tuple was given. User space does not read it, but it is pinned (see the
 * map catalogue): a restarted agent's programs keep every translated connection on its backend. */
struct lb_ct_value {
	__u32 backend_id;
	__u16 rev_nat_index;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key); /* the tuple as the pod sent it, flags 0 */
	__type(value, struct lb_ct_value);
	__uint(max_entries, WEIR_LB_CT_MAX);
} weir_lb_ct SEC(".maps");

#define LB_IP4_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))

/* Rewrites the source (dst == 0) or destination address and port of the packet `f` describes,
 * fixing the L4 checksum (pseudo-header included) and, for IPv4, the header's. */
static __always_inline int __lb_rewrite(struct __sk_buff *skb, const struct flow *f, const int dst, const __u8 *addr,
					__be16 port)
{
	const __u8 *old = dst ? f->tuple.daddr : f->tuple.saddr;
	__be16 old_port = dst ? f->tuple.dport : f->tuple.sport;
	__u32 csum_off = f->l4_off + (f->tuple.nexthdr == IPPROTO_TCP ? 16 : 6);
	__u64 flags = f->tuple.nexthdr == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be32 o4, n4;
	__s64 diff;

	if (f->tuple.family == 4) {
		__builtin_memcpy(&o4, old, 4);
		__builtin_memcpy(&n4, addr, 4);
		if (o4 != n4 &&
		    (bpf_l4_csum_replace(skb, csum_off, o4, n4, flags | BPF_F_PSEUDO_HDR | 4) < 0 ||
		     bpf_l3_csum_replace(skb, LB_IP4_CSUM_OFF, o4, n4, 4) < 0 ||
		     bpf_skb_store_bytes(skb, ETH_HLEN + (dst ? 16 : 12), &n4, 4, 0) < 0))
			return -1;
	} else {
		diff = bpf_csum_diff((__be32 *)old, 16, (__be32 *)addr, 16, 0);
		if (bpf_l4_csum_replace(skb, csum_off, 0, diff, flags | BPF_F_PSEUDO_HDR) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_HLEN + (dst ? 24 : 8), addr, 16, 0) < 0)
			return -1;
	}
	if (old_port != port && (bpf_l4_csum_replace(skb, csum_off, old_port, port, flags | 2) < 0 ||
				 bpf_skb_store_bytes(skb, f->l4_off + (dst ? 2 : 0), &port, 2, 0) < 0))
		return -1;
	return 0;
}

/* 0 when the two IPv4 addresses (first 4 bytes) are equal. */
static __always_inline int __lb_addr4_cmp(const __u8 *a, const __u8 *b)
{
	__be32 x, y;

	__builtin_memcpy(&x, a, 4);
	__builtin_memcpy(&y, b, 4);
	return x != y;
}

/* Spreads picks over the tuple: the client's address (folded) and both ports. */
static __always_inline __u64 __lb_tuple_mix(const struct flow *f)
{
	__u32 w[4];

	__builtin_memcpy(w, f->tuple.saddr, 16);
	return ((__u64)(w[0] ^ w[1] ^ w[2] ^ w[3]) << 32) | ((__u32)f->tuple.sport << 16) | f->tuple.dport;
}

static __always_inline int lb_nat_reply(struct __sk_buff *skb, struct flow *f, __u16 rev_nat_index)
{
	struct lb_revnat *r = bpf_map_lookup_elem(&weir_lb_revnat, &rev_nat_index);

	if (!r || r->family != f->tuple.family || __lb_rewrite(skb, f, 0, r->addr, r->port) < 0)
		return -1;
	__builtin_memcpy(f->tuple.saddr, r->addr, 16);
	f->tuple.sport = r->port;
	return 0;
}

static __always_inline int lb_nat_egress(struct __sk_buff *skb, struct flow *f, __u16 *rev_nat_index, int *reason)
{
	struct lb_ct_value v = {}, *known;
	struct lb_backend *b = 0;
	struct lb_key key = {};
	struct lb_service *svc;
	struct ct_key sk;
	__u32 id = 0;

	if (f->tuple.nexthdr != IPPROTO_TCP && f->tuple.nexthdr != IPPROTO_UDP)
		return LB_NAT_NONE;
	__builtin_memcpy(key.addr, f->tuple.daddr, 16);
	key.dport = f->tuple.dport;
	key.proto = f->tuple.nexthdr;
	key.family = f->tuple.family;
	svc = lb_frontend(&key);
	if (!svc)
		return LB_NAT_NONE;
	if (f->frag != FRAG_NONE) {
		*reason = DROP_FRAG_NOSUPPORT;
		return LB_NAT_DROP;
	}

	sk = f->tuple;
	sk.flags = 0;
	known = bpf_map_lookup_elem(&weir_lb_ct, &sk);
	if (known && known->rev_nat_index == svc->rev_nat_index) {
		id = known->backend_id;
		b = lb_backend(id);
		/* A SYN (a retransmission, or the tuple reused for a new connection) keeps the backend
		 * only while it is an ACTIVE one of this service: not terminating, and not an id given
		 * to another backend since. */
		if (b && (f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
		    !lb_active_member(&key, svc->active, id))
			b = 0;
	}
	if (!b) {
		id = lb_select(&key, svc, 0, __lb_tuple_mix(f), f->tuple.saddr);
		b = id ? lb_backend(id) : 0;
		if (!b || b->family != f->tuple.family) {
			*reason = DROP_NO_SERVICE;
			return LB_NAT_DROP;
		}
		v.backend_id = id;
		v.rev_nat_index = svc->rev_nat_index;
		if (bpf_map_update_elem(&weir_lb_ct, &sk, &v, BPF_ANY) < 0) {
			*reason = DROP_CT_CREATE_FAILED;
			return LB_NAT_DROP;
		}
	}
	if (__lb_rewrite(skb, f, 1, b->addr, b->port) < 0) {
		*reason = DROP_INVALID;
		return LB_NAT_DROP;
	}
	__builtin_memcpy(f->tuple.daddr, b->addr, 16);
	f->tuple.dport = b->port;
	*rev_nat_index = svc->rev_nat_index;
	if (f->tuple.family == 4 && !__lb_addr4_cmp(f->tuple.daddr, f->tuple.saddr)) {
		__u8 lo[16] = {};
		__be32 a = bpf_htonl(LB_HAIRPIN4);

		__builtin_memcpy(lo, &a, 4);
		if (__lb_rewrite(skb, f, 0, lo, f->tuple.sport) < 0) {
			*reason = DROP_INVALID;
			return LB_NAT_DROP;
		}
		__builtin_memcpy(f->tuple.saddr, lo, 4);
		return LB_NAT_HAIRPIN;
	}
	return LB_NAT_DONE;
}

/* Sends a hairpin packet back into the pod it came from (tc ingress of its host veth). */
static __always_inline int lb_nat_bounce(struct __sk_buff *skb)
{
	struct ethhdr eth;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return TC_ACT_SHOT;
	__swap_macs(&eth);
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(skb->ifindex, 0);
}

static __always_inline int lb_nat_hairpin_reply(struct __sk_buff *skb, struct flow *f, __u32 bytes, __u64 now)
{
	struct ct_entry *closed, *hit, *reopened;
	__u8 self[16] = {}, lo[4];
	__be32 a = bpf_htonl(LB_HAIRPIN4);
	__u16 rev;

	__builtin_memcpy(lo, &a, 4);
	if (f->tuple.family != 4 || f->frag != FRAG_NONE || __lb_addr4_cmp(f->tuple.daddr, lo) ||
	    (f->tuple.nexthdr != IPPROTO_TCP && f->tuple.nexthdr != IPPROTO_UDP))
		return -1;
	/* The hairpin's entry was made at the pod's egress: this answer is its reply as ingress sees it. */
	if (ct_lookup_entry(f, CT_F_INGRESS, 0, bytes, now, &closed, &hit, &reopened) != CT_REPLY || !hit || !hit->rev_nat_index)
		return -1;
	rev = hit->rev_nat_index;
	__builtin_memcpy(self, f->tuple.saddr, 4);
	if (lb_nat_reply(skb, f, rev) < 0 || __lb_rewrite(skb, f, 1, self, f->tuple.dport) < 0)
		return -1;
	__builtin_memcpy(f->tuple.daddr, self, 4);
	return 0;
}

#endif /* WEIR_LB_NAT_H */
