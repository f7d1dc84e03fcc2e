/* SPDX-License-Identifier: Apache-2.0 */
/* North-south NodePort (Cilium's nodeport_lb4, bpf/lib/nodeport.h): a packet from outside the
 * cluster to <node IP>:<nodePort> at tc ingress of an external-facing device (weir_from_netdev).
 *
 *   nodeport_lb4(skb, flow) -> tc verdict, or -1 when the packet is not for a NodePort
 *     A known connection (weir_lb_nat NAT_DIR_FWD entry) is translated as before. A new one
 *     looks the frontend up (SVC_F_NODEPORT, scope EXT), picks an ACTIVE backend (lb_select:
 *     random, or Maglev over a hash of the client's address and port; ClientIP affinity per
 *     client address, weir_lb_affinity's client_addr) and records both
 *     directions in weir_lb_nat. No ACTIVE backend: DROP_NO_SERVICE (never forwarded into
 *     nothing); a TCP segment is answered with an RST, a UDP datagram with ICMP port unreachable
 *     (lib/refuse.h), so the client is refused at once. Translation:
 *       snat (default)  dst -> backend, src -> node IP : a port of NAT_PORT_MIN..MAX (outside
 *                       Linux's ephemeral range, so the node's own sockets never collide)
 *       dsr             dst -> backend only: the backend sees the client
 *     A backend on another node: into the tunnel (snat: VNI remote-node; dsr: the client's
 *     identity, and the frontend in an IPv4 option, below), or with native routing out of the
 *     device the FIB names (dsr: with the option too).
 *   nodeport_rev4(skb, flow) -> tc verdict, or -1 when the packet is no NodePort reply
 *     At weir_from_container, for replies (conntrack CT_REPLY): the NAT_DIR_REV entry turns
 *     backend -> node:natport (snat) or backend -> client (dsr) into node IP:nodePort -> client.
 *     Also at weir_from_overlay and weir_from_netdev: an snat reply from a backend on another node.
 *   nodeport_dsr_record4(skb, flow)
 *     At weir_from_overlay and weir_from_netdev of the backend's node: a packet with the DSR option
 *     records the NAT_DIR_REV entry its backend's replies leave by (from the frontend, to the
 *     client directly).
 * After translation the packet is sent on with bpf_redirect_neigh to the device the FIB names
 * (the kernel's own forwarding would drop it: its source is, or comes from, a local address, a
 * martian on input). Redirected to a pod, it leaves through the pod's host veth, where
 * weir_to_container applies the pod's ingress policy to the translated flow: the client's
 * identity in dsr (world), the node's (host) in snat, as Cilium.
 * IPv4, TCP and UDP only; fragments and anything else pass untouched (the node's stack).
 * The NAT map is an LRU: entries live while used; an evicted one makes a later packet of the
 * connection a new one (snat: another NAT port, so the backend sees a new peer).
 */
#ifndef WEIR_NODEPORT_H
#define WEIR_NODEPORT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/common.h"
#include "lib/config.h"
#include "lib/drop_reasons.h"
#include "lib/refuse.h"
#include "lib/lb.h"
#include "lib/overlay.h"
#include "lib/parse.h"

#define WEIR_LB_NAT_MAX 262144
#define NAT_PORT_MIN 61000 /* Linux's ephemeral ports end at 60999 */
#define NAT_PORT_MAX 65535
#define NAT_PORT_TRIES 16

#ifndef AF_INET
#define AF_INET 2
#endif

/* 1: NodePort in DSR mode; 0: SNAT (Cilium's --bpf-lb-mode). The loader writes it. */
volatile const __u32 weir_lb_dsr = 0;

/* Datapath-internal (user space does not read it yet): a tuple as the packet carries it. */
struct lb_nat_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir; /* NAT_DIR_* */
	__u16 pad;
};
#define NAT_DIR_FWD 1 /* client -> node IP:nodePort, as it arrives from outside */
#define NAT_DIR_REV 2 /* backend -> node IP:NAT port (snat) or client (dsr), as it leaves the pod */

