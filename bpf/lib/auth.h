/* SPDX-License-Identifier: Apache-2.0 */
/* Mutual authentication (Cilium's mutual auth; weir_auth is its cilium_auth_map).
 *
 *   auth_check(src, dst, remote_node, now) -> 0 | DROP_POLICY_AUTH_REQUIRED
 *     src, dst     the connection's initiator and receiver identities (egress: the endpoint and
 *                  the ipcache's peer; ingress: the reverse)
 *     remote_node  the node the peer runs on, 0 for this node: auth_remote_node() of the peer's
 *                  address — the ipcache's tunnel endpoint of the peer (the underlay address of
 *                  its node, written in tunnel and native routing alike) gives the node id, its
 *                  low 16 bits (0 → 0xffff); the agent derives the same id from the node records
 *                  (src/auth/node-id.ts) and refuses ids two nodes would share. No tunnel
 *                  endpoint (this node): 0.
 *     now          bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC)
 *
 * Called for a new connection whose allowing policy entry carries POLICY_F_AUTH
 * (`authentication: {mode: required}`). The agent writes {src, dst, node, AUTH_TYPE_MTLS} ->
 * expiry after a successful mTLS handshake with the two identities' SVIDs, the expiry being the
 * earlier notAfter of the two certificates; it deletes the entry when an identity is released.
 * No entry, or an expired one: the drop (with its flow event, which names the rule) is what asks
 * the agent for a handshake, as Cilium's datapath signals "auth required". Established
 * connections are not judged again (conntrack), as in Cilium.
 */
#ifndef WEIR_AUTH_H
#define WEIR_AUTH_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"
#include "lib/drop_reasons.h"
#include "lib/ipcache.h"

#define WEIR_AUTH_MAX 65536

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct auth_key);
	__type(value, struct auth_info);
	__uint(max_entries, WEIR_AUTH_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} weir_auth SEC(".maps");

static __always_inline int auth_check(__u32 src, __u32 dst, __u16 remote_node, __u64 now)
{
	struct auth_key key = {
		.src_identity = src,
		.dst_identity = dst,
		.remote_node_id = remote_node,
		.auth_type = AUTH_TYPE_MTLS,
	};
	struct auth_info *info = bpf_map_lookup_elem(&weir_auth, &key);

	if (info && now < info->expires_ns)
		return 0;
	return DROP_POLICY_AUTH_REQUIRED;
}

/* The node id of the peer at `addr` (the ipcache's tunnel endpoint), 0 for this node. */
static __always_inline __u16 auth_remote_node(__u8 family, const __u8 *addr)
{
	struct ipcache_value *val = ipcache_lookup(family, addr);
	__u16 id;

	if (!val || !val->tunnel_endpoint)
		return 0;
	id = (__u16)(bpf_ntohl(val->tunnel_endpoint) & 0xffff);
	return id ? id : 0xffff;
}

#endif /* WEIR_AUTH_H */
