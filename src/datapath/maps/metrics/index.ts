// weir_metrics: packets and bytes forwarded (reason 0) and dropped (reason = drop code) per
// direction, counted per CPU by the datapath and summed here.
import { TypedMap, perCpu, type BpfMap } from '../../../bpf/index.js';
import { DIR, directionOf, type Direction } from '../../direction.js';
import { MetricsKey, MetricsValue } from './layout.js';

export interface MetricsEntry {
  reason: number;
  direction: Direction;
  packets: bigint;
  bytes: bigint;
}

export class MetricsMap {
  readonly typed: TypedMap<ReturnType<typeof MetricsKey.decode>, ReturnType<typeof MetricsValue.decode>[]>;

  constructor(map: BpfMap) {
    this.typed = new TypedMap(map, MetricsKey, perCpu(MetricsValue));
  }

  list(): MetricsEntry[] {
    return this.typed.lookupBatch().map(([k, perCpuValues]) => ({
      reason: k.reason,
      direction: directionOf(k.direction),
      ...sum(perCpuValues),
    }));
  }

  /** Totals for one reason and direction (zeros when never counted). */
  get(reason: number, direction: Direction): { packets: bigint; bytes: bigint } {
    const v = this.typed.lookup({ reason, direction: DIR[direction] });
    return v ? sum(v) : { packets: 0n, bytes: 0n };
  }

  clear(): void {
    this.typed.clear();
  }
}

function sum(values: { packets: bigint; bytes: bigint }[]): { packets: bigint; bytes: bigint } {
  return values.reduce((a, v) => ({ packets: a.packets + v.packets, bytes: a.bytes + v.bytes }), {
    packets: 0n,
    bytes: 0n,
  });
}
