// Mirrors struct metrics_value (bpf/lib/common.h): weir_metrics (a per-CPU array), one slot per
// {reason, direction}: reason << 2 | direction (METRICS_SLOT in bpf/lib/metrics.h).
import { cstruct, u32, u64 } from '../../../bpf/index.js';

export const MetricsSlot = u32();

export const MetricsValue = cstruct('metrics_value', {
  packets: u64(),
  bytes: u64(),
});

/** METRICS_SLOT(reason, direction). */
export const metricsSlot = (reason: number, direction: number) => ((reason & 0xff) << 2) | (direction & 3);
