/* SPDX-License-Identifier: Apache-2.0 */
/* Connection tracking (weir_ct): policy runs once per connection, on its first packet.
 *
 * An entry's key is the tuple as the initiator sent it plus CT_F_INGRESS/CT_F_EGRESS: the
 * direction whose policy admitted it (a connection between two local pods has one entry per
 * side: {A->B, EGRESS} made at A's from_container, {A->B, INGRESS} at B's to_container).
 *
 *   ct_lookup(flow, dir, bytes, now, closed) -> CT_ESTABLISHED | CT_REPLY | CT_RELATED | CT_NEW
 *     dir    DIR_INGRESS / DIR_EGRESS of the hook the packet is at (== CT_F_* value)
 *     closed set to the entry when this packet moved it to CT_STATE_CLOSING (the TCP close, for
 *            its TRACE_CLOSE event), else NULL. Two CPUs closing at once may both report it.
 *     Lookup order:
 *       1. {tuple, dir}                   a further packet of a connection opened this way
 *       2. {reversed tuple, other dir}    a reply: the peer answering a connection the pod
 *                                         opened (or the pod answering one opened to it)
 *       3. ICMP errors only, instead of 1-2: the quoted packet travelled the other way, so
 *          {inner, other dir} and {reversed inner, dir}: RELATED; nothing else lets an error in.
 *     With flow->ct_reply_hint (the sender's stage of the same packet found a reply), 2 is
 *     tried first: a hit (one lookup 3 would not override) is the reply; else 1, 2, 3 as above.
 *     The two orders differ only if entries 1 and 2 both exist, which the sender's side rules
 *     out (its reply means it has no entry of its own for this direction).
 *     Without a hint, a TCP/UDP/SCTP packet (not a pure SYN) whose source port is below its
 *     destination port is taken for a likely reply too (a server's port answering a client's
 *     ephemeral one): 2 first as well. Half of a connection's packets are replies, and each then
 *     spares the miss of 1 (a cold bucket on a busy node); a forward packet guessed wrong pays
 *     that miss, as every reply did before. Here both entries can exist only when both ends
 *     opened the same 4-tuple (TCP simultaneous open, UDP both sending first), each allowed by
 *     its policy: the packet passes either way, only the entry it counts in differs.
 *     Entries past lifetime_ns count as absent (the agent's GC deletes them later). A TCP SYN
 *     (without ACK) hitting a CLOSING entry (1 or 2) reopens the connection: CT_NEW, policy again.
 *     Hits update the entry's counters, TCP flags, state and lifetime (the lifetime lazily: it
 *     may lag the last packet by up to CT_LIFETIME_SLACK_NS, see __ct_account).
 *
 *   ct_lookup_entry(flow, dir, from_proxy, ..., hit, reopened) is ct_lookup that also hands out
 *     the entry hit (NULL for NEW/RELATED) and, for a NEW that a SYN on the CLOSING entry of its own
 *     key reopened, that entry (else NULL), for ct_create_proxy to take over: its rev_nat_index tells a reply of a connection translated at tc
 *     (lib/lb_nat.h), its flags a connection of the node proxy (lib/proxy.h). from_proxy: the
 *     packet was sent by the node proxy's upstream socket, whose connections are keyed
 *     {tuple, CT_F_INGRESS | CT_F_PROXY} (the destination pod's ingress judged them): lookup 1
 *     uses that key, and a packet not from the proxy that is no reply of the pod's own
 *     connections (2) is looked up as a reply of one of those (3; never for a pure TCP SYN, which
 *     answers no connection), so a proxy connection and a pod's with the same tuple never share
 *     an entry.
 *
 *   ct_create(flow, dir, bytes, now, cookie, src_identity, rev_nat_index) -> 0 | DROP_CT_CREATE_FAILED
 *   ct_create_proxy(..., flags, proxy_port): the same with CT_ENTRY_F_* flags (TO_PROXY: later
 *     packets go to the proxy listener proxy_port too; PROXY_UPSTREAM: keyed with CT_F_PROXY)
 *     Inserts {tuple, dir} after policy allowed the packet. `reopened` (from ct_lookup_entry of the
 *     same packet and tuple, or NULL): the CLOSING entry of that very key is rewritten in place
 *     instead. A client reusing its port within the close timeout (every busy client: at 25 000
 *     connections/s a port comes back about every second) then costs no LRU insertion (a free node
 *     popped, the bucket locked, the old node pushed back: ~0.3 us, twice per connection between
 *     two local pods). A CLOSING entry is no longer in use and not expired: the agent's GC
 *     (expired entries) leaves it, and the lookup just marked it referenced, so a full map's LRU
 *     evicts others first. Only a deletion within this packet's few hundred ns (a policy change,
 *     an eviction of a full map under churn) could let the write land in a recycled element, as
 *     any write through a looked-up entry could (__ct_account's). Any TCP packet may open an entry,
 *     not only a SYN (as Cilium: a connection that predates an agent restart or a CT flush keeps
 *     working if policy still allows it); without a SYN it still starts with the SYN timeout and
 *     gets the established timeout only once the responder answers.
 */
