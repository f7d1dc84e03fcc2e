/* SPDX-License-Identifier: Apache-2.0 */
/* L7 on demand: the connections whose policy entry carries a proxy port go to the node proxy
 * (`weir proxy`, one per node, in the node's network namespace), Cilium's BPF TPROXY
 * (bpf/lib/proxy.h there). Everything else never looks for a socket.
 *
 * The proxy owns transparent listening sockets (IP_TRANSPARENT / IPV6_TRANSPARENT) on 0.0.0.0:P and
 * [::]:P, one per direction, and for DNS one TCP listener and one UDP socket on the DNS port (a UDP
 * datagram always goes to that socket, which reads its original destination with
 * IP_RECVORIGDSTADDR). A packet is handed to one with bpf_sk_assign at a tc ingress hook and
 * marked MARK_MAGIC_TO_PROXY: the node's policy routing (ip rule fwmark 0x200/0xf00 lookup 2004,
 * table 2004: local 0.0.0.0/0 and ::/0 dev lo; set up in the node namespace only) then delivers it
 * locally instead of forwarding it, and the accepted socket's local address is the original
 * destination.
 *
 *   proxy_assign(skb, flow, port) -> 0 | DROP_PROXY_LOOKUP_FAILED | DROP_PROXY_SET_FAILED
 *     At a tc ingress hook: the socket of the packet's own tuple (an accepted connection, a
 *     connection in its handshake, or one of the proxy's upstream sockets; never a listener or a
 *     TIME_WAIT one), else, with `port` (network order, 0 = established only), the listener on
 *     that port; assigned to the packet, which is marked for local delivery. Fails closed: no
 *     socket, the caller drops.
 *   proxy_listener_ready(skb, flow, port) -> 0 | DROP_PROXY_LOOKUP_FAILED
 *     Anywhere (tc egress too): whether the listener of `port` exists, without assigning.
 *   proxy_to_host(skb, port) -> TC_ACT_REDIRECT | TC_ACT_SHOT
 *     At tc egress of a pod's veth, where bpf_sk_assign is not allowed: marks the packet (with the
 *     listener port, 0 = established only) and redirects it into the ingress of the node's
 *     weir_host device, whose program (weir_to_proxy) assigns it. The mark survives: the redirect
 *     stays in the node's namespace, and only crossing namespaces scrubs it. No host device
 *     configured: TC_ACT_SHOT (the caller counts DROP_PROXY_LOOKUP_FAILED).
 *   proxy_origin(mark) -> 0 | PROXY_FROM_INGRESS | PROXY_FROM_EGRESS
 *     Who sent a packet leaving the node's stack: the proxy's upstream sockets carry SO_MARK
 *     MARK_MAGIC_PROXY_INGRESS / _EGRESS / _TUNNEL (nothing outside the node namespace can set a mark that
 *     survives into it).
 *   proxy_netdev_reply(skb, flow) -> 1 when assigned, else 0
 *     At an external-facing device or the VXLAN device (an upstream towards another node's pod):
 *     a TCP packet to a pod address whose tuple is one of the
 *     proxy's established upstream sockets (a reply from outside to the proxy's transparent
 *     connection) is assigned to it; anything else is untouched.
 */
#ifndef WEIR_PROXY_H
#define WEIR_PROXY_H

#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/common.h"
#include "lib/drop_reasons.h"
#include "lib/ipcache.h"
#include "lib/parse.h"

#define PROXY_FROM_INGRESS 1
#define PROXY_FROM_EGRESS 2
#define PROXY_FROM_TUNNEL 3 /* the mTLS tunnel's inbound side (--encryption mtls) */

/* The node's weir_host device (ifindex in the node namespace): where proxy_to_host sends packets
 * that must reach the proxy from a tc egress hook. The loader writes it; 0 = none. */
volatile const __u32 weir_host_ifindex = 0;

static __always_inline int proxy_origin(__u32 mark)
{
	switch (mark & MARK_MAGIC_MASK) {
	case MARK_MAGIC_PROXY_INGRESS:
		return PROXY_FROM_INGRESS;
	case MARK_MAGIC_PROXY_EGRESS:
		return PROXY_FROM_EGRESS;
	case MARK_MAGIC_PROXY_TUNNEL:
		return PROXY_FROM_TUNNEL;
	default:
		return 0;
	}
}

static __always_inline __u32 proxy_mark(__be16 port)
{
	return ((__u32)bpf_ntohs(port) << 16) | MARK_MAGIC_TO_PROXY;
}

