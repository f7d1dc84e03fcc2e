// Mirrors struct metrics_key and struct metrics_value (bpf/lib/common.h): weir_metrics (per-CPU).
import { cstruct, pad, u64, u8 } from '../../../bpf/index.js';

export const MetricsKey = cstruct('metrics_key', {
  reason: u8(),
  direction: u8(),
  pad1: pad(2),
  pad2: pad(4),
});

export const MetricsValue = cstruct('metrics_value', {
  packets: u64(),
  bytes: u64(),
});