/* What the packet's tuple becomes. */
struct lb_nat_entry {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 backend_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_nat_key);
	__type(value, struct lb_nat_entry);
	__uint(max_entries, WEIR_LB_NAT_MAX);
} weir_lb_nat SEC(".maps");

#define IP_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))

/* Rewrites addresses and ports, fixing the IP checksum and the L4 one (its pseudo-header too). */
static __always_inline int __nat_rewrite4(struct __sk_buff *skb, const struct lb_nat_key *from,
					  const struct lb_nat_entry *to)
{
	__u32 l4, csum_off, flags = 0;
	__u8 vihl;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &vihl, 1) < 0)
		return -1;
	l4 = ETH_HLEN + (vihl & 0xf) * 4;
	if (from->proto == IPPROTO_TCP) {
		csum_off = l4 + 16;
	} else {
		csum_off = l4 + 6;
		flags = BPF_F_MARK_MANGLED_0; /* UDP checksum 0: none, keep it so */
	}
	if (from->saddr != to->saddr) {
		if (bpf_l4_csum_replace(skb, csum_off, from->saddr, to->saddr, flags | BPF_F_PSEUDO_HDR | 4) < 0 ||
		    bpf_l3_csum_replace(skb, IP_CSUM_OFF, from->saddr, to->saddr, 4) < 0 ||
		    bpf_skb_store_bytes(skb, IP_SRC_OFF, &to->saddr, 4, 0) < 0)
			return -1;
	}
	if (from->daddr != to->daddr) {
		if (bpf_l4_csum_replace(skb, csum_off, from->daddr, to->daddr, flags | BPF_F_PSEUDO_HDR | 4) < 0 ||
		    bpf_l3_csum_replace(skb, IP_CSUM_OFF, from->daddr, to->daddr, 4) < 0 ||
		    bpf_skb_store_bytes(skb, IP_DST_OFF, &to->daddr, 4, 0) < 0)
			return -1;
	}
	if (from->sport != to->sport) {
		if (bpf_l4_csum_replace(skb, csum_off, from->sport, to->sport, flags | 2) < 0 ||
		    bpf_skb_store_bytes(skb, l4, &to->sport, 2, 0) < 0)
			return -1;
	}
	if (from->dport != to->dport) {
		if (bpf_l4_csum_replace(skb, csum_off, from->dport, to->dport, flags | 2) < 0 ||
		    bpf_skb_store_bytes(skb, l4 + 2, &to->dport, 2, 0) < 0)
			return -1;
	}
	return 0;
}

/* DSR across nodes (Cilium's "opt" dispatch, dsr_set_opt4 / handle_dsr_v4): the node that
 * load-balances a connection to a backend on another node tells that node the frontend in an IPv4
 * option of the (inner) packet: type DSR_OPT4_TYPE (IPOPT_COPY | 26, Cilium's), 8 bytes, the
 * frontend's port and address in network order. TCP carries it in the SYN only, UDP in every
 * datagram. The receiver (nodeport_dsr_record4) keeps it as the reply's translation in
 * weir_lb_nat (NAT_DIR_REV: backend -> client becomes frontend -> client), which nodeport_rev4
 * applies where the backend's answer leaves it: straight to the client, never back through the
 * frontend's node. The option stays in the packet; Linux ignores an IP option it does not know on
 * input, as for Cilium. A packet that already has options cannot take it: dropped (DROP_INVALID). */
#define DSR_OPT4_TYPE 0x9a
#define DSR_OPT4_LEN 8

struct dsr_opt4 {
	__u8 type;
	__u8 len;
	__be16 port;
	__be32 addr;
};

struct dsr_hdr4 {
	struct iphdr ip;
	struct dsr_opt4 opt;
};

/* Inserts `opt` after the IPv4 header (which must have none), fixing IHL, total length and the
 * header checksum; the L4 checksum does not cover it. */
