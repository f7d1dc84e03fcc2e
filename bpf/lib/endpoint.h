/* SPDX-License-Identifier: Apache-2.0 */
/* Local endpoints (weir_endpoints): which pod is behind a host-side veth.
 *
 *   endpoint_lookup(ifindex) -> struct endpoint_info * or NULL
 *     ifindex  skb->ifindex at either tc hook of the host-side veth (the veth itself)
 *   NULL means the endpoint is not (or no longer) set up: callers drop with DROP_EP_NOT_READY.
 */
#ifndef WEIR_ENDPOINT_H
#define WEIR_ENDPOINT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"

#define WEIR_ENDPOINTS_MAX 4096 /* pods per node */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct endpoint_info);
	__uint(max_entries, WEIR_ENDPOINTS_MAX);
} weir_endpoints SEC(".maps");

static __always_inline struct endpoint_info *endpoint_lookup(__u32 ifindex)
{
	return bpf_map_lookup_elem(&weir_endpoints, &ifindex);
}

#endif /* WEIR_ENDPOINT_H */