#ifndef WEIR_CONNTRACK_H
#define WEIR_CONNTRACK_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"
#include "lib/config.h"
#include "lib/drop_reasons.h"
#include "lib/parse.h"

#define WEIR_CT_MAX 262144 /* the loader may resize it (Datapath.open's ctMax) */

#define CT_NEW 0
#define CT_ESTABLISHED 1
#define CT_REPLY 2
#define CT_RELATED 3

#define CT_LIFETIME_SLACK_NS NSEC_PER_SEC /* see __ct_account */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, WEIR_CT_MAX);
} weir_ct SEC(".maps");

static __always_inline __u8 __ct_other_dir(__u8 dir)
{
	return dir == CT_F_INGRESS ? CT_F_EGRESS : CT_F_INGRESS;
}

static __always_inline void __ct_reverse(struct ct_key *dst, const struct ct_key *src)
{
	__builtin_memcpy(dst->saddr, src->daddr, 16);
	__builtin_memcpy(dst->daddr, src->saddr, 16);
	dst->sport = src->dport;
	dst->dport = src->sport;
	dst->nexthdr = src->nexthdr;
	dst->family = src->family;
	dst->pad = 0;
}

static __always_inline struct ct_entry *__ct_get(struct ct_key *key, __u64 now)
{
	struct ct_entry *e = bpf_map_lookup_elem(&weir_ct, key);

	if (e && now > e->lifetime_ns)
		return 0;
	return e;
}

/* State and timeout (seconds) from the TCP flags both sides have sent so far. */
static __always_inline __u32 __ct_timeout(const struct ct_entry *e, __u8 nexthdr, __u8 *state)
{
	__u16 all = e->tcp_flags_fwd | e->tcp_flags_rev;

	if (nexthdr != IPPROTO_TCP) {
		*state = e->packets_rev ? CT_STATE_ESTABLISHED : CT_STATE_NEW;
		return weir_ct_timeout_any;
	}
	if ((all & TCP_FLAG_RST) || ((e->tcp_flags_fwd & TCP_FLAG_FIN) && (e->tcp_flags_rev & TCP_FLAG_FIN))) {
		*state = CT_STATE_CLOSING;
		return weir_ct_timeout_close;
	}
	/* Redirected to the node proxy where the proxy answers the client itself (the server side of
	 * a connection whose ingress policy has L7 rules): this entry sees the client's packets only.
	 * Its ACK means the handshake is done, its FIN that it closes. */
	if (!e->packets_rev && (e->flags & CT_ENTRY_F_TO_PROXY) && (e->tcp_flags_fwd & TCP_FLAG_ACK)) {
		*state = (e->tcp_flags_fwd & TCP_FLAG_FIN) ? CT_STATE_CLOSING : CT_STATE_ESTABLISHED;
		return *state == CT_STATE_CLOSING ? weir_ct_timeout_close : weir_ct_timeout_tcp;
	}
	*state = e->packets_rev ? CT_STATE_ESTABLISHED : CT_STATE_NEW;
	return e->packets_rev ? weir_ct_timeout_tcp : weir_ct_timeout_syn;
}

