// weir_metrics: packets and bytes forwarded (reason 0) and dropped (reason = drop code) per
// direction, counted per CPU by the datapath in one array slot per {reason, direction}, summed here.
import { TypedMap, perCpu, type BpfMap } from '../../../bpf/index.js';
import { DIR, directionOf, type Direction } from '../../direction.js';
import { MetricsSlot, MetricsValue, metricsSlot } from './layout.js';

export interface MetricsEntry {
  reason: number;
  direction: Direction;
  packets: bigint;
  bytes: bigint;
}

type Value = ReturnType<typeof MetricsValue.decode>;

export class MetricsMap {
  readonly typed: TypedMap<number, Value[]>;

  constructor(map: BpfMap) {
    this.typed = new TypedMap(map, MetricsSlot, perCpu(MetricsValue));
  }

  /** The {reason, direction} pairs counted so far (every slot exists; untouched ones are left out). */
  list(): MetricsEntry[] {
    return this.#counted().map(([slot, perCpuValues]) => ({
      reason: slot >> 2,
      direction: directionOf(slot & 3),
      ...sum(perCpuValues),
    }));
  }

  /** Totals for one reason and direction (zeros when never counted). */
  get(reason: number, direction: Direction): { packets: bigint; bytes: bigint } {
    const v = this.typed.lookup(metricsSlot(reason, DIR[direction]));
    return v ? sum(v) : { packets: 0n, bytes: 0n };
  }

  /** Zeroes every counted slot. */
  clear(): void {
    for (const [slot, values] of this.#counted())
      this.typed.update(
        slot,
        values.map(() => ({ packets: 0n, bytes: 0n })),
      );
  }

  #counted(): [number, Value[]][] {
    return this.typed.lookupBatch().filter(([, values]) => values.some((v) => v.packets !== 0n));
  }
}

function sum(values: { packets: bigint; bytes: bigint }[]): { packets: bigint; bytes: bigint } {
  return values.reduce((a, v) => ({ packets: a.packets + v.packets, bytes: a.bytes + v.bytes }), {
    packets: 0n,
    bytes: 0n,
  });
}
