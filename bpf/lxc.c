/* SPDX-License-Identifier: Apache-2.0 */
/* weir's per-pod datapath: two tc programs on each pod's host-side veth, sharing every map.
 *
 *   weir_from_container  tc ingress of the host veth: packets the pod sends (its egress)
 *   weir_to_container    tc egress of the host veth: packets sent to the pod (its ingress)
 *   weir_to_local        tail called by weir_from_container (eBPF host routing,
 *                        lib/host_routing.h): the ingress of a destination pod of this node,
 *                        which then receives the packet with bpf_redirect_peer
 *   weir_policy_egress   tail called by the entry programs (weir_calls, lib/stages.h) for the
 *   weir_policy_ingress  first packet of a new connection: the policy stage of its direction
 *
 * A staged pipeline (lib/stages.h). The entry programs run __handle: endpoint -> parse ->
 * fragments -> (egress) service translation -> conntrack; established, reply and related packets
 * finish there, without a tail call. A new connection's first packet goes on to its policy stage
 * (__policy_stage): fail-closed check, ipcache, policy, authentication, L7 / encryption ports,
 * verdict event, conntrack entry, then delivery as the entry program would do it. The kernel
 * routes what is forwarded (TC_ACT_OK) unless host routing delivers it; drops are TC_ACT_SHOT.
 * Every verdict is counted in weir_metrics once, by the stage that decides it.
 *
 * Flow events (lib/events.h, weir_events), per connection rather than per packet:
 *   every drop                         EVENT_DROP (cookie of the deny rule for DROP_POLICY_DENY, of the
 *                                      allow rule requiring authentication for 189)
 *   the policy decision of a new one   EVENT_POLICY_VERDICT (allowed: reason 0; denied: drop code;
 *                                      fail-closed endpoints and missing policy maps included;
 *                                      EVENT_F_AUDIT: denied, but the endpoint audits: it passes)
 *   its conntrack entry created        EVENT_TRACE/TRACE_OPEN (after the verdict)
 *   TCP close (FIN both ways, RST)     EVENT_TRACE/TRACE_CLOSE with the entry's counters
 * Established, reply and related packets emit nothing else. EVENT_F_REPLY marks replies,
 * EVENT_F_RELATED ICMP errors. Events never change a verdict. East-west service load balancing
 * is done at the socket (sock.c); what no socket hook translated is translated by
 * weir_from_container before conntrack (lib/lb_nat.h: DNAT, the reply's reverse NAT in
 * weir_to_container through the conntrack entry's rev_nat_index; no backend: RST / ICMP).
 * North-south NodePort by weir_from_netdev (below, lib/nodeport.h), whose replies
 * weir_from_container translates back once conntrack has seen them.
 *
 *   weir_from_netdev     tc ingress of the node's external-facing devices: NodePort packets are
 *                        translated and redirected; replies to the node proxy's upstream
 *                        connections are assigned to its sockets; anything else passes to the
 *                        node's stack
 *   weir_to_proxy        tc ingress of the node's weir_host device: delivers what
 *                        weir_to_container redirected to the node proxy (lib/proxy.h)
 *
 * L7 (lib/proxy.h): a new TCP connection whose allowing entry carries a proxy port is recorded
 * (CT_ENTRY_F_TO_PROXY) and handed to the node proxy's listener, every later packet to its
 * accepted socket: weir_from_container assigns the socket itself, weir_to_container (tc egress,
 * no socket assignment there) redirects to weir_to_proxy. The verdict event says so
 * (EVENT_F_TO_PROXY, the proxy port). No listener: DROP_PROXY_LOOKUP_FAILED, never a bypass. The
 * proxy's upstream connections (marked by their socket) are judged by the destination's ingress
 * policy like any other (recorded with CT_F_PROXY in their key) but not redirected again when the
 * ingress proxy opened them; their replies go back to the proxy's socket.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"
#include "lib/drop_reasons.h"
#include "lib/config.h"
#include "lib/metrics.h"
#include "lib/endpoint.h"
#include "lib/ipcache.h"
#include "lib/parse.h"
#include "lib/frag.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/auth.h"
#include "lib/events.h"
#include "lib/refuse.h"
#include "lib/stages.h"
#include "lib/lb_nat.h"
#include "lib/nodeport.h"
#include "lib/proxy.h"
#include "lib/host_routing.h"
#include "lib/overlay.h"

/* The parsed packet of the running program: the per-CPU scratch of lib/stages.h rather than the
 * stack, which tail calls keep whole (the entry program and its subprograms must fit in 512 bytes
 * together). Only the flow is cleared per packet; the stage state is written when a new
 * connection goes to its policy stage. weir_to_local, tail called by weir_from_container once it
 * is done with it, parses afresh. */
