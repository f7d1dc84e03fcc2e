/* SPDX-License-Identifier: Apache-2.0 */
/* Tunnel mode (Cilium's, bpf/lib/encap.h and bpf_overlay.c): pods of other nodes are reached
 * through the node's VXLAN device in external (collect_md) mode, and the VNI carries the
 * sender's security identity, so the receiving node judges ingress policy with it instead of
 * looking the source address up.
 *
 *   weir_tunnel[0]        struct tunnel_config: the VXLAN device's ifindex (0 = no tunnel), written
 *                         by the loader (Datapath.attachOverlay)
 *   weir_ipcache values   tunnel_endpoint: the IPv4 underlay address of the node a prefix lives on
 *                         (written in native routing too, for lib/auth.h's node id: as Cilium,
 *                         only the routing mode decides to tunnel, here a device in weir_tunnel;
 *                         every encapsulation below and in lib/nodeport.h, and the encryption
 *                         redirect, check it first)
 *
 *   overlay_encap(skb, flow, src_identity, *reason) -> -1 | tc verdict
 *     After a forward verdict at weir_from_container: when the destination's ipcache entry names a
 *     tunnel endpoint and a tunnel device is configured, sets the tunnel key (remote_ipv4 = the
 *     endpoint, tunnel_id = src_identity, BPF_F_ZERO_CSUM_TX) and redirects to the device.
 *     -1: not for the tunnel (local, native routing, no device). TC_ACT_SHOT: *reason is set
 *     (an identity that does not fit 24 bits, DROP_UNKNOWN_SENDER; the key not written,
 *     DROP_WRITE_ERROR).
 *   overlay_source(skb, *identity) -> 0 | drop code
 *     At tc ingress of the VXLAN device: the sender's identity from the received tunnel key.
 *     No key: DROP_NO_TUNNEL_ENDPOINT; 0 or >= 2^24: DROP_UNKNOWN_SENDER (Invalid identity).
 *   overlay_destination(skb) -> struct lxc_info * or NULL
 *     The local pod the inner packet is for (weir_lxc by its destination address).
 *   overlay_to_stack(skb, identity) -> TC_ACT_OK
 *     Hands a received packet to the node's stack (--host-routing legacy, or no local pod): its
 *     identity travels in skb->mark (MARK_MAGIC_IDENTITY), which weir_to_container reads back
 *     with identity_from_mark instead of asking the ipcache (Cilium's inherit_identity_from_host).
 *   overlay_host_encap(skb, *reason) -> tc verdict
 *     At tc egress of the VXLAN device: what already carries a key (overlay_encap's) passes; the
 *     node's own packets routed into the device get a key from the ipcache with
 *     IDENTITY_REMOTE_NODE as their identity (Cilium: the host's traffic is the remote node's
 *     on the receiver), except the node proxy's egress upstream connections, which carry their
 *     client's identity in their mark (Cilium's MARK_MAGIC_EGRESS). No tunnel endpoint:
 *     DROP_NO_TUNNEL_ENDPOINT.
 */
#ifndef WEIR_OVERLAY_H
#define WEIR_OVERLAY_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/common.h"
#include "lib/drop_reasons.h"
#include "lib/ipcache.h"
#include "lib/parse.h"
#include "lib/host_routing.h"

#define OVERLAY_IDENTITY_MAX 0xFFFFFF /* the VNI has 24 bits */
#define OVERLAY_TTL 64

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct tunnel_config);
	__uint(max_entries, 1);
} weir_tunnel SEC(".maps");

static __always_inline __u32 overlay_ifindex(void)
{
	__u32 zero = 0;
	struct tunnel_config *c = bpf_map_lookup_elem(&weir_tunnel, &zero);

	return c ? c->ifindex : 0;
}

static __always_inline __u32 identity_mark(__u32 identity)
{
	return MARK_MAGIC_IDENTITY | ((identity & 0xFFFF) << 16) | ((identity >> 16) & 0xFF);
}

/* The identity a received tunnel packet carried into the node's stack, or the one the mTLS tunnel's
 * peer certificate proved (the node proxy's inbound upstream, MARK_MAGIC_PROXY_TUNNEL); 0: none. */
static __always_inline __u32 identity_from_mark(__u32 mark)
{
	if ((mark & MARK_MAGIC_MASK) != MARK_MAGIC_IDENTITY && (mark & MARK_MAGIC_MASK) != MARK_MAGIC_PROXY_TUNNEL)
		return 0;
	return (mark >> 16) | ((mark & 0xFF) << 16);
}