/* The flow's tuple as a socket lookup wants it; returns its size (0: not TCP or UDP over IP). */
static __always_inline __u32 __proxy_tuple(const struct flow *f, struct bpf_sock_tuple *t)
{
	if (f->tuple.nexthdr != IPPROTO_TCP && f->tuple.nexthdr != IPPROTO_UDP)
		return 0;
	if (f->tuple.family == 4) {
		__builtin_memcpy(&t->ipv4.saddr, f->tuple.saddr, 4);
		__builtin_memcpy(&t->ipv4.daddr, f->tuple.daddr, 4);
		t->ipv4.sport = f->tuple.sport;
		t->ipv4.dport = f->tuple.dport;
		return sizeof(t->ipv4);
	}
	if (f->tuple.family == 6) {
		__builtin_memcpy(t->ipv6.saddr, f->tuple.saddr, 16);
		__builtin_memcpy(t->ipv6.daddr, f->tuple.daddr, 16);
		t->ipv6.sport = f->tuple.sport;
		t->ipv6.dport = f->tuple.dport;
		return sizeof(t->ipv6);
	}
	return 0;
}

/* The listener tuple: only the port (any address), as the proxy binds 0.0.0.0:P and [::]:P. */
static __always_inline void __proxy_listener_tuple(struct bpf_sock_tuple *t, __u8 family, __be16 port)
{
	__builtin_memset(t, 0, sizeof(*t));
	if (family == 4)
		t->ipv4.dport = port;
	else
		t->ipv6.dport = port;
}

/* Looks up the socket of `t`; established: only a non-listening, non-TIME_WAIT one. UDP (the DNS
 * proxy): the listener tuple only, whose socket takes every datagram of the port. */
static __always_inline struct bpf_sock *__proxy_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *t, __u32 len,
							int established, int udp)
{
	struct bpf_sock *sk;

	if (udp)
		return established ? 0 : bpf_sk_lookup_udp(skb, t, len, BPF_F_CURRENT_NETNS, 0);
	sk = bpf_skc_lookup_tcp(skb, t, len, BPF_F_CURRENT_NETNS, 0);

	if (!sk)
		return 0;
	if (established ? (sk->state == BPF_TCP_LISTEN || sk->state == BPF_TCP_TIME_WAIT)
			: sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return 0;
	}
	return sk;
}

static __noinline int proxy_assign(struct __sk_buff *skb, const struct flow *f, __be16 port)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 len = __proxy_tuple(f, &t);
	int udp = f->tuple.nexthdr == IPPROTO_UDP;
	long err;

	if (!len)
		return DROP_PROXY_LOOKUP_FAILED;
	sk = __proxy_lookup(skb, &t, len, 1, udp);
	if (!sk && port) {
		__proxy_listener_tuple(&t, f->tuple.family, port);
		sk = __proxy_lookup(skb, &t, len, 0, udp);
	}
	if (!sk)
		return DROP_PROXY_LOOKUP_FAILED;
	/* Marked first: the mark is what routes the packet to the local stack. */
	skb->mark = proxy_mark(port);
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	return err ? DROP_PROXY_SET_FAILED : 0;
}

static __noinline int proxy_listener_ready(struct __sk_buff *skb, const struct flow *f, __be16 port)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 len = __proxy_tuple(f, &t);

	if (!len || !port)
		return DROP_PROXY_LOOKUP_FAILED;
	__proxy_listener_tuple(&t, f->tuple.family, port);
	sk = __proxy_lookup(skb, &t, len, 0, f->tuple.nexthdr == IPPROTO_UDP);
	if (!sk)
		return DROP_PROXY_LOOKUP_FAILED;
	bpf_sk_release(sk);
	return 0;
}

static __always_inline int proxy_to_host(struct __sk_buff *skb, __be16 port)
{
	if (!weir_host_ifindex)
		return TC_ACT_SHOT;
	skb->mark = proxy_mark(port);
	return bpf_redirect(weir_host_ifindex, BPF_F_INGRESS);
}

/* A pod address (a cluster identity, not the host, world or a CIDR). */
static __always_inline int __proxy_pod_addr(const struct flow *f)
{
	__u32 id = ipcache_identity(f->tuple.family, f->tuple.daddr);

	return id >= IDENTITY_CLUSTER_MIN && !(id & IDENTITY_LOCAL_FLAG);
}

static __always_inline int proxy_netdev_reply(struct __sk_buff *skb, const struct flow *f)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 len = __proxy_tuple(f, &t);

	if (!len || f->tuple.nexthdr != IPPROTO_TCP || f->frag == FRAG_LATER || !__proxy_pod_addr(f))
		return 0;
	sk = __proxy_lookup(skb, &t, len, 1, 0);
	if (!sk)
		return 0;
	skb->mark = proxy_mark(0);
	if (bpf_sk_assign(skb, sk, 0)) {
		skb->mark = 0;
		bpf_sk_release(sk);
		return 0;
	}
	bpf_sk_release(sk);
	return 1;
}

#endif /* WEIR_PROXY_H */