static __always_inline struct flow *__flow_scratch(void)
{
	__u32 zero = 0;
	struct flow_scratch *sc = bpf_map_lookup_elem(&weir_flow_scratch, &zero);

	if (!sc)
		return 0;
	__builtin_memset(&sc->flow, 0, sizeof(sc->flow));
	return &sc->flow;
}

/* What weir_from_container found of the packet it tail calls weir_to_local with, read by
 * weir_to_local before it parses the packet afresh into the same scratch: a reply there is a reply
 * here (lib/conntrack.h, flow->ct_reply_hint). Kept only for the same tuple (ports, and addresses
 * folded to a word each): an entry program of an earlier load writes its own scratch, and this one
 * may then hold another packet's. A wrong hint costs one lookup, never a verdict. */
struct ct_hint {
	__u32 ports;
	__u32 saddr;
	__u32 daddr;
	__u32 reply;
};

static __always_inline __u32 __fold_addr(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] ^ w[1] ^ w[2] ^ w[3];
}

static __always_inline void __ct_hint_take(struct ct_hint *h)
{
	__u32 zero = 0;
	const struct flow_scratch *sc = bpf_map_lookup_elem(&weir_flow_scratch, &zero);
	const struct flow *f = sc ? &sc->flow : 0;

	if (!f || !f->ct_reply_hint)
		return;
	h->reply = 1;
	h->ports = (__u32)f->tuple.sport << 16 | f->tuple.dport;
	h->saddr = __fold_addr(f->tuple.saddr);
	h->daddr = __fold_addr(f->tuple.daddr);
}

static __always_inline int __ct_hint_same(const struct ct_hint *h, const struct flow *f)
{
	return h->ports == ((__u32)f->tuple.sport << 16 | f->tuple.dport) && h->saddr == __fold_addr(f->tuple.saddr) &&
	       h->daddr == __fold_addr(f->tuple.daddr);
}

/* Identities of the packet's sender and receiver: the endpoint's own for its side, the ipcache's
 * for the peer (the pod sends at DIR_EGRESS, receives at DIR_INGRESS). */
static __always_inline void __event_identities(struct event_meta *m, __u32 ep_identity, __u32 remote)
{
	m->src_identity = m->direction == DIR_EGRESS ? ep_identity : remote;
	m->dst_identity = m->direction == DIR_EGRESS ? remote : ep_identity;
}

/* The peer's identity: `peer` when the packet brought its own (a tunnel's VNI, lib/overlay.h), else
 * the ipcache's. */
static __always_inline __u32 __remote_identity(const struct flow *f, __u8 dir, __u32 peer)
{
	if (peer)
		return peer;
	return ipcache_identity(f->tuple.family, dir == DIR_EGRESS ? f->tuple.daddr : f->tuple.saddr);
}

/* Packets of a connection the node proxy is part of (lib/proxy.h): a redirected connection's
 * further packets, and the replies to the proxy's upstream socket, go to the proxy's socket.
 * Returns -1 for any other packet, else the verdict (*reason set on TC_ACT_SHOT). */
static __always_inline int __proxy_conn(struct __sk_buff *skb, const struct flow *f, __u8 dir, int ct,
					const struct ct_entry *hit, int *reason)
{
	__be16 port;

	if (ct == CT_ESTABLISHED && (hit->flags & CT_ENTRY_F_TO_PROXY))
		port = hit->proxy_port;
	else if (ct == CT_REPLY && (hit->flags & CT_ENTRY_F_PROXY_UPSTREAM))
		port = 0; /* the upstream socket: established only */
	else
		return -1;
	if (dir == DIR_EGRESS) {
		*reason = proxy_assign(skb, f, port);
		return *reason ? TC_ACT_SHOT : TC_ACT_OK;
	}
	*reason = DROP_PROXY_LOOKUP_FAILED;
	return proxy_to_host(skb, port);
}

/* The entry pipeline of one endpoint and direction (lib/stages.h): the endpoint of host veth
 * `ifindex` (the hook's own, or for weir_to_local the destination weir_from_container named), the
 * packet parsed into `f` (the scratch's flow); `peer` the sender's identity when the packet
 * carries it (tunnel mode), 0: the ipcache's; `hint` what weir_from_container found of this packet
 * (weir_to_local only, else NULL); `caller` the entry program (STAGE_*), for the policy stage;
 * `parsed`: `f` already holds this packet, parsed and its fragment tracked (weir_to_local, from
 * weir_from_container's host routing: lib/host_routing.h).
 * Established, reply and related packets finish here; the first packet of a new connection goes
 * on to the policy stage of `dir` (a tail call, which does not return; an empty slot drops it).
 * Returns the tc verdict; *routable = 1 when it is the plain forward verdict (nothing redirected,
 * assigned or bounced), which host routing may deliver itself (lib/host_routing.h); then
 * *identity is the endpoint's. */