static __always_inline int __dsr_opt_add4(struct __sk_buff *skb, const struct dsr_opt4 *opt)
{
	struct dsr_hdr4 h;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &h.ip, sizeof(h.ip)) < 0 || h.ip.ihl != 5)
		return -1;
	if (bpf_skb_adjust_room(skb, sizeof(*opt), BPF_ADJ_ROOM_NET, 0) < 0)
		return -1;
	h.ip.ihl = (sizeof(h)) / 4;
	h.ip.tot_len = bpf_htons(bpf_ntohs(h.ip.tot_len) + sizeof(*opt));
	h.ip.check = 0;
	h.opt = *opt;
	h.ip.check = __csum_fold(bpf_csum_diff(0, 0, (__be32 *)&h, sizeof(h), 0));
	return bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0) < 0 ? -1 : 0;
}

/* The identity a DSR packet carries into the tunnel: its client's as this node knows it (a pod of
 * the cluster), else IDENTITY_WORLD, which the receiver resolves through its own ipcache
 * (lib/overlay.h, overlay_source); this node itself is the receiver's remote node. */
static __always_inline __u32 __dsr_identity(__be32 client)
{
	__u8 addr[16] = {};
	__u32 sid;

	__builtin_memcpy(addr, &client, 4);
	sid = ipcache_identity(4, addr);
	if (sid == IDENTITY_HOST)
		return IDENTITY_REMOTE_NODE;
	if (sid == IDENTITY_WORLD || sid == IDENTITY_WORLD_IPV4 || sid > OVERLAY_IDENTITY_MAX)
		return IDENTITY_WORLD;
	return sid;
}

/* At the backend's node (weir_from_overlay, weir_from_netdev): a packet carrying the DSR option
 * records how the backend's replies leave (weir_lb_nat, NAT_DIR_REV). */
static __always_inline void nodeport_dsr_record4(struct __sk_buff *skb, const struct flow *f)
{
	struct lb_nat_key rk = { .proto = f->tuple.nexthdr, .dir = NAT_DIR_REV };
	struct lb_nat_entry rev = {};
	struct dsr_opt4 opt;
	__u8 vihl;

	if (f->tuple.family != 4 || f->frag != FRAG_NONE ||
	    (f->tuple.nexthdr != IPPROTO_TCP && f->tuple.nexthdr != IPPROTO_UDP))
		return;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &vihl, 1) < 0 || (vihl & 0xf) < 7 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(struct iphdr), &opt, sizeof(opt)) < 0 ||
	    opt.type != DSR_OPT4_TYPE || opt.len != DSR_OPT4_LEN)
		return;
	/* The reply as it leaves the backend: backend -> client. */
	__builtin_memcpy(&rk.saddr, f->tuple.daddr, 4);
	__builtin_memcpy(&rk.daddr, f->tuple.saddr, 4);
	rk.sport = f->tuple.dport;
	rk.dport = f->tuple.sport;
	rev.saddr = opt.addr;
	rev.sport = opt.port;
	rev.daddr = rk.daddr;
	rev.dport = rk.dport;
	bpf_map_update_elem(&weir_lb_nat, &rk, &rev, BPF_ANY);
}

/* A backend on another node behind the tunnel (lib/overlay.h): the translated packet goes into the
 * node's VXLAN device towards that node, the VNI carrying the identity the backend's node judges
 * it with: the sending node's (remote-node) in snat, as Cilium, the client's in dsr; `opt`: the DSR
 * option to add first (NULL: none). -1: not for the tunnel. */
static __always_inline int __nat_tunnel4(struct __sk_buff *skb, const struct lb_nat_entry *to, __u32 identity,
					 const struct dsr_opt4 *opt, int *reason)
{
	struct ipcache_value *dst;
	__u32 ifindex = overlay_ifindex();
	__u8 addr[16] = {};
	__be32 endpoint;

	if (!ifindex)
		return -1;
	__builtin_memcpy(addr, &to->daddr, 4);
	dst = ipcache_lookup(4, addr);
	if (!dst || !dst->tunnel_endpoint)
		return -1;
	endpoint = dst->tunnel_endpoint;
	if (opt && __dsr_opt_add4(skb, opt) < 0) {
		*reason = DROP_INVALID;
		return TC_ACT_SHOT;
	}
	*reason = __overlay_set_key(skb, endpoint, identity);
	return *reason ? TC_ACT_SHOT : bpf_redirect(ifindex, 0);
}