static __always_inline int __overlay_set_key(struct __sk_buff *skb, __be32 endpoint, __u32 identity)
{
	struct bpf_tunnel_key key = {};

	if (!identity || identity > OVERLAY_IDENTITY_MAX)
		return DROP_UNKNOWN_SENDER;
	key.remote_ipv4 = bpf_ntohl(endpoint); /* the helper takes it in host order */
	key.tunnel_id = identity;
	key.tunnel_ttl = OVERLAY_TTL;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

static __always_inline int overlay_encap(struct __sk_buff *skb, const struct flow *f, __u32 src_identity,
					 int *reason)
{
	struct ipcache_value *dst;
	__u32 ifindex = overlay_ifindex();

	if (!ifindex)
		return -1;
	dst = ipcache_lookup(f->tuple.family, f->tuple.daddr);
	if (!dst || !dst->tunnel_endpoint)
		return -1;
	*reason = __overlay_set_key(skb, dst->tunnel_endpoint, src_identity);
	if (*reason)
		return TC_ACT_SHOT;
	return bpf_redirect(ifindex, 0);
}

/* --encryption mtls: the port (network order) of the node proxy's outbound tunnel listener when a new
 * TCP connection must travel in the mTLS tunnel — encryption on, and the destination a pod (a
 * cluster identity) behind another node's tunnel endpoint; 0: not for the tunnel (UDP, ICMP, this
 * node, the world, other nodes' own addresses keep the plain path). */
static __always_inline __be16 overlay_encrypt_port(const struct flow *f)
{
	__u32 zero = 0;
	struct tunnel_config *c = bpf_map_lookup_elem(&weir_tunnel, &zero);
	struct ipcache_value *dst;

	if (!c || !c->ifindex || !c->encrypt_port || f->tuple.nexthdr != IPPROTO_TCP)
		return 0;
	dst = ipcache_lookup(f->tuple.family, f->tuple.daddr);
	if (!dst || !dst->tunnel_endpoint || dst->identity < IDENTITY_CLUSTER_MIN || (dst->identity & IDENTITY_LOCAL_FLAG))
		return 0;
	return bpf_htons(c->encrypt_port);
}

static __always_inline int overlay_source(struct __sk_buff *skb, __u32 *identity)
{
	struct bpf_tunnel_key key = {};

	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return DROP_NO_TUNNEL_ENDPOINT;
	*identity = key.tunnel_id;
	if (!key.tunnel_id || key.tunnel_id > OVERLAY_IDENTITY_MAX)
		return DROP_UNKNOWN_SENDER;
	/* A source outside the cluster another node forwarded: this node's ipcache names it (its own
	 * CIDR identities, which are node-local). */
	if (key.tunnel_id == IDENTITY_WORLD) {
		__u8 saddr[16] = {};
		__u8 family = 0;

		if (skb->protocol == bpf_htons(ETH_P_IP))
			family = bpf_skb_load_bytes(skb, ETH_HLEN + 12, saddr, 4) < 0 ? 0 : 4;
		else if (skb->protocol == bpf_htons(ETH_P_IPV6))
			family = bpf_skb_load_bytes(skb, ETH_HLEN + 8, saddr, 16) < 0 ? 0 : 6;
		if (family) {
			__u32 sid = ipcache_identity(family, saddr);

			if (sid == IDENTITY_WORLD_IPV4 || sid > OVERLAY_IDENTITY_MAX)
				*identity = sid;
		}
	}
	return 0;
}

/* The inner packet's family and destination address; 0 when it is neither IPv4 nor IPv6. */
static __always_inline __u8 __overlay_daddr(struct __sk_buff *skb, __u8 *addr)
{
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return bpf_skb_load_bytes(skb, ETH_HLEN + 16, addr, 4) < 0 ? 0 : 4;
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return bpf_skb_load_bytes(skb, ETH_HLEN + 24, addr, 16) < 0 ? 0 : 6;
	return 0;
}

static __always_inline struct lxc_info *overlay_destination(struct __sk_buff *skb)
{
	__u8 addr[16] = {};
	__u8 family = __overlay_daddr(skb, addr);

	return family ? lxc_lookup(family, addr) : NULL;
}

static __always_inline int overlay_to_stack(struct __sk_buff *skb, __u32 identity)
{
	skb->mark = identity_mark(identity);
	/* The inner frame is addressed to the sending node's veth: make the stack take it. */
	bpf_skb_change_type(skb, PACKET_HOST);
	return TC_ACT_OK;
}

/* The identity a packet the node's stack routes into the tunnel carries: an upstream connection of
 * the node proxy's egress listener carries its client's (SO_MARK MARK_MAGIC_PROXY_EGRESS with the
 * identity laid out as in identity_mark: the receiving node judges the client, as without the
 * proxy); a source outside the cluster (world, or a node-local CIDR identity) forwarded by this
 * node is IDENTITY_WORLD, which the receiver resolves through its own ipcache (overlay_source);
 * anything else is the node's own traffic, IDENTITY_REMOTE_NODE on the receiver. */
static __always_inline __u32 __overlay_host_identity(struct __sk_buff *skb, __u8 family)
{
	__u8 saddr[16] = {};
	__u32 sid;

	if ((skb->mark & MARK_MAGIC_MASK) == MARK_MAGIC_PROXY_EGRESS) {
		sid = (skb->mark >> 16) | ((skb->mark & 0xFF) << 16);
		if (sid)
			return sid;
	}
	if (family == 4) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 12, saddr, 4) < 0)
			return IDENTITY_REMOTE_NODE;
	} else if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, saddr, 16) < 0) {
		return IDENTITY_REMOTE_NODE;
	}
	sid = ipcache_identity(family, saddr);
	if (sid == IDENTITY_WORLD || sid == IDENTITY_WORLD_IPV4 || sid > OVERLAY_IDENTITY_MAX)
		return IDENTITY_WORLD;
	return IDENTITY_REMOTE_NODE;
}

static __always_inline int overlay_host_encap(struct __sk_buff *skb, int *reason)
{
	struct bpf_tunnel_key key = {};
	struct ipcache_value *dst;
	__u8 addr[16] = {};
	__u8 family;

	*reason = 0;
	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) == 0)
		return TC_ACT_OK;
	family = __overlay_daddr(skb, addr);
	dst = family ? ipcache_lookup(family, addr) : NULL;
	if (!dst || !dst->tunnel_endpoint) {
		*reason = DROP_NO_TUNNEL_ENDPOINT;
		return TC_ACT_SHOT;
	}
	*reason = __overlay_set_key(skb, dst->tunnel_endpoint, __overlay_host_identity(skb, family));
	return *reason ? TC_ACT_SHOT : TC_ACT_OK;
}

#endif /* WEIR_OVERLAY_H */