static __always_inline int __handle(struct __sk_buff *skb, __u8 dir, __u32 ifindex, struct flow *f, int *routable,
				    __u32 *identity, __u32 peer, const struct ct_hint *hint, __u8 caller, int parsed)
{
	struct event_meta m = { .ifindex = ifindex, .len = skb->len, .direction = dir };
	struct ct_entry *closed, *hit, *reopened;
	struct endpoint_info *ep;
	struct stage_state *st;
	int ret, ct, hairpin = 0, from_proxy = 0;
	__u16 rev_nat = 0;
	__u32 bytes = skb->len;
	__u32 ep_id, ep_identity = IDENTITY_UNKNOWN, nonce;
	__u64 now;
	int reason;

	ep = endpoint_lookup(ifindex);
	if (!ep) {
		/* Reported as before the parse, whoever parsed it. */
		if (parsed)
			__builtin_memset(f, 0, sizeof(*f));
		reason = DROP_EP_NOT_READY;
		goto drop;
	}
	ep_id = ep->endpoint_id;
	ep_identity = ep->identity;
	m.endpoint_id = ep_id;

	if (!parsed) {
		reason = parse_packet(skb, f);
		if (reason == PARSE_PASS) {
			metrics_count(REASON_FORWARDED, dir, bytes);
			return TC_ACT_OK;
		}
		if (f->icmp_kind == ICMP_KIND_ERROR)
			m.flags |= EVENT_F_RELATED;
		if (reason)
			goto drop;
		reason = frag_track(f);
		if (reason)
			goto drop;
	} else if (f->icmp_kind == ICMP_KIND_ERROR) {
		m.flags |= EVENT_F_RELATED;
	}
	/* Sent by the node proxy's upstream socket: only the node's own stack sends into this hook
	 * with a mark (lib/proxy.h). */
	if (dir == DIR_INGRESS) {
		from_proxy = proxy_origin(skb->mark);
		if (from_proxy)
			m.flags |= EVENT_F_FROM_PROXY;
		if (from_proxy == PROXY_FROM_TUNNEL)
			m.flags |= EVENT_F_ENCRYPTED;
	}

	/* Conntrack's clock: CLOCK_MONOTONIC at tick granularity (lifetimes are seconds, and lag up to
	 * CT_LIFETIME_SLACK_NS anyway), a few ns rather than a clock-source read per packet. */
	now = bpf_ktime_get_coarse_ns();
	/* The pod answering its own connection through a Service (hairpin, lib/lb_nat.h): back into
	 * the pod, from the frontend. */
	if (dir == DIR_EGRESS && lb_nat_hairpin_reply(skb, f, bytes, now) == 0) {
		metrics_count(REASON_FORWARDED, dir, bytes);
		return lb_nat_bounce(skb);
	}
	if (hint && hint->reply && __ct_hint_same(hint, f))
		f->ct_reply_hint = 1;
	ct = ct_lookup_entry(f, dir, from_proxy, bytes, now, &closed, &hit, &reopened);
	/* A service frontend the socket hooks did not translate: translated here (lib/lb_nat.h), and
	 * everything below sees the pod -> backend flow. */
	if (ct == CT_NEW && dir == DIR_EGRESS && f->icmp_kind != ICMP_KIND_ERROR) {
		switch (lb_nat_egress(skb, f, &rev_nat, &reason)) {
		case LB_NAT_HAIRPIN:
			hairpin = 1;
			/* fall through */
		case LB_NAT_DONE:
			ct = ct_lookup_entry(f, dir, from_proxy, bytes, now, &closed, &hit, &reopened);
			break;
		case LB_NAT_DROP:
			goto no_service;
		default:
			break;
		}
	}
	/* For weir_to_local, tail called with this packet (lib/conntrack.h). */
	f->ct_reply_hint = ct == CT_REPLY;
	switch (ct) {
	case CT_REPLY:
		m.flags |= EVENT_F_REPLY;
		/* fall through */
	case CT_ESTABLISHED:
		/* Established packets emit nothing, except the one that closes the connection. */
		if (closed) {
			m.cookie = closed->cookie;
			__event_identities(&m, ep_identity, __remote_identity(f, dir, peer));
			send_trace(&m, f, TRACE_CLOSE, closed);
		}
		if (hit && (hit->flags & (CT_ENTRY_F_TO_PROXY | CT_ENTRY_F_PROXY_UPSTREAM))) {
			ret = __proxy_conn(skb, f, dir, ct, hit, &reason);
			if (ret == TC_ACT_SHOT)
				goto drop;
			if (ret >= 0) {
				metrics_count(REASON_FORWARDED, dir, bytes);
				return ret;
			}
		}
		/* A reply of a connection translated at tc shows the frontend again. */
		if (dir == DIR_INGRESS && (m.flags & EVENT_F_REPLY) && hit && hit->rev_nat_index)
			lb_nat_reply(skb, f, hit->rev_nat_index);
		/* A NodePort reply leaves translated back (lib/nodeport.h). */
		if (dir == DIR_EGRESS && (m.flags & EVENT_F_REPLY)) {
			ret = nodeport_rev4(skb, f);
			if (ret == TC_ACT_SHOT) {
				reason = DROP_INVALID;
				goto drop;
			}
			if (ret >= 0) {
				metrics_count(REASON_FORWARDED, dir, bytes);
				return ret;
			}
		}
		goto forward;
	case CT_RELATED:
		goto forward;
	default:
		break;
	}

	/* A new connection. ICMP errors never open one: they pass only as RELATED. */
	if (f->icmp_kind == ICMP_KIND_ERROR) {
		reason = DROP_POLICY;
		goto drop;
	}
	/* The rest is the policy stage's (lib/stages.h): what it needs, in the scratch beside the
	 * flow, and the nonce that ties them to this packet. */
	st = &((struct flow_scratch *)f)->stage; /* f is the scratch's first member */
	nonce = bpf_get_prandom_u32();
	st->magic = STAGE_MAGIC;
	st->nonce = nonce;
	st->m = m;
	st->now = now;
	st->bytes = bytes;
	st->ifindex = ifindex;
	st->peer = peer;
	st->ep_id = ep_id;
	st->ep_identity = ep_identity;
	st->ep_flags = ep->flags;
	st->rev_nat = rev_nat;
	st->hairpin = hairpin;
	st->from_proxy = from_proxy;
	st->reopen = reopened != 0;
	st->caller = caller;
	skb->cb[0] = nonce;
	if (dir == DIR_EGRESS)
		bpf_tail_call(skb, &weir_calls, CALL_POLICY_EGRESS);
	else
		bpf_tail_call(skb, &weir_calls, CALL_POLICY_INGRESS);
	/* No stage in the slot: fail closed. */
	reason = DROP_MISSED_TAIL_CALL;
	goto drop;

forward:
	metrics_count(REASON_FORWARDED, dir, bytes);
	if (hairpin)
		return lb_nat_bounce(skb);
	*routable = 1;
	*identity = ep_identity;
	return TC_ACT_OK;
drop:
	/* Before policy the identities are not set yet: as known here (the peer's once parsed). */
	if (!m.src_identity && !m.dst_identity)
		__event_identities(&m, ep_identity,
				   f->tuple.family ? __remote_identity(f, dir, peer) : IDENTITY_UNKNOWN);
	m.reason = reason;
	send_drop_event(&m, f);
	metrics_count(reason, dir, bytes);
	return TC_ACT_SHOT;
no_service:
	/* Refused at once: a service without backends answers (TCP: RST, UDP: ICMP port unreachable),
	 * straight to the pod's side of the veth (bpf_redirect_peer: this is tc ingress). */
	__event_identities(&m, ep_identity, __remote_identity(f, dir, peer));
	m.reason = reason;
	send_drop_event(&m, f);
	metrics_count(reason, dir, bytes);
	if (reason == DROP_NO_SERVICE && refuse_reply(skb, f) == 0)
		return bpf_redirect_peer(skb->ifindex, 0);
	return TC_ACT_SHOT;
}

