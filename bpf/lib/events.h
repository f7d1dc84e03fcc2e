/* SPDX-License-Identifier: Apache-2.0 */
/* Flow events (weir_events, a BPF ring buffer of struct flow_event, see common.h) for the agent's
 * flow pipeline, and the count of events that did not fit (weir_events_lost).
 *
 *   send_drop_event(meta, flow)              EVENT_DROP: meta->reason is the drop code
 *   send_policy_verdict(meta, flow)          EVENT_POLICY_VERDICT: meta->reason 0 = allowed
 *   send_trace(meta, flow, subtype, entry)   EVENT_TRACE, TRACE_OPEN / TRACE_CLOSE; counters from
 *                                            the conntrack entry (NULL: the opening packet alone)
 *     meta  what the caller knows: endpoint, identities, cookie, direction, EVENT_F_* flags, length,
 *           the proxy port of a connection redirected to the node proxy (EVENT_F_TO_PROXY).
 *           Identities and cookie are 0 where not known yet (e.g. a drop before the endpoint).
 *     flow  the tuple as this packet carries it (saddr = the packet's sender; a reply has
 *           EVENT_F_REPLY and the reversed tuple of its connection); zeros when not parsed.
 *
 * Events never change a verdict: a full ring only counts one more loss in weir_events_lost (per
 * CPU; user space sums). Records are written in place (bpf_ringbuf_reserve/submit), never copied
 * from the stack. The helper is a subprogram (__noinline): its body is emitted once per program
 * rather than at each of the ~10 call sites.
 *
 * Wake-ups: a submit that wakes the reader costs an irq_work (a self-IPI: an APIC write, a VM exit
 * under a hypervisor) and a context switch; the kernel's default (adaptive) wakes whenever the
 * reader has caught up, i.e. for nearly every event of a busy node whose reader keeps up (it was
 * ~15 % of the client's CPU in the connection-rate bench). So a record wakes the reader
 * (BPF_RB_FORCE_WAKEUP) only when this CPU last woke it weir_events_wakeup_ns (5 ms) ago or more,
 * else it is submitted without (BPF_RB_NO_WAKEUP): the first event after a quiet spell is
 * delivered at once and a stream costs at most one wake-up per CPU and interval. The reader keeps
 * draining for 10 ms after each drain that found records (src/bpf/ringbuf.ts flushMs, the agent's
 * EVENTS_FLUSH_MS: twice the interval), so a record submitted without a wake-up, less than 5 ms
 * after one of its CPU that woke the reader, is read at most ~10 ms later. Nothing is lost by it:
 * records stay in the ring until read.
 */
#ifndef WEIR_EVENTS_H
#define WEIR_EVENTS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"
#include "lib/config.h"
#include "lib/parse.h"

/* Bytes of the ring: a power-of-2 multiple of the page size. The loader sets it from
 * Datapath.open's eventsBufferBytes. */
#define WEIR_EVENTS_BYTES (4U << 20)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, WEIR_EVENTS_BYTES);
} weir_events SEC(".maps");

/* Ring buffer maps carry no value type, so nothing else puts struct flow_event into the BTF: this
 * read-only global (never read) does, for user space's layout check (as in policy.h). */
const volatile struct flow_event weir_btf_flow_event = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} weir_events_lost SEC(".maps");

/* When this CPU last woke the reader (bpf_ktime_get_ns), see "Wake-ups" above. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} weir_events_wake SEC(".maps");

/* The caller's side of an event (the packet's side comes from struct flow). */
struct event_meta {
	__u32 ifindex;
	__u32 endpoint_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 cookie;
	__u32 len;
	__u8 direction;
	__u8 reason;
	__u8 flags;
	__u8 pad;
	__be16 proxy_port; /* EVENT_F_TO_PROXY */
	__u16 remote_node_id; /* 189 drops: the peer's node (lib/auth.h) */
};

static __noinline void __send_event(const struct event_meta *m, const struct flow *f, __u8 type, __u8 subtype,
				    const struct ct_entry *e)
{
	struct flow_event *ev;
	__u32 zero = 0;
	__u64 *lost, *woke, now;
	__u64 wakeup = BPF_RB_NO_WAKEUP;

	ev = bpf_ringbuf_reserve(&weir_events, sizeof(*ev), 0);
	if (!ev) {
		lost = bpf_map_lookup_elem(&weir_events_lost, &zero);
		if (lost)
			*lost += 1; /* per-CPU value: no other writer */
		return;
	}
	ev->type = type;
	ev->subtype = subtype;
	ev->direction = m->direction;
	ev->reason = m->reason;
	ev->family = f->tuple.family;
	ev->nexthdr = f->tuple.nexthdr;
	ev->flags = m->flags;
	ev->tcp_flags = f->tcp_flags;
	ev->ifindex = m->ifindex;
	ev->endpoint_id = m->endpoint_id;
	ev->src_identity = m->src_identity;
	ev->dst_identity = m->dst_identity;
	ev->cookie = m->cookie;
	ev->len = m->len;
	__builtin_memcpy(ev->saddr, f->tuple.saddr, 16);
	__builtin_memcpy(ev->daddr, f->tuple.daddr, 16);
	ev->sport = f->tuple.sport;
	ev->dport = f->tuple.dport;
	ev->proxy_port = m->proxy_port;
	ev->remote_node_id = m->remote_node_id;
	now = bpf_ktime_get_ns();
	ev->ktime_ns = now;
	if (e) {
		ev->packets_fwd = e->packets_fwd;
		ev->bytes_fwd = e->bytes_fwd;
		ev->packets_rev = e->packets_rev;
		ev->bytes_rev = e->bytes_rev;
	} else if (type == EVENT_TRACE) {
		ev->packets_fwd = 1;
		ev->bytes_fwd = m->len;
		ev->packets_rev = 0;
		ev->bytes_rev = 0;
	} else {
		ev->packets_fwd = 0;
		ev->bytes_fwd = 0;
		ev->packets_rev = 0;
		ev->bytes_rev = 0;
	}
	woke = bpf_map_lookup_elem(&weir_events_wake, &zero);
	if (!woke || now - *woke >= weir_events_wakeup_ns) {
		wakeup = BPF_RB_FORCE_WAKEUP;
		if (woke)
			*woke = now; /* per-CPU value: no other writer */
	}
	bpf_ringbuf_submit(ev, wakeup);
}

static __always_inline void send_drop_event(const struct event_meta *m, const struct flow *f)
{
	if (!weir_events_enabled)
		return;
	__send_event(m, f, EVENT_DROP, 0, 0);
}

static __always_inline void send_policy_verdict(const struct event_meta *m, const struct flow *f)
{
	if (!weir_events_enabled)
		return;
	__send_event(m, f, EVENT_POLICY_VERDICT, 0, 0);
}

static __always_inline void send_trace(const struct event_meta *m, const struct flow *f, __u8 subtype,
				       const struct ct_entry *e)
{
	if (!weir_events_enabled)
		return;
	__send_event(m, f, EVENT_TRACE, subtype, e);
}

#endif /* WEIR_EVENTS_H */
