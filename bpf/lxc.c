/* SPDX-License-Identifier: Apache-2.0 */
/* weir's per-pod datapath: two tc programs on each pod's host-side veth, sharing every map.
 *
 *   weir_from_container  tc ingress of the host veth: packets the pod sends (its egress)
 *   weir_to_container    tc egress of the host veth: packets sent to the pod (its ingress)
 *
 * Both run the same pipeline (__handle): endpoint -> parse -> fragments -> conntrack -> (new
 * connections only) fail-closed check, ipcache, policy, conntrack entry. The kernel routes what
 * is forwarded (TC_ACT_OK); drops are TC_ACT_SHOT. Every verdict is counted in weir_metrics by
 * the single exit at the end, the place where observability events will also be sent. Service
 * load-balancing, when it comes, belongs between parse and conntrack on the egress path (the
 * tuple must be translated before it is tracked).
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

static __always_inline int __handle(struct __sk_buff *skb, __u8 dir)
{
	struct policy_entry verdict = {};
	struct policy_key key = {};
	struct endpoint_info *ep;
	struct flow f = {};
	__u32 bytes = skb->len;
	__u32 remote, ep_id, ep_identity;
	__u64 now;
	int reason;

	ep = endpoint_lookup(skb->ifindex);
	if (!ep) {
		reason = DROP_EP_NOT_READY;
		goto drop;
	}
	ep_id = ep->endpoint_id;
	ep_identity = ep->identity;

	reason = parse_packet(skb, &f);
	if (reason == PARSE_PASS)
		goto forward;
	if (reason)
		goto drop;
	reason = frag_track(&f);
	if (reason)
		goto drop;

	now = bpf_ktime_get_ns();
	switch (ct_lookup(&f, dir, bytes, now)) {
	case CT_ESTABLISHED:
	case CT_REPLY:
	case CT_RELATED:
		goto forward;
	default:
		break;
	}

	/* A new connection. ICMP errors never open one: they pass only as RELATED. */
	if (f.icmp_kind == ICMP_KIND_ERROR) {
		reason = DROP_POLICY;
		goto drop;
	}
	if (ep->flags & ENDPOINT_F_FAIL_CLOSED) {
		reason = DROP_FAIL_CLOSED;
		goto drop;
	}
	remote = ipcache_identity(f.tuple.family, dir == DIR_EGRESS ? f.tuple.daddr : f.tuple.saddr);
	key.identity = remote;
	key.direction = dir;
	key.protocol = f.tuple.nexthdr;
	if (f.tuple.nexthdr != IPPROTO_ICMP && f.tuple.nexthdr != IPPROTO_ICMPV6)
		key.dport = f.tuple.dport;
	reason = policy_can_access(ep_id, &key, &verdict);
	if (reason)
		goto drop;
	reason = ct_create(&f, dir, bytes, now, verdict.cookie, dir == DIR_EGRESS ? ep_identity : remote);
	if (reason)
		goto drop;

forward:
	metrics_count(REASON_FORWARDED, dir, bytes);
	return TC_ACT_OK;
drop:
	metrics_count(reason, dir, bytes);
	return TC_ACT_SHOT;
}

SEC("tc")
int weir_from_container(struct __sk_buff *skb)
{
	return __handle(skb, DIR_EGRESS);
}

SEC("tc")
int weir_to_container(struct __sk_buff *skb)
{
	return __handle(skb, DIR_INGRESS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