/* After the sender's forward verdict: into the tunnel when the destination lives on another node,
 * the VNI carrying the sender's identity (its endpoint's, as the entry program found it); -1: not
 * for the tunnel. */
static __always_inline int __encap(struct __sk_buff *skb, const struct flow *f, __u32 identity)
{
	int reason = 0, ret;

	ret = overlay_encap(skb, f, identity, &reason);
	if (ret == TC_ACT_SHOT)
		metrics_count(reason, DIR_EGRESS, skb->len);
	return ret;
}

/* A policy stage whose scratch does not hold this packet's state: dropped, as an empty slot's
 * packet is (DROP_MISSED_TAIL_CALL), the packet parsed afresh for its event. */
static __always_inline int __stage_missed(struct __sk_buff *skb, struct flow_scratch *sc, __u8 dir)
{
	struct event_meta m = { .ifindex = skb->ifindex, .len = skb->len, .direction = dir,
				.reason = DROP_MISSED_TAIL_CALL };

	__builtin_memset(&sc->flow, 0, sizeof(sc->flow));
	if (parse_packet(skb, &sc->flow) == PARSE_OK) {
		m.src_identity = ipcache_identity(sc->flow.tuple.family, sc->flow.tuple.saddr);
		m.dst_identity = ipcache_identity(sc->flow.tuple.family, sc->flow.tuple.daddr);
	}
	send_drop_event(&m, &sc->flow);
	metrics_count(DROP_MISSED_TAIL_CALL, dir, m.len);
	return TC_ACT_SHOT;
}

