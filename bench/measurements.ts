// What the benchmark measures between two lab pods: iperf3 TCP throughput and sockperf UDP
// ping-pong latency. The servers run in pod bench/server, the clients in pod bench/client, each
// inside its pod's netns and cgroup (so a policy attached to the pod applies to the traffic).
import { spawn, type ChildProcess } from 'node:child_process';
import type { Lab } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { run } from '../src/shared/exec.js';

export const iperfPort = 5201;
export const sockperfPort = 11111;

export interface Measurement {
  /** Row label in the report, e.g. "tcp 1 stream". */
  name: string;
  metric: string;
  unit: string;
  better: 'higher' | 'lower';
  /** One run, returning one value per metric name (a run may yield several, like p50 and p99). */
  run(ctx: BenchContext): Promise<Record<string, number>>;
}

export interface BenchContext {
  /** The bench lab, whose pod bench/client runs the clients; absent: clientPrefix says where. */
  lab?: Lab;
  serverIP: string;
  seconds: number;
  /** Runs the client there instead of in pod bench/client (the raw veth pair, bench/raw-pair.ts). */
  clientPrefix?: string[];
}

async function client(ctx: BenchContext, cmd: string[]): Promise<string> {
  if (!ctx.clientPrefix && !ctx.lab)
    throw new WeirError('ERR_BENCH_OUTPUT', 'a benchmark client needs the lab or a clientPrefix');
  const argv = ctx.clientPrefix
    ? [...ctx.clientPrefix, ...cmd]
    : await (ctx.lab as Lab).execArgv('bench/client', cmd);
  return (await run(argv, { timeoutMs: (ctx.seconds + 20) * 1000 })).stdout;
}

function iperf(streams: number): Measurement {
  return {
    name: `tcp throughput, ${streams} stream${streams > 1 ? 's' : ''}`,
    metric: `tcp_${streams}`,
    unit: 'Gbit/s',
    better: 'higher',
    async run(ctx) {
      const out = await client(ctx, [
        'iperf3',
        '-c',
        ctx.serverIP,
        '-p',
        String(iperfPort),
        '-t',
        String(ctx.seconds),
        '-P',
        String(streams),
        '-J',
      ]);
      const bps = (JSON.parse(out) as { end?: { sum_received?: { bits_per_second?: number } } }).end
        ?.sum_received?.bits_per_second;
      if (bps === undefined)
        throw new WeirError('ERR_BENCH_OUTPUT', `iperf3 gave no throughput: ${out.slice(0, 300)}`);
      return { [`tcp_${streams}`]: Math.round(bps / 1e7) / 100 };
    },
  };
}

const latency: Measurement = {
  name: 'udp ping-pong latency',
  metric: 'latency',
  unit: 'µs',
  better: 'lower',
  async run(ctx) {
    const out = await client(ctx, [
      'sockperf',
      'ping-pong',
      '-i',
      ctx.serverIP,
      '-p',
      String(sockperfPort),
      '-t',
      String(ctx.seconds),
    ]);
    const pct = (p: string) => {
      const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s*([\\d.]+)`).exec(out);
      if (!m?.[1]) throw new WeirError('ERR_BENCH_OUTPUT', `sockperf gave no p${p}: ${out.slice(-300)}`);
      return Number(m[1]);
    };
    return { latency_p50: pct('50.000'), latency_p99: pct('99.000') };
  },
};

export const measurements: Measurement[] = [iperf(1), iperf(4), latency];

/** Metric rows as reported (a measurement may produce several). */
export const reportedMetrics: { measurement: Measurement; key: string; label: string }[] = [
  { measurement: measurements[0] as Measurement, key: 'tcp_1', label: 'throughput 1 stream' },
  { measurement: measurements[1] as Measurement, key: 'tcp_4', label: 'throughput 4 streams' },
  { measurement: latency, key: 'latency_p50', label: 'latency p50' },
  { measurement: latency, key: 'latency_p99', label: 'latency p99' },
];

/** Starts iperf3 and sockperf servers in pod bench/server; returns them for stopping. */
export async function startServers(lab: Lab): Promise<ChildProcess[]> {
  const servers = await Promise.all(
    [
      ['iperf3', '-s', '-p', String(iperfPort)],
      ['sockperf', 'server', '-p', String(sockperfPort)],
    ].map(async (cmd) => {
      const [bin, ...args] = await lab.execArgv('bench/server', cmd);
      return spawn(bin as string, args, { stdio: 'ignore' });
    }),
  );
  await new Promise((r) => setTimeout(r, 500)); // both bind within milliseconds; no readiness signal
  for (const s of servers)
    if (s.exitCode !== null)
      throw new WeirError('ERR_BENCH_SERVER', `a benchmark server exited early (${s.spawnargs.join(' ')})`);
  return servers;
}
