/* SPDX-License-Identifier: Apache-2.0 */
/* Socket load balancing (Cilium's bpf_sock.c): cgroup sock_addr programs translate a service
 * frontend to one backend when a socket connects (or, for unconnected UDP, sends), so packets
 * travel to the backend untouched and nothing is NATed per packet; the application still sees
 * the frontend as its peer.
 *
 *   weir_sock{4,6}_connect      cgroup/connect4/6: TCP and UDP connect()
 *   weir_sock{4,6}_sendmsg      cgroup/sendmsg4/6: UDP sendto()/sendmsg() with an address
 *   weir_sock{4,6}_recvmsg      cgroup/recvmsg4/6: UDP source address back to the frontend
 *   weir_sock{4,6}_getpeername  cgroup/getpeername4/6: the peer back to the frontend
 *
 * connect/sendmsg: a destination that is no frontend (lb_key with slot 0, scope EXT) is left
 * alone. A frontend without an ACTIVE backend fails the call at once with ECONNREFUSED (never a
 * black hole: a client waiting for a SYN timeout is worse than one told to retry); so does a
 * frontend whose chosen backend is missing or of another family. Otherwise the destination
 * becomes the backend (lib/lb.h lb_select) and the socket's own storage (weir_lb_sk_rev) remembers
 * backend -> frontend for recvmsg/getpeername. Connections already made are never touched, so
 * a backend that starts terminating keeps them. An IPv6 socket's IPv4-mapped destination
 * (::ffff:a.b.c.d) is looked up among the IPv4 frontends and gets an IPv4-mapped backend.
 *
 * Only scope EXT frontends are looked up (a socket has no traffic-policy scope), and
 * weir_lb_revnat is not read here: the per-socket reverse entry already names the frontend, so a
 * service removed later still shows its address to the sockets it translated.
 *
 * recvmsg/getpeername of a socket never translated (every connection a server accepts) find no
 * storage on it: no map lookup at all (a cookie-keyed hash, as Cilium's reverse_sk, costs a
 * cache-cold miss per accepted connection).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/common.h"
#include "lib/config.h"
#include "lib/lb.h"

#define SYS_REJECT 0
#define SYS_PROCEED 1

/* Whole-struct equality without memcmp (BPF has no libc); both sides are 8-byte aligned. */
static __always_inline int __revnat_same(const struct lb_revnat *a, const struct lb_revnat *b)
{
	const __u64 *x = (const void *)a, *y = (const void *)b;

	_Static_assert(sizeof(struct lb_revnat) == 24, "lb_revnat is three words");
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2];
}

/* The slot's backend is {addr, port, family} (the first three words of the slot, pad zero). */
static __always_inline int __backend_same(const struct lb_sk_rev_slot *s, const struct lb_sk_rev_slot *b)
{
	const __u64 *x = (const void *)s, *y = (const void *)b;

	_Static_assert(__builtin_offsetof(struct lb_sk_rev_slot, rev) == 24, "the backend is three words");
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2];
}

static __always_inline int __lb_proto_ok(__u32 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

/* IPv4-mapped IPv6 (::ffff:a.b.c.d): a dual-stack socket talking IPv4. */
#define V4_MAPPED_WORD bpf_htonl(0x0000ffff)

/* The address ctx carries (user_ip4/user_ip6), as 16 key bytes and a family: an IPv4-mapped
 * address of an IPv6 socket counts as IPv4, so its frontends and backends are the IPv4 ones.
 * `v6` is a constant of each program, so the verifier never sees the other family's fields. */
static __always_inline __u8 __ctx_addr(struct bpf_sock_addr *ctx, __u8 *addr, const int v6)
{
	__u32 *w = (__u32 *)addr;

	if (!v6) {
		w[0] = ctx->user_ip4;
		return 4;
	}
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	if (w[0] || w[1] || w[2] != V4_MAPPED_WORD)
		return 6;
	w[0] = w[3];
	w[1] = w[2] = w[3] = 0;
	return 4;
}

/* Writes `addr` of `family` as ctx's address (IPv4 on an IPv6 socket: IPv4-mapped). */
static __always_inline void __ctx_set_addr(struct bpf_sock_addr *ctx, const __u8 *addr, __u8 family, const int v6)
{
	const __u32 *w = (const __u32 *)addr;

	if (!v6) {
		ctx->user_ip4 = w[0];
	} else if (family == 4) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = V4_MAPPED_WORD;
		ctx->user_ip6[3] = w[0];
	} else {
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	}
}

/* Translates ctx's destination when it is a frontend. Returns SYS_PROCEED, or SYS_REJECT with
 * the call's error set. */
