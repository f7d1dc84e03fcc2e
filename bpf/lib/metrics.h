/* SPDX-License-Identifier: Apache-2.0 */
/* Forward and drop counters (weir_metrics).
 *
 *   metrics_count(reason, dir, bytes)
 *     reason  REASON_FORWARDED (0) or a DROP_* code from drop_reasons.h
 *     dir     DIR_INGRESS / DIR_EGRESS (the pod's point of view)
 *     bytes   the packet's length, L2 header included
 *   Adds one packet and `bytes` to this CPU's counters of {reason, dir}. User space sums the CPUs
 *   (src/datapath/maps/metrics: slot = reason << 2 | dir).
 *
 * Every verdict of an entry program goes through here exactly once, which also makes it the seam
 * where trace/drop events for observability will be emitted.
 */
#ifndef WEIR_METRICS_H
#define WEIR_METRICS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"

/* One slot per {reason, direction}: reason << 2 | direction (DIR_* is 1 or 2). A per-CPU array
 * rather than a hash: the verifier turns the lookup into a few instructions (no hashing, no
 * bucket walk, no helper call), and every slot exists, so there is nothing to create. */
#define METRICS_SLOTS (256 * 4)
#define METRICS_SLOT(reason, dir) (((__u32)(reason) << 2) | ((dir)&3))

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(max_entries, METRICS_SLOTS);
} weir_metrics SEC(".maps");

static __always_inline void metrics_count(__u8 reason, __u8 dir, __u32 bytes)
{
	__u32 slot = METRICS_SLOT(reason, dir);
	struct metrics_value *val = bpf_map_lookup_elem(&weir_metrics, &slot);

	if (val) {
		/* Per-CPU value: no other writer, plain adds are exact. */
		val->packets += 1;
		val->bytes += bytes;
	}
}

#endif /* WEIR_METRICS_H */