/* The policy stage of `dir` (lib/stages.h): the first packet of a new connection, as its entry
 * program left it in the scratch. Fail-closed check, ipcache, policy, authentication, L7 and
 * encryption ports, the verdict event, the conntrack entry and its trace; then delivery as the
 * entry program would have done it. */
static __always_inline int __policy_stage(struct __sk_buff *skb, __u8 dir)
{
	__u32 zero = 0;
	struct flow_scratch *sc = bpf_map_lookup_elem(&weir_flow_scratch, &zero);
	struct policy_entry verdict = {};
	struct policy_key key = {};
	struct ct_entry *reopened = 0;
	struct event_meta m;
	struct flow *f;
	int ret, reason, hairpin, from_proxy;
	__u8 ct_flags = 0, caller;
	__be16 proxy_port = 0;
	__u32 remote, ep_id, ep_identity, ifindex, peer, bytes;
	__u64 now;

	if (!sc)
		return TC_ACT_SHOT;
	if (sc->stage.magic != STAGE_MAGIC || sc->stage.nonce != skb->cb[0] || sc->stage.m.direction != dir)
		return __stage_missed(skb, sc, dir);
	f = &sc->flow;
	m = sc->stage.m;
	now = sc->stage.now;
	bytes = sc->stage.bytes;
	ifindex = sc->stage.ifindex;
	peer = sc->stage.peer;
	ep_id = sc->stage.ep_id;
	ep_identity = sc->stage.ep_identity;
	hairpin = sc->stage.hairpin;
	from_proxy = sc->stage.from_proxy;
	caller = sc->stage.caller;
	/* The CLOSING entry of this very key a SYN reopens (lib/conntrack.h): found again, in the
	 * bucket the entry program just warmed. */
	if (sc->stage.reopen) {
		struct ct_key ck = f->tuple;

		ck.flags = dir | (from_proxy ? CT_F_PROXY : 0);
		reopened = __ct_get(&ck, now);
		if (reopened && !__ct_reopens(reopened, f))
			reopened = 0;
	}

	remote = __remote_identity(f, dir, peer);
	__event_identities(&m, ep_identity, remote);
	if (sc->stage.ep_flags & ENDPOINT_F_FAIL_CLOSED) {
		reason = DROP_FAIL_CLOSED;
	} else {
		key.identity = remote;
		key.direction = dir;
		key.protocol = f->tuple.nexthdr;
		if (f->tuple.nexthdr != IPPROTO_ICMP && f->tuple.nexthdr != IPPROTO_ICMPV6)
			key.dport = f->tuple.dport;
		reason = policy_can_access(ep_id, &key, &verdict);
		/* Hairpin traffic never passes weir_to_container: the pod's ingress judges it here, its
		 * own identity as the peer (self traffic is policy-evaluated). */
		if (!reason && hairpin) {
			key.identity = ep_identity;
			key.direction = DIR_INGRESS;
			reason = policy_can_access(ep_id, &key, &verdict);
		}
		/* `authentication: {mode: required}`: allowed once the pair authenticated (lib/auth.h). */
		if (!reason && (verdict.flags & POLICY_F_AUTH)) {
			m.remote_node_id = auth_remote_node(f->tuple.family,
							    dir == DIR_EGRESS ? f->tuple.daddr : f->tuple.saddr);
			reason = auth_check(dir == DIR_EGRESS ? ep_identity : remote,
					    dir == DIR_EGRESS ? remote : ep_identity, m.remote_node_id, now);
		}
	}
	/* L7 rules: the connection goes through the node proxy (HTTP: TCP; DNS: UDP and TCP, egress),
	 * unless the ingress proxy itself opens it: it judged it already. */
	if (!reason && verdict.proxy_port && (f->tuple.nexthdr == IPPROTO_TCP || f->tuple.nexthdr == IPPROTO_UDP) &&
	    from_proxy != PROXY_FROM_INGRESS) {
		proxy_port = verdict.proxy_port;
		ct_flags |= CT_ENTRY_F_TO_PROXY;
		m.flags |= EVENT_F_TO_PROXY;
		m.proxy_port = proxy_port;
	}
	/* --encryption mtls (lib/overlay.h): an allowed TCP connection to another node's pod goes to the
	 * node proxy's outbound tunnel listener, which carries it to the other node's proxy in an mTLS
	 * tunnel; never plain into the VXLAN device (no listener: dropped below, fail closed). */
	if (!reason && !proxy_port && dir == DIR_EGRESS && !hairpin) {
		proxy_port = overlay_encrypt_port(f);
		if (proxy_port) {
			ct_flags |= CT_ENTRY_F_TO_PROXY;
			m.flags |= EVENT_F_ENCRYPTED;
			m.proxy_port = proxy_port;
		}
	}
	if (from_proxy)
		ct_flags |= CT_ENTRY_F_PROXY_UPSTREAM;
	/* Policy audit mode (ENDPOINT_F_AUDIT): what policy denies is reported, flagged, with the
	 * rule that would deny it (a deny entry's cookie; none for a default deny), and passes as an
	 * allowed connection would (conntrack entry, traces). A fail-closed endpoint still drops. */
	if ((reason == DROP_POLICY || reason == DROP_POLICY_DENY) && (sc->stage.ep_flags & ENDPOINT_F_AUDIT))
		m.flags |= EVENT_F_AUDIT;
	m.cookie = verdict.cookie;
	m.reason = reason;
	send_policy_verdict(&m, f);
	if (m.flags & EVENT_F_AUDIT) {
		m.flags &= ~EVENT_F_AUDIT;
		m.reason = 0;
		reason = 0;
	}
	if (reason)
		goto drop;
	/* No proxy listening (not started, restarting): fail closed, and record nothing. A hairpin
	 * connection never passes a hook where it could be redirected: dropped as well. */
	if (proxy_port) {
		reason = hairpin ? DROP_PROXY_LOOKUP_FAILED : proxy_listener_ready(skb, f, proxy_port);
		if (reason)
			goto drop;
	}
	reason = ct_create_proxy(f, dir, bytes, now, verdict.cookie, dir == DIR_EGRESS ? ep_identity : remote,
				 sc->stage.rev_nat, ct_flags, proxy_port, reopened);
	if (reason)
		goto drop;
	send_trace(&m, f, TRACE_OPEN, 0);
	if (proxy_port) {
		if (dir == DIR_EGRESS) {
			reason = proxy_assign(skb, f, proxy_port);
			if (reason)
				goto drop;
			ret = TC_ACT_OK;
		} else {
			ret = proxy_to_host(skb, proxy_port);
			if (ret == TC_ACT_SHOT) {
				reason = DROP_PROXY_LOOKUP_FAILED;
				goto drop;
			}
		}
		metrics_count(REASON_FORWARDED, dir, bytes);
		return ret;
	}

	/* Forwarded: as the entry program delivers what it forwards itself. */
	metrics_count(REASON_FORWARDED, dir, bytes);
	if (hairpin)
		return lb_nat_bounce(skb);
	switch (caller) {
	case STAGE_FROM_CONTAINER:
		if (dir != DIR_EGRESS)
			break;
		/* A pod of another node behind the tunnel (lib/overlay.h), with this pod's identity. */
		ret = __encap(skb, f, sc->stage.ep_identity);
		return ret >= 0 ? ret : host_route(skb, f);
	case STAGE_TO_LOCAL:
		if (dir != DIR_INGRESS)
			break;
		return host_deliver_local(skb, f, ifindex, sc->hr.mac);
	case STAGE_FROM_OVERLAY:
		if (dir != DIR_INGRESS)
			break;
		ret = host_deliver_local(skb, f, ifindex, sc->hr.mac);
		/* Not delivered (a TTL that expires): the stack answers, and must take the frame as its own. */
		return ret == TC_ACT_OK ? overlay_to_stack(skb, peer) : ret;
	default:
		break;
	}
	return TC_ACT_OK;
drop:
	m.reason = reason;
	send_drop_event(&m, f);
	metrics_count(reason, dir, bytes);
	return TC_ACT_SHOT;
}