static __always_inline int __sock_xlate(struct bpf_sock_addr *ctx, const int v6)
{
	struct lb_revnat rev __attribute__((aligned(8))) = {};
	struct lb_sk_rev_slot want __attribute__((aligned(8))) = {};
	struct lb_sk_rev *sr;
	struct lb_key key = {};
	__u32 i, slot;
	struct lb_service *svc;
	struct lb_backend *b;
	__u32 id;

	if (!__lb_proto_ok(ctx->protocol))
		return SYS_PROCEED;
	key.family = __ctx_addr(ctx, key.addr, v6);
	key.dport = (__be16)ctx->user_port;
	key.proto = (__u8)ctx->protocol;
	svc = lb_frontend(&key);
	if (!svc)
		return SYS_PROCEED;
	id = lb_select(&key, svc, bpf_get_netns_cookie(ctx), bpf_get_socket_cookie(ctx), 0);
	b = id ? lb_backend(id) : NULL;
	if (!b || b->family != key.family) {
		bpf_set_retval(-ECONNREFUSED);
		return SYS_REJECT;
	}

	__builtin_memcpy(rev.addr, key.addr, sizeof(rev.addr));
	rev.port = key.dport;
	rev.family = key.family;
	rev.rev_nat_index = svc->rev_nat_index;
	__builtin_memcpy(want.addr, b->addr, sizeof(want.addr));
	want.port = b->port;
	want.family = b->family;
	want.rev = rev;
	sr = bpf_sk_storage_get(&weir_lb_sk_rev, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!sr) {
		/* No memory for it: the connection works, its peer shows as the backend. */
		goto xlate;
	}
	/* UDP sends pass here per datagram: write only what changed. */
	bpf_spin_lock(&sr->lock);
	slot = LB_SK_REV_SLOTS;
#pragma unroll
	for (i = 0; i < LB_SK_REV_SLOTS; i++) {
		if (slot == LB_SK_REV_SLOTS && __backend_same(&sr->slot[i], &want))
			slot = i;
	}
	if (slot == LB_SK_REV_SLOTS) {
#pragma unroll
		for (i = 0; i < LB_SK_REV_SLOTS; i++) {
			if (slot == LB_SK_REV_SLOTS && !sr->slot[i].family)
				slot = i;
		}
	}
	if (slot == LB_SK_REV_SLOTS) {
		slot = sr->next % LB_SK_REV_SLOTS;
		sr->next = (slot + 1) % LB_SK_REV_SLOTS;
	}
	if (slot < LB_SK_REV_SLOTS &&
	    (!__backend_same(&sr->slot[slot], &want) || !__revnat_same(&sr->slot[slot].rev, &want.rev)))
		sr->slot[slot] = want;
	bpf_spin_unlock(&sr->lock);

xlate:
	__ctx_set_addr(ctx, b->addr, b->family, v6);
	ctx->user_port = b->port;
	return SYS_PROCEED;
}

/* The peer (or UDP source) ctx shows: back to the frontend when this socket was translated to it. */
static __always_inline void __sock_rev(struct bpf_sock_addr *ctx, const int v6)
{
	struct lb_sk_rev_slot seen __attribute__((aligned(8))) = {};
	struct lb_revnat rev __attribute__((aligned(8))) = {};
	struct lb_sk_rev *sr;
	int found = 0;
	__u32 i;

	sr = bpf_sk_storage_get(&weir_lb_sk_rev, ctx->sk, 0, 0);
	if (!sr)
		return;
	seen.family = __ctx_addr(ctx, seen.addr, v6);
	seen.port = (__be16)ctx->user_port;
	bpf_spin_lock(&sr->lock);
#pragma unroll
	for (i = 0; i < LB_SK_REV_SLOTS; i++) {
		if (!found && __backend_same(&sr->slot[i], &seen)) {
			rev = sr->slot[i].rev;
			found = 1;
		}
	}
	bpf_spin_unlock(&sr->lock);
	if (!found || rev.family != seen.family)
		return;
	__ctx_set_addr(ctx, rev.addr, rev.family, v6);
	ctx->user_port = rev.port;
}

SEC("cgroup/connect4")
int weir_sock4_connect(struct bpf_sock_addr *ctx)
{
	return __sock_xlate(ctx, 0);
}

SEC("cgroup/connect6")
int weir_sock6_connect(struct bpf_sock_addr *ctx)
{
	return __sock_xlate(ctx, 1);
}

SEC("cgroup/sendmsg4")
int weir_sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return __sock_xlate(ctx, 0);
}

SEC("cgroup/sendmsg6")
int weir_sock6_sendmsg(struct bpf_sock_addr *ctx)
{
	return __sock_xlate(ctx, 1);
}

SEC("cgroup/recvmsg4")
int weir_sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	__sock_rev(ctx, 0);
	return SYS_PROCEED;
}

SEC("cgroup/recvmsg6")
int weir_sock6_recvmsg(struct bpf_sock_addr *ctx)
{
	__sock_rev(ctx, 1);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int weir_sock4_getpeername(struct bpf_sock_addr *ctx)
{
	__sock_rev(ctx, 0);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername6")
int weir_sock6_getpeername(struct bpf_sock_addr *ctx)
{
	__sock_rev(ctx, 1);
	return SYS_PROCEED;
}

char _license[] SEC("license") = "Dual BSD/GPL";
