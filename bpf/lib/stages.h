/* SPDX-License-Identifier: Apache-2.0 */
/* The staged datapath (Cilium's tail calls, bpf_lxc.c): the pod programs are an entry program and
 * stages it tail calls through the node's program array weir_calls (pinned, one per node; the
 * loader fills every slot at every load before it attaches a program, and replacing a slot is
 * atomic).
 *
 *   entry   weir_from_container, weir_to_container, weir_to_local, weir_from_overlay: endpoint,
 *           parse, fragments, service translation (egress), conntrack lookup. Established, reply
 *           and related packets (and every drop decided there) finish in the entry program:
 *           the per-packet path takes no tail call.
 *   policy  weir_policy_egress (CALL_POLICY_EGRESS), weir_policy_ingress (CALL_POLICY_INGRESS):
 *           the first packet of a new connection. Fail-closed endpoints, ipcache, policy,
 *           authentication, proxy and encryption ports, the verdict event, the conntrack entry and
 *           its trace, then delivery as its entry program would have done it (proxy, hairpin,
 *           encapsulation, host routing: lib/host_routing.h, which may tail call weir_to_local).
 *   to_local  weir_to_local (CALL_TO_LOCAL): the ingress entry of a local destination
 *           (lib/host_routing.h).
 * One stage per direction, not per family: parsing gives one tuple layout for IPv4 and IPv6 and
 * nothing after it differs by family but what lib/ headers already switch on.
 *
 * State between an entry program and its policy stage: the per-CPU scratch weir_flow_scratch (the
 * stack does not survive a tail call), its `flow` (the parsed packet) and `stage` (below). The
 * scratch is pinned: an entry program of an earlier load (attached until the agent re-attaches
 * its endpoint) tail calls the stage of the newest load, and both must read the same scratch. A
 * tc program runs to its end on its CPU before another starts there.
 *
 * Fail closed: a slot with no program (bpf_tail_call returns), or a stage whose scratch does not
 * hold this packet's state (another layout: the magic; another map, e.g. the pin was replaced
 * when the layout grew: the nonce the entry program also put in skb->cb[0]), drops the packet with
 * DROP_MISSED_TAIL_CALL (an event, counted), never forwards it.
 */
#ifndef WEIR_STAGES_H
#define WEIR_STAGES_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"
#include "lib/events.h"
#include "lib/parse.h"

/* Slots of weir_calls (CALLS in src/datapath/loader.ts). Never renumber: entry programs of an
 * earlier load call them by number. */
#define CALL_TO_LOCAL 0       /* weir_to_local: the ingress entry of a local destination */
#define CALL_POLICY_EGRESS 1  /* weir_policy_egress: a new connection the pod opens */
#define CALL_POLICY_INGRESS 2 /* weir_policy_ingress: a new connection to the pod */
#define WEIR_CALLS_MAX 4      /* the pinned map's size: keep it */

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, WEIR_CALLS_MAX);
} weir_calls SEC(".maps");

/* Which entry program handed the packet to the policy stage: how the stage delivers it. */
#define STAGE_FROM_CONTAINER 1 /* encapsulation or host routing (lib/overlay.h, lib/host_routing.h) */
#define STAGE_TO_CONTAINER 2   /* the stack (tc egress: the pod receives it) */
#define STAGE_TO_LOCAL 3       /* bpf_redirect_peer into the destination (lib/host_routing.h) */
#define STAGE_FROM_OVERLAY 4   /* the same; not delivered: the node's stack (lib/overlay.h) */

struct stage_state {
	__u32 magic; /* STAGE_MAGIC: this layout */
	__u32 nonce; /* the packet's: the entry program put the same in skb->cb[0] */
	struct event_meta m; /* its flags (FROM_PROXY, ENCRYPTED), endpoint, ifindex, len, direction */
	__u64 now;   /* conntrack's clock at the entry program */
	__u32 bytes; /* skb->len at the entry program */
	__u32 ifindex; /* the endpoint's host veth */
	__u32 peer;  /* the sender's identity the packet brought (tunnel), 0: the ipcache's */
	__u32 ep_id;
	__u32 ep_identity;
	__u32 ep_flags;
	__u16 rev_nat; /* translated at tc (lib/lb_nat.h): the frontend's rev-NAT index */
	__u8 hairpin;
	__u8 from_proxy; /* PROXY_FROM_* (lib/proxy.h) */
	__u8 reopen; /* a SYN on the CLOSING entry of its own key: take that entry over */
	__u8 caller; /* STAGE_* */
	__u16 pad;
};

/* What weir_from_container's host routing hands weir_to_local besides skb->cb (lib/host_routing.h):
 * the destination and its MAC addresses, and a nonce (also in skb->cb[1]) that vouches for the
 * scratch's flow being this packet's, so that weir_to_local need not parse it again. */
struct hr_state {
	__u32 magic; /* STAGE_MAGIC */
	__u32 nonce;
	__u32 ifindex;
	__u32 mac[3]; /* struct lxc_info's mac, host_mac */
};

struct flow_scratch {
	struct flow flow;
	struct stage_state stage;
	struct hr_state hr;
};

/* Changes with the layout (its size): a stage never reads another build's state. */
#define STAGE_MAGIC (0x77650000U | (__u32)sizeof(struct flow_scratch))

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct flow_scratch);
	__uint(max_entries, 1);
} weir_flow_scratch SEC(".maps");

#endif /* WEIR_STAGES_H */