/* Returns 1 when this packet closed the connection (state became CT_STATE_CLOSING).
 *
 * The entry is shared by both directions, which the kernel often runs on different CPUs (data on
 * the sender's, ACKs on the receiver's): every store pulls its cache line over. So only the
 * counters are written on every packet; flags and state only when they change, and the lifetime
 * only when it would move by more than CT_LIFETIME_SLACK_NS (an entry may then expire up to that
 * much before "timeout after the last packet"; a state change always sets it exactly). */
static __always_inline int __ct_account(struct ct_entry *e, const struct flow *f, int reply, __u32 bytes,
					__u64 now)
{
	__u8 before = e->state, state;
	__u64 lifetime;
	__u32 timeout;

	if (reply) {
		__sync_fetch_and_add(&e->packets_rev, 1);
		__sync_fetch_and_add(&e->bytes_rev, bytes);
		if ((e->tcp_flags_rev | f->tcp_flags) != e->tcp_flags_rev)
			e->tcp_flags_rev |= f->tcp_flags;
	} else {
		__sync_fetch_and_add(&e->packets_fwd, 1);
		__sync_fetch_and_add(&e->bytes_fwd, bytes);
		if ((e->tcp_flags_fwd | f->tcp_flags) != e->tcp_flags_fwd)
			e->tcp_flags_fwd |= f->tcp_flags;
	}
	timeout = __ct_timeout(e, f->tuple.nexthdr, &state);
	lifetime = now + (__u64)timeout * NSEC_PER_SEC;
	if (state != before) {
		e->state = state;
		e->lifetime_ns = lifetime;
	} else if (lifetime > e->lifetime_ns + CT_LIFETIME_SLACK_NS) {
		e->lifetime_ns = lifetime;
	}
	return before != CT_STATE_CLOSING && state == CT_STATE_CLOSING;
}

