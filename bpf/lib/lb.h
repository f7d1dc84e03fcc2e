/* SPDX-License-Identifier: Apache-2.0 */
/* Service load balancing: the lb maps (layouts in lib/common.h) and backend selection.
 *
 *   lb_frontend(key) -> struct lb_service * (slot 0) or NULL
 *     key  frontend address/port/proto/family; the function sets slot 0 and scope EXT
 *   lb_select(key, svc, netns_cookie, sock_cookie, client_addr) -> backend id, 0 when there is none
 *     At the socket: the client's netns cookie and the socket's cookie, client_addr NULL. At tc
 *     (lib/lb_nat.h, lib/nodeport.h): netns_cookie 0, sock_cookie a mix of the tuple, client_addr
 *     the client's address (16 bytes).
 *     Only ACTIVE slots (1..svc->active) are candidates: terminating backends get no new
 *     connections. Order:
 *       SVC_F_AFFINITY  weir_lb_affinity {netns_cookie, client_addr, rev_nat_index, family}: the remembered
 *                       backend if it is still an ACTIVE slot of this service and was used less
 *                       than the timeout (slot 0 backend_id, seconds) ago; else pick (below) and
 *                       remember. Two CPUs may pick differently on first contact (as Cilium).
 *       SVC_F_MAGLEV    weir_lb_maglev[rev_nat_index][0][hash(netns_cookie, sock_cookie) % M]
 *                       (M = weir_lb_maglev_size); a missing table or a backend that is not
 *                       LB_BACKEND_ACTIVE falls back to random.
 *       otherwise       TCP: a random ACTIVE slot (bpf_get_prandom_u32); UDP: the slot the
 *                       cookies' hash names, so an unconnected socket sticks to one backend.
 *     At the socket the 5-tuple is not known yet, so Maglev hashes the cookies: stable per
 *     socket, consistent across a backend change for most sockets (what Maglev promises).
 *   lb_backend(id) -> struct lb_backend * or NULL
 *
 * Maglev table size: a load-time constant (weir_lb_maglev_size, below), one per node, like
 * Cilium's --bpf-lb-maglev-table-size; inner arrays always have room for LB_MAGLEV_LUT_MAX ids and
 * the control plane fills the first M. The loader writes it (Datapath.open's maglevTableSize).
 */
#ifndef WEIR_LB_H
#define WEIR_LB_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"
#include "lib/config.h"

#define WEIR_LB_SERVICES_MAX 65536 /* frontend slots (metadata + backends), all services */
#define WEIR_LB_BACKENDS_MAX 65536
#define WEIR_LB_REVNAT_MAX 65536
#define WEIR_LB_MAGLEV_MAX 4096 /* services using Maglev (each inner table holds 256 KiB) */
#define WEIR_LB_AFFINITY_MAX 65536

volatile const __u32 weir_lb_maglev_size = 16381;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_key);
	__type(value, struct lb_service);
	__uint(max_entries, WEIR_LB_SERVICES_MAX);
} weir_lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(max_entries, WEIR_LB_BACKENDS_MAX);
} weir_lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct lb_revnat);
	__uint(max_entries, WEIR_LB_REVNAT_MAX);
} weir_lb_revnat SEC(".maps");

/* Sizes, not types: the value is an array, which BTF-typed inner templates cannot express
 * completely with clang 14 (see lib/policy.h). */
struct weir_lb_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32) * LB_MAGLEV_LUT_MAX);
	__uint(max_entries, 1);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u16);
	__uint(max_entries, WEIR_LB_MAGLEV_MAX);
	__array(values, struct weir_lb_maglev_inner);
} weir_lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_value);
	__uint(max_entries, WEIR_LB_AFFINITY_MAX);
} weir_lb_affinity SEC(".maps");

/* Socket-local storage (Cilium keys a hash by socket cookie instead): the kernel frees it with the
 * socket, and a socket without it (every accepted connection) is told apart without a lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lb_sk_rev);
} weir_lb_sk_rev SEC(".maps");

static __always_inline struct lb_service *lb_frontend(struct lb_key *key)
{
	key->backend_slot = 0;
	key->scope = LB_SCOPE_EXT;
	key->pad = 0;
	return bpf_map_lookup_elem(&weir_lb_services, key);
}

static __always_inline struct lb_backend *lb_backend(__u32 id)
{
	return bpf_map_lookup_elem(&weir_lb_backends, &id);
}

/* The backend id in `slot` of the frontend `key` names (0: none). Changes key->backend_slot. */
static __always_inline __u32 lb_slot_backend(struct lb_key *key, __u16 slot)
{
	struct lb_service *s;

	key->backend_slot = slot;
	s = bpf_map_lookup_elem(&weir_lb_services, key);
	return s ? s->backend_id : 0;
}