/* Sends the translated packet out of the device the FIB names for it. Without a route (e.g. a
 * test run in an empty namespace) it is left to the kernel. `opt` (DSR): added when the device is
 * not a local pod's (native routing: the backend lives on another node). */
static __always_inline int __nat_redirect4(struct __sk_buff *skb, const struct lb_nat_entry *to, __u8 proto,
					   const struct dsr_opt4 *opt, int *reason)
{
	struct bpf_fib_lookup p = {
		.family = AF_INET,
		.l4_protocol = proto,
		.ifindex = skb->ifindex,
		.ipv4_src = to->saddr,
		.ipv4_dst = to->daddr,
	};
	struct bpf_redir_neigh nh = { .nh_family = AF_INET };
	long rc = bpf_fib_lookup(skb, &p, sizeof(p), 0);

	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TC_ACT_OK;
	if (opt && !endpoint_lookup(p.ifindex) && __dsr_opt_add4(skb, opt) < 0) {
		*reason = DROP_INVALID;
		return TC_ACT_SHOT;
	}
	nh.ipv4_nh = p.ipv4_dst; /* the gateway, or the destination itself */
	return bpf_redirect_neigh(p.ifindex, &nh, sizeof(nh), 0);
}

static __always_inline int __nat_key4(const struct flow *f, struct lb_nat_key *k, __u8 dir)
{
	if (f->tuple.family != 4 || f->frag != FRAG_NONE ||
	    (f->tuple.nexthdr != IPPROTO_TCP && f->tuple.nexthdr != IPPROTO_UDP))
		return -1;
	__builtin_memcpy(&k->saddr, f->tuple.saddr, 4);
	__builtin_memcpy(&k->daddr, f->tuple.daddr, 4);
	k->sport = f->tuple.sport;
	k->dport = f->tuple.dport;
	k->proto = f->tuple.nexthdr;
	k->dir = dir;
	return 0;
}

/* Records both directions of a new connection to `b`; snat picks a free NAT port. */
static __always_inline int __nat_create4(const struct lb_nat_key *fk, struct lb_nat_entry *fwd, __u32 backend_id,
					 const struct lb_backend *b)
{
	struct lb_nat_key rk = { .proto = fk->proto, .dir = NAT_DIR_REV };
	struct lb_nat_entry rev = { .saddr = fk->daddr, .daddr = fk->saddr, .sport = fk->dport, .dport = fk->sport,
				    .backend_id = backend_id };
	int i;

	fwd->daddr = *(const __be32 *)b->addr;
	fwd->dport = b->port;
	fwd->backend_id = backend_id;
	fwd->saddr = weir_lb_dsr ? fk->saddr : fk->daddr;
	fwd->sport = fk->sport;
	rk.saddr = fwd->daddr;
	rk.sport = fwd->dport;
	rk.daddr = fwd->saddr;
	if (weir_lb_dsr) {
		rk.dport = fwd->sport;
		if (bpf_map_update_elem(&weir_lb_nat, &rk, &rev, BPF_ANY) < 0)
			return DROP_CT_CREATE_FAILED;
	} else {
		for (i = 0; i < NAT_PORT_TRIES; i++) {
			__u16 port = NAT_PORT_MIN + bpf_get_prandom_u32() % (NAT_PORT_MAX - NAT_PORT_MIN + 1);

			rk.dport = bpf_htons(port);
			if (bpf_map_update_elem(&weir_lb_nat, &rk, &rev, BPF_NOEXIST) == 0)
				break;
		}
		if (i == NAT_PORT_TRIES)
			return DROP_CT_CREATE_FAILED;
		fwd->sport = rk.dport;
	}
	if (bpf_map_update_elem(&weir_lb_nat, fk, fwd, BPF_ANY) < 0) {
		bpf_map_delete_elem(&weir_lb_nat, &rk);
		return DROP_CT_CREATE_FAILED;
	}
	return 0;
}