SEC("tc")
int weir_from_container(struct __sk_buff *skb)
{
	struct flow *f = __flow_scratch();
	int routable = 0, ret;
	__u32 identity = 0;

	if (!f)
		return TC_ACT_SHOT;
	ret = __handle(skb, DIR_EGRESS, skb->ifindex, f, &routable, &identity, 0, 0, STAGE_FROM_CONTAINER, 0);
	if (!routable)
		return ret;
	/* A pod of another node behind the tunnel (lib/overlay.h), with this pod's identity. */
	ret = __encap(skb, f, identity);
	return ret >= 0 ? ret : host_route(skb, f);
}

SEC("tc")
int weir_to_container(struct __sk_buff *skb)
{
	struct flow *f = __flow_scratch();
	__u32 identity = 0;
	int routable = 0;

	if (!f)
		return TC_ACT_SHOT;
	/* From the tunnel through the node's stack (--host-routing legacy): the sender's identity came
	 * in the mark (lib/overlay.h). */
	return __handle(skb, DIR_INGRESS, skb->ifindex, f, &routable, &identity, identity_from_mark(skb->mark), 0,
			STAGE_TO_CONTAINER, 0);
}

/* Tail called by weir_from_container (weir_calls[CALL_TO_LOCAL], lib/host_routing.h), at tc
 * ingress of the sender's host veth: the ingress stage of the local destination it named, which
 * weir_to_container would otherwise run, then delivery straight into the destination pod. */
