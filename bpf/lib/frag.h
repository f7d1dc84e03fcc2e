/* SPDX-License-Identifier: Apache-2.0 */
/* IP fragments (weir_frag): later fragments carry no L4 header, so the first one records its
 * ports and the later ones borrow them. Fragments are then judged like any packet of their flow
 * (conntrack, policy): they cannot bypass policy.
 *
 *   frag_track(flow) -> 0 or DROP_*
 *     FRAG_FIRST  records {saddr, daddr, id, proto} -> {sport, dport} (before policy, so that the
 *                 later fragments of a denied flow are also denied by policy, not let through)
 *     FRAG_LATER  fills flow->tuple's ports from the record; none: DROP_FRAG_NOSUPPORT
 *     FRAG_NONE   nothing
 * `proto` is the header after the IPv4 header / IPv6 Fragment header, known to every fragment.
 * IPv6 extension headers after the Fragment header are only walked in the first fragment, so
 * such a flow's later fragments carry another protocol than its conntrack entry and are judged
 * (and, without a matching entry, dropped) as new: fail closed for a rare shape.
 * Records are not deleted on the last fragment (fragments may arrive out of order); the LRU
 * recycles them.
 */
#ifndef WEIR_FRAG_H
#define WEIR_FRAG_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"
#include "lib/drop_reasons.h"
#include "lib/parse.h"

#define WEIR_FRAG_MAX 8192 /* Cilium's default */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
	__uint(max_entries, WEIR_FRAG_MAX);
} weir_frag SEC(".maps");

static __always_inline int frag_track(struct flow *f)
{
	struct frag_key key = {};
	struct frag_ports *ports;

	if (f->frag == FRAG_NONE)
		return 0;
	__builtin_memcpy(key.saddr, f->tuple.saddr, 16);
	__builtin_memcpy(key.daddr, f->tuple.daddr, 16);
	key.id = f->frag_id;
	key.proto = f->frag_proto;
	key.family = f->tuple.family;

	if (f->frag == FRAG_FIRST) {
		struct frag_ports val = { .sport = f->tuple.sport, .dport = f->tuple.dport };

		if (bpf_map_update_elem(&weir_frag, &key, &val, BPF_ANY) < 0)
			return DROP_FRAG_NOSUPPORT;
		return 0;
	}
	ports = bpf_map_lookup_elem(&weir_frag, &key);
	if (!ports)
		return DROP_FRAG_NOSUPPORT;
	f->tuple.sport = ports->sport;
	f->tuple.dport = ports->dport;
	return 0;
}

#endif /* WEIR_FRAG_H */