/* Returns -1 when the packet is not for a NodePort, a tc verdict otherwise; *reason gets the drop
 * code of a TC_ACT_SHOT. */
static __always_inline int nodeport_lb4(struct __sk_buff *skb, const struct flow *f, int *reason)
{
	struct lb_nat_key fk = {};
	struct lb_nat_entry fwd = {}, *known;
	struct lb_key key = {};
	struct lb_service *svc;
	struct lb_backend *b;
	__u32 id;

	*reason = 0;
	if (__nat_key4(f, &fk, NAT_DIR_FWD) < 0)
		return -1;
	known = bpf_map_lookup_elem(&weir_lb_nat, &fk);
	if (known) {
		fwd = *known;
	} else {
		__builtin_memcpy(key.addr, &fk.daddr, 4);
		key.dport = fk.dport;
		key.proto = fk.proto;
		key.family = 4;
		svc = lb_frontend(&key);
		if (!svc || !(svc->flags & SVC_F_NODEPORT))
			return -1;
		/* ClientIP affinity is per client address; address and port spread the picks. */
		id = lb_select(&key, svc, 0, ((__u64)fk.saddr << 16) | fk.sport, f->tuple.saddr);
		b = id ? lb_backend(id) : 0;
		if (!b || b->family != 4) {
			/* The client's packet is dropped (counted) and answered: TCP with an RST, UDP with
			 * ICMP port unreachable, back out of the device it came in by. */
			*reason = DROP_NO_SERVICE;
			return refuse_reply(skb, f) == 0 ? bpf_redirect(skb->ifindex, 0) : TC_ACT_SHOT;
		}
		*reason = __nat_create4(&fk, &fwd, id, b);
		if (*reason)
			return TC_ACT_SHOT;
	}
	if (__nat_rewrite4(skb, &fk, &fwd) < 0) {
		*reason = DROP_INVALID;
		return TC_ACT_SHOT;
	}
	/* dsr: the backend's node answers the client itself, from the frontend the option tells it
	 * (TCP: in the SYN; UDP: every datagram); the tunnel carries the client's identity. */
	if (weir_lb_dsr) {
		struct dsr_opt4 opt = { .type = DSR_OPT4_TYPE, .len = DSR_OPT4_LEN, .port = fk.dport, .addr = fk.daddr };
		int with = fk.proto == IPPROTO_UDP || (f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
		int ret = __nat_tunnel4(skb, &fwd, __dsr_identity(fk.saddr), with ? &opt : 0, reason);

		if (ret >= 0)
			return ret;
		return __nat_redirect4(skb, &fwd, fk.proto, with ? &opt : 0, reason);
	} else {
		int ret = __nat_tunnel4(skb, &fwd, IDENTITY_REMOTE_NODE, 0, reason);

		if (ret >= 0)
			return ret;
	}
	return __nat_redirect4(skb, &fwd, fk.proto, 0, reason);
}

/* Returns -1 when the packet is no reply of a NodePort connection, a tc verdict otherwise. */
static __always_inline int nodeport_rev4(struct __sk_buff *skb, const struct flow *f)
{
	struct lb_nat_key rk = {};
	struct lb_nat_entry *rev, to;
	int reason, ret;

	if (__nat_key4(f, &rk, NAT_DIR_REV) < 0)
		return -1;
	rev = bpf_map_lookup_elem(&weir_lb_nat, &rk);
	if (!rev)
		return -1;
	to = *rev;
	if (__nat_rewrite4(skb, &rk, &to) < 0)
		return TC_ACT_SHOT;
	/* A client that is a pod of another node: back through the tunnel (the packet may still carry
	 * the key it arrived with, which the VXLAN device would not send). */
	ret = __nat_tunnel4(skb, &to, IDENTITY_REMOTE_NODE, 0, &reason);
	if (ret >= 0)
		return ret;
	return __nat_redirect4(skb, &to, rk.proto, 0, &reason);
}

#endif /* WEIR_NODEPORT_H */