SEC("tc")
int weir_to_local(struct __sk_buff *skb)
{
	__u32 ifindex = host_routing_target(skb);
	__u32 zero = 0, identity = 0;
	struct flow_scratch *sc = bpf_map_lookup_elem(&weir_flow_scratch, &zero);
	struct ct_hint hint = {};
	int routable = 0, ret, parsed;

	if (!ifindex || !sc)
		return TC_ACT_SHOT;
	/* The sender's flow, when its hr_state vouches for it (lib/host_routing.h). */
	parsed = host_routing_flow_ok(skb, sc, ifindex);
	if (!parsed) {
		/* Not an entry program of an earlier weir either (those name the MACs in cb): a scratch
		 * of another load. The stack routes it, the destination's weir_to_container judges it. */
		if (skb->cb[4] != CB_MAGIC) {
			skb->cb[4] = 0;
			return TC_ACT_OK;
		}
		sc->hr.mac[0] = skb->cb[1];
		sc->hr.mac[1] = skb->cb[2];
		sc->hr.mac[2] = skb->cb[3];
		__ct_hint_take(&hint);
		__builtin_memset(&sc->flow, 0, sizeof(sc->flow));
	}
	ret = __handle(skb, DIR_INGRESS, ifindex, &sc->flow, &routable, &identity, 0, parsed ? 0 : &hint,
		       STAGE_TO_LOCAL, parsed);
	return routable ? host_deliver_local(skb, &sc->flow, ifindex, sc->hr.mac) : ret;
}

/* The policy stages (lib/stages.h), tail called by the entry programs through weir_calls for the
 * first packet of a new connection: weir_from_container's (the pod's egress) and the others'
 * (its ingress). Never attached. */
SEC("tc")
int weir_policy_egress(struct __sk_buff *skb)
{
	return __policy_stage(skb, DIR_EGRESS);
}

SEC("tc")
int weir_policy_ingress(struct __sk_buff *skb)
{
	return __policy_stage(skb, DIR_INGRESS);
}

SEC("tc")
int weir_from_netdev(struct __sk_buff *skb)
{
	struct flow f = {};
	__u32 bytes = skb->len;
	int reason, ret;

	if (parse_packet(skb, &f) != PARSE_OK)
		return TC_ACT_OK;
	/* Native routing (the node's underlay device): a DSR connection another node load-balanced to
	 * a backend here tells its frontend (lib/nodeport.h); the reply of a NodePort connection this
	 * node sent to a backend on another node comes back addressed to its NAT port. */
	nodeport_dsr_record4(skb, &f);
	ret = nodeport_rev4(skb, &f);
	if (ret >= 0) {
		metrics_count(ret == TC_ACT_SHOT ? DROP_INVALID : REASON_FORWARDED, DIR_INGRESS, bytes);
		return ret;
	}
	ret = nodeport_lb4(skb, &f, &reason);
	if (ret < 0) {
		/* A reply from outside to one of the node proxy's transparent upstream connections. */
		proxy_netdev_reply(skb, &f);
		return TC_ACT_OK;
	}
	/* reason is set for drops, also when the drop is answered with an RST (redirected). */
	metrics_count(reason ? reason : REASON_FORWARDED, DIR_INGRESS, bytes);
	return ret;
}

/* tc ingress of the node's weir_host device: packets weir_to_container redirected here (marked
 * MARK_MAGIC_TO_PROXY with the listener port, 0 = an established socket only) are assigned to the
 * node proxy's socket; no socket drops them (fail closed). Anything else passes untouched. */
