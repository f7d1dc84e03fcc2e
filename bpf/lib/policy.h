/* SPDX-License-Identifier: Apache-2.0 */
/* Policy verdict for a new connection (weir_policy: endpoint id -> that endpoint's LPM trie).
 *
 *   policy_can_access(endpoint_id, key, verdict) -> 0 | DROP_*
 *     endpoint_id  the local endpoint whose policy applies (endpoint_info.endpoint_id)
 *     key          full-prefix key: the remote side's identity (ipcache), DIR_INGRESS/DIR_EGRESS,
 *                  the packet's IPPROTO_*, its destination port (network order; 0 for ICMP:
 *                  echo is judged per protocol). The function overwrites key->identity.
 *     verdict      on 0: a copy of the deciding entry (cookie, proxy port); on DROP_POLICY_DENY:
 *                  a copy of the deny entry (its cookie names the denying rule); else untouched
 *   A subprogram (__noinline): the two lookups are verified once, not once per caller path.
 *
 * Why the key is shaped so (struct policy_key): identity and direction come first and are always
 * matched exactly (prefixlen >= 40); protocol then port come last, so an LPM prefix can wildcard
 * the port (48), or the protocol and port (40), and a port range is a few aligned prefixes
 * (49..63). Identity ANY cannot be a prefix (it is first), so it is the key 0, looked up
 * separately. An LPM lookup returns only the longest match of each key: an allow at a longer
 * prefix hides a deny at a shorter one. The policy engine therefore writes a deny at every key
 * where a more specific allow would otherwise hide it (or leaves such allows out).
 */
#ifndef WEIR_POLICY_H
#define WEIR_POLICY_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"
#include "lib/drop_reasons.h"

#define WEIR_POLICY_MAX 16384 /* entries per endpoint; inner maps are created by the loader */

struct weir_policy_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, WEIR_POLICY_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

/* clang 14 emits the key/value types of a map-in-map's inner template only as forward
 * declarations, which libbpf cannot size. These two read-only globals (a few bytes of .rodata,
 * never read) make the types complete in the BTF, for libbpf and for user space's layout check. */
const volatile struct policy_key weir_btf_policy_key = {};
const volatile struct policy_entry weir_btf_policy_entry = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 4096); /* endpoints per node, as weir_endpoints */
	__array(values, struct weir_policy_inner);
} weir_policy SEC(".maps");

/* Precedence between the two lookups (L1: exact identity, L2: identity ANY), each already the
 * longest prefix within its key:
 *   1. The endpoint has no policy map: DROP_EP_NOT_READY (fail closed).
 *   2. L1 or L2 matched a deny entry: DROP_POLICY_DENY. Deny wins over any allow.
 *   3. Both matched allows: the one with the higher l4_prefix (more specific protocol/port) gives
 *      cookie and proxy port; on a tie L1 (the more specific identity) does.
 *   4. One matched an allow: it gives cookie and proxy port.
 *   5. Nothing matched: DROP_POLICY (default deny).
 */
static __noinline int policy_can_access(__u32 endpoint_id, struct policy_key *key, struct policy_entry *verdict)
{
	struct policy_entry *l1, *l2, *win;
	void *inner;

	inner = bpf_map_lookup_elem(&weir_policy, &endpoint_id);
	if (!inner)
		return DROP_EP_NOT_READY;

	key->prefixlen = POLICY_FULL_PREFIX;
	l1 = bpf_map_lookup_elem(inner, key);
	key->identity = 0;
	l2 = bpf_map_lookup_elem(inner, key);

	if (l1 && (l1->flags & POLICY_F_DENY)) {
		*verdict = *l1;
		return DROP_POLICY_DENY;
	}
	if (l2 && (l2->flags & POLICY_F_DENY)) {
		*verdict = *l2;
		return DROP_POLICY_DENY;
	}
	if (l1 && l2)
		win = l2->l4_prefix > l1->l4_prefix ? l2 : l1;
	else if (l1)
		win = l1;
	else if (l2)
		win = l2;
	else
		return DROP_POLICY;
	*verdict = *win;
	return 0;
}

#endif /* WEIR_POLICY_H */