struct lb_member_ctx {
	struct lb_key key;
	__u32 backend_id;
	__u32 found;
};

static long __lb_member_step(__u32 index, void *data)
{
	struct lb_member_ctx *c = data;

	if (lb_slot_backend(&c->key, (__u16)(index + 1)) == c->backend_id) {
		c->found = 1;
		return 1;
	}
	return 0;
}

/* Whether `backend_id` sits in an ACTIVE slot (1..active) of the service. A walk (bpf_loop, so
 * the verifier checks one step): services have few backends, and affinity asks once per connect. */
static __always_inline int lb_active_member(const struct lb_key *key, __u16 active, __u32 backend_id)
{
	struct lb_member_ctx c = { .key = *key, .backend_id = backend_id };

	if (!backend_id || !active)
		return 0;
	bpf_loop(active, __lb_member_step, &c, 0);
	return c.found;
}

/* TCP: a random slot per connection. UDP: the socket's hash, so an unconnected socket's datagrams
 * (each one passes sendmsg) keep going to one backend, as Cilium's socket LB does. */
static __always_inline __u32 lb_pick_random(struct lb_key *key, __u16 active, __u32 hash)
{
	__u32 r = key->proto == IPPROTO_UDP ? hash : bpf_get_prandom_u32();

	return lb_slot_backend(key, (__u16)(r % active + 1));
}

/* 64-bit mix of the two cookies (the murmur3 finaliser): a stable, well-spread table index. */
static __always_inline __u32 lb_hash(__u64 a, __u64 b)
{
	__u64 h = a * 0x9E3779B97F4A7C15ULL ^ b;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (__u32)h;
}

static __always_inline __u32 lb_pick_maglev(__u16 rev_nat_index, __u32 hash)
{
	struct lb_backend *b;
	__u32 zero = 0, idx, id, m = weir_lb_maglev_size;
	__u32 *lut;
	void *inner;

	if (!m || m > LB_MAGLEV_LUT_MAX)
		return 0;
	inner = bpf_map_lookup_elem(&weir_lb_maglev, &rev_nat_index);
	if (!inner)
		return 0;
	lut = bpf_map_lookup_elem(inner, &zero);
	if (!lut)
		return 0;
	idx = hash % m;
	/* The compiler knows idx < m <= LUT_MAX and would drop the check the verifier needs. */
	asm volatile("" : "+r"(idx));
	if (idx >= LB_MAGLEV_LUT_MAX)
		return 0;
	id = lut[idx];
	b = lb_backend(id);
	return b && b->state == LB_BACKEND_ACTIVE ? id : 0;
}

static __always_inline __u32 __lb_pick(struct lb_key *key, const struct lb_service *svc, __u64 netns_cookie,
				       __u64 sock_cookie)
{
	__u32 hash = lb_hash(netns_cookie, sock_cookie), id = 0;

	if (svc->flags & SVC_F_MAGLEV)
		id = lb_pick_maglev(svc->rev_nat_index, hash);
	return id ? id : lb_pick_random(key, svc->active, hash);
}

static __always_inline __u32 lb_select(struct lb_key *key, const struct lb_service *svc, __u64 netns_cookie,
				       __u64 sock_cookie, const __u8 *client_addr)
{
	struct lb_affinity_key akey = {};
	struct lb_affinity_value aval = {}, *prev;
	__u64 now;
	__u32 id;

	if (!svc->active)
		return 0;
	if (!(svc->flags & SVC_F_AFFINITY))
		return __lb_pick(key, svc, netns_cookie, sock_cookie);

	akey.client_cookie = netns_cookie;
	if (client_addr)
		__builtin_memcpy(akey.client_addr, client_addr, 16);
	akey.rev_nat_index = svc->rev_nat_index;
	akey.family = key->family;
	now = bpf_ktime_get_ns();
	prev = bpf_map_lookup_elem(&weir_lb_affinity, &akey);
	/* last_used_ns may be a hair ahead of `now` when another CPU just used the entry. */
	if (prev && (prev->last_used_ns >= now || now - prev->last_used_ns <= (__u64)svc->backend_id * NSEC_PER_SEC) &&
	    lb_active_member(key, svc->active, prev->backend_id)) {
		prev->last_used_ns = now;
		return prev->backend_id;
	}
	id = __lb_pick(key, svc, netns_cookie, sock_cookie);
	if (id) {
		aval.last_used_ns = now;
		aval.backend_id = id;
		bpf_map_update_elem(&weir_lb_affinity, &akey, &aval, BPF_ANY);
	}
	return id;
}

#endif /* WEIR_LB_H */