SEC("tc")
int weir_to_proxy(struct __sk_buff *skb)
{
	struct event_meta m = { .ifindex = skb->ifindex, .len = skb->len, .direction = DIR_INGRESS };
	struct flow f = {};
	__u32 bytes = skb->len;
	int reason;

	if ((skb->mark & MARK_MAGIC_MASK) != MARK_MAGIC_TO_PROXY)
		return TC_ACT_OK;
	reason = parse_packet(skb, &f);
	if (reason == PARSE_OK)
		reason = proxy_assign(skb, &f, bpf_htons(skb->mark >> 16));
	else if (reason == PARSE_PASS)
		reason = DROP_PROXY_LOOKUP_FAILED;
	if (!reason) {
		/* It still carries the pod's MAC address: make the stack take it as its own. */
		bpf_skb_change_type(skb, PACKET_HOST);
		return TC_ACT_OK;
	}
	if (f.tuple.family) {
		m.src_identity = ipcache_identity(f.tuple.family, f.tuple.saddr);
		m.dst_identity = ipcache_identity(f.tuple.family, f.tuple.daddr);
	}
	m.reason = reason;
	send_drop_event(&m, &f);
	metrics_count(reason, DIR_INGRESS, bytes);
	return TC_ACT_SHOT;
}

/* tc ingress of the node's VXLAN device (lib/overlay.h): a packet from a pod of another node. Its
 * sender's identity is the tunnel key's VNI; a local destination pod gets its ingress stage with
 * that identity as the peer (not the ipcache's), then bpf_redirect_peer, as weir_to_local does.
 * --host-routing legacy, or no local pod: the node's stack takes it, the identity in its mark,
 * and the destination's weir_to_container judges it. */
SEC("tc")
int weir_from_overlay(struct __sk_buff *skb)
{
	struct event_meta m = { .ifindex = skb->ifindex, .len = skb->len, .direction = DIR_INGRESS };
	struct flow *f = __flow_scratch();
	struct lxc_info *to = NULL;
	struct hr_state *hr;
	const __u32 *macs;
	__u32 identity = 0, ifindex, ep_identity = 0;
	int routable = 0, ret, reason;

	if (!f)
		return TC_ACT_SHOT;
	reason = overlay_source(skb, &identity);
	if (reason)
		goto drop;
	/* NodePort across nodes (lib/nodeport.h, snat): the reply of a connection this node sent to a
	 * backend on the sender's node is translated back to node IP:nodePort -> client and sent on;
	 * a packet of another node's pod to this node's NodePort is load-balanced here, as
	 * weir_from_netdev does for a client outside. */
	if (parse_packet(skb, f) == PARSE_OK) {
		/* A DSR connection another node load-balanced to a backend here: its frontend. */
		nodeport_dsr_record4(skb, f);
		/* A reply of another node to one of this node's proxy upstream connections (an egress
		 * L7 rule towards a pod of that node): to the proxy's socket. */
		if (proxy_netdev_reply(skb, f)) {
			bpf_skb_change_type(skb, PACKET_HOST);
			metrics_count(REASON_FORWARDED, DIR_INGRESS, m.len);
			return TC_ACT_OK;
		}
		ret = nodeport_rev4(skb, f);
		if (ret == TC_ACT_SHOT)
			reason = DROP_INVALID;
		else if (ret < 0)
			ret = nodeport_lb4(skb, f, &reason);
		if (ret >= 0) {
			metrics_count(reason ? reason : REASON_FORWARDED, DIR_INGRESS, m.len);
			return ret;
		}
		reason = 0;
	}
	if (weir_host_routing)
		to = overlay_destination(skb);
	if (!to)
		return overlay_to_stack(skb, identity);
	ifindex = to->ifindex;
	macs = (const __u32 *)to->mac;
	hr = &((struct flow_scratch *)f)->hr; /* f is the scratch's first member */
	hr->mac[0] = macs[0];
	hr->mac[1] = macs[1];
	hr->mac[2] = macs[2];
	ret = __handle(skb, DIR_INGRESS, ifindex, f, &routable, &ep_identity, identity, 0, STAGE_FROM_OVERLAY, 0);
	if (!routable)
		return ret;
	ret = host_deliver_local(skb, f, ifindex, hr->mac);
	/* Not delivered (a TTL that expires): the stack answers, and must take the frame as its own. */
	return ret == TC_ACT_OK ? overlay_to_stack(skb, identity) : ret;
drop:
	if (parse_packet(skb, f) == PARSE_OK)
		m.dst_identity = ipcache_identity(f->tuple.family, f->tuple.daddr);
	m.src_identity = identity;
	m.reason = reason;
	send_drop_event(&m, f);
	metrics_count(reason, DIR_INGRESS, skb->len);
	return TC_ACT_SHOT;
}

/* tc egress of the node's VXLAN device (lib/overlay.h): what weir_from_container encapsulated
 * passes; the node's own packets routed into the device get their key here. */
SEC("tc")
int weir_to_overlay(struct __sk_buff *skb)
{
	__u32 bytes = skb->len;
	int reason, ret = overlay_host_encap(skb, &reason);

	if (reason)
		metrics_count(reason, DIR_EGRESS, bytes);
	return ret;
}

char _license[] SEC("license") = "Dual BSD/GPL";
