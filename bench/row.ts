// One result row of the benchmark report, whichever section measured it (bench/run.ts prints
// them as the report's table and writes them to bench/results/).
export interface BenchRow {
  scenario: string;
  metric: string;
  value: number;
  unit: string;
  runs?: number[];
  baseline?: number;
  /** value / baseline (throughput: < 1 is slower; latency: > 1 is slower). */
  ratio?: number;
  /** The same measurement on one raw veth pair (bench/raw-pair.ts), runs paired in time. */
  rawPair?: number;
  rawPairRatio?: number;
  note?: string;
}

/** Rounded to two decimals, as the report shows figures. */
export const round2 = (x: number) => Math.round(x * 100) / 100;