/* A TCP SYN without ACK: the first packet of a connection (or its retransmission). */
static __always_inline int __ct_pure_syn(const struct flow *f)
{
	return f->tuple.nexthdr == IPPROTO_TCP && (f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* Ports say reply: the source (a server's port) below the destination (a client's ephemeral
 * port). Only the lookup order depends on it, never the result (see ct_lookup_entry). */
static __always_inline int __ct_likely_reply(const struct flow *f)
{
	__u8 p = f->tuple.nexthdr;

	if (p != IPPROTO_TCP && p != IPPROTO_UDP && p != IPPROTO_SCTP)
		return 0;
	return !__ct_pure_syn(f) && bpf_ntohs(f->tuple.sport) < bpf_ntohs(f->tuple.dport);
}

/* A fresh SYN on a closing connection starts a new one, which policy must judge again. */
static __always_inline int __ct_reopens(const struct ct_entry *e, const struct flow *f)
{
	return e->state == CT_STATE_CLOSING && __ct_pure_syn(f);
}

static __always_inline int __ct_related(struct flow *f, __u8 dir, __u64 now)
{
	struct ct_key key = f->inner;

	key.flags = __ct_other_dir(dir);
	if (__ct_get(&key, now))
		return CT_RELATED;
	__ct_reverse(&key, &f->inner);
	key.flags = dir;
	if (__ct_get(&key, now))
		return CT_RELATED;
	return CT_NEW;
}

static __always_inline int ct_lookup_entry(struct flow *f, __u8 dir, int from_proxy, __u32 bytes, __u64 now,
					   struct ct_entry **closed, struct ct_entry **hit, struct ct_entry **reopened)
{
	struct ct_key key = f->tuple;
	struct ct_entry *e;

	*closed = 0;
	*hit = 0;
	*reopened = 0;
	if (f->icmp_kind == ICMP_KIND_ERROR)
		return __ct_related(f, dir, now);

	/* The sender's stage found this packet a reply (weir_to_local after weir_from_container): so
	 * will this one, almost surely; the reply's entry first spares the lookup that would miss.
	 * A hit that lookup 3 might override is not taken here: the usual order follows. */
	if ((f->ct_reply_hint || __ct_likely_reply(f)) && !from_proxy) {
		__ct_reverse(&key, &f->tuple);
		key.flags = __ct_other_dir(dir);
		e = __ct_get(&key, now);
		if (e && !(dir == CT_F_EGRESS && (e->flags & CT_ENTRY_F_TO_PROXY)))
			goto reply;
		key = f->tuple;
	}
	key.flags = dir | (from_proxy ? CT_F_PROXY : 0);
	e = __ct_get(&key, now);
	if (e) {
		if (__ct_reopens(e, f)) {
			*reopened = e;
			return CT_NEW;
		}
		if (__ct_account(e, f, 0, bytes, now))
			*closed = e;
		*hit = e;
		return CT_ESTABLISHED;
	}
	__ct_reverse(&key, &f->tuple);
	key.flags = __ct_other_dir(dir);
	e = __ct_get(&key, now);
	/* Not a reply of the pod's (or to the pod's) own connections: maybe one of the node proxy's
	 * upstream connection, from the pod it was opened to (or, from the ingress proxy to the
	 * egress proxy's upstream, through the client pod's veth). A pod never answers a connection
	 * its ingress redirected to the proxy (it never saw it): such a hit is an upstream of the
	 * same tuple, if there is one. A pure SYN answers no upstream (the proxy's socket opened it:
	 * its peer's first packet is a SYN-ACK), so a new connection, the one packet whose lookups all
	 * miss, in buckets no earlier packet warmed, skips this third one. */
	if (!from_proxy && !__ct_pure_syn(f) && (!e || (dir == CT_F_EGRESS && (e->flags & CT_ENTRY_F_TO_PROXY)))) {
		struct ct_entry *up;

		key.flags = CT_F_INGRESS | CT_F_PROXY;
		up = __ct_get(&key, now);
		if (up)
			e = up;
	}
reply:
	if (e) {
		if (__ct_reopens(e, f))
			return CT_NEW;
		if (__ct_account(e, f, 1, bytes, now))
			*closed = e;
		*hit = e;
		return CT_REPLY;
	}
	return CT_NEW;
}

static __always_inline int ct_lookup(struct flow *f, __u8 dir, __u32 bytes, __u64 now, struct ct_entry **closed)
{
	struct ct_entry *hit, *reopened;

	return ct_lookup_entry(f, dir, 0, bytes, now, closed, &hit, &reopened);
}

/* A new entry; `flags` CT_ENTRY_F_*, `proxy_port` (network order) for CT_ENTRY_F_TO_PROXY. An
 * entry with CT_ENTRY_F_PROXY_UPSTREAM is keyed with CT_F_PROXY. */
static __always_inline int ct_create_proxy(const struct flow *f, __u8 dir, __u32 bytes, __u64 now, __u32 cookie,
					   __u32 src_identity, __u16 rev_nat_index, __u8 flags, __be16 proxy_port,
					   struct ct_entry *reopened)
{
	struct ct_key key = f->tuple;
	struct ct_entry e = {
		.packets_fwd = 1,
		.bytes_fwd = bytes,
		.cookie = cookie,
		.src_identity = src_identity,
		.tcp_flags_fwd = f->tcp_flags,
		.rev_nat_index = rev_nat_index,
		.flags = flags,
		.proxy_port = proxy_port,
	};

	key.flags = dir | ((flags & CT_ENTRY_F_PROXY_UPSTREAM) ? CT_F_PROXY : 0);
	e.lifetime_ns = now + (__u64)__ct_timeout(&e, f->tuple.nexthdr, &e.state) * NSEC_PER_SEC;
	/* The reopened entry's key is this one: same tuple, dir, and CT_F_PROXY iff from the proxy
	 * (then flags has CT_ENTRY_F_PROXY_UPSTREAM). */
	if (reopened) {
		*reopened = e;
		return 0;
	}
	if (bpf_map_update_elem(&weir_ct, &key, &e, BPF_ANY) < 0)
		return DROP_CT_CREATE_FAILED;
	return 0;
}

static __always_inline int ct_create(const struct flow *f, __u8 dir, __u32 bytes, __u64 now, __u32 cookie,
				     __u32 src_identity, __u16 rev_nat_index)
{
	return ct_create_proxy(f, dir, bytes, now, cookie, src_identity, rev_nat_index, 0, 0, 0);
}

#endif /* WEIR_CONNTRACK_H */
