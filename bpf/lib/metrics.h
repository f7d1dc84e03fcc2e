/* SPDX-License-Identifier: Apache-2.0 */
/* Forward and drop counters (weir_metrics).
 *
 *   metrics_count(reason, dir, bytes)
 *     reason  REASON_FORWARDED (0) or a DROP_* code from drop_reasons.h
 *     dir     DIR_INGRESS / DIR_EGRESS (the pod's point of view)
 *     bytes   the packet's length, L2 header included
 *   Adds one packet and `bytes` to this CPU's counters of {reason, dir}. User space sums the CPUs.
 *
 * Every verdict of an entry program goes through here exactly once, which also makes it the seam
 * where trace/drop events for observability will be emitted.
 */
#ifndef WEIR_METRICS_H
#define WEIR_METRICS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct metrics_key);
	__type(value, struct metrics_value);
	__uint(max_entries, 1024); /* 256 reasons x 3 directions fit */
} weir_metrics SEC(".maps");

static __always_inline void metrics_count(__u8 reason, __u8 dir, __u32 bytes)
{
	struct metrics_key key = { .reason = reason, .direction = dir };
	struct metrics_value *val;

	val = bpf_map_lookup_elem(&weir_metrics, &key);
	if (val) {
		/* Per-CPU value: no other writer, plain adds are exact. */
		val->packets += 1;
		val->bytes += bytes;
		return;
	}
	struct metrics_value init = { .packets = 1, .bytes = bytes };
	/* Two CPUs may race to create the key: the loser's NOEXIST fails, so retry once. */
	if (bpf_map_update_elem(&weir_metrics, &key, &init, BPF_NOEXIST) == 0)
		return;
	val = bpf_map_lookup_elem(&weir_metrics, &key);
	if (val) {
		val->packets += 1;
		val->bytes += bytes;
	}
}

#endif /* WEIR_METRICS_H */
