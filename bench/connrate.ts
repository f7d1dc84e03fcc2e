// Connection rate: new TCP connections per second between two pods, each a short HTTP exchange
// that the server closes (wrk with `Connection: close`, 1 thread, `clients` connections in
// parallel, against nginx in the server pod). Every connection is a new conntrack entry on both
// sides, two policy verdicts and four traces: the per-connection cost of the datapath and of the
// flow pipeline. Same run, rounds interleaved: the raw veth pair (bench/raw-pair.ts), the routed
// path without weir, iptables with N rules in the node netns (weir detached), weir enforcing N
// policy entries (the server's ingress, observability on). Each round starts one scenario later
// than the one before (round 1: pair, routed, iptables, weir; round 2: routed, iptables, weir,
// pair; ...), so that no scenario always runs first or always right after the iptables one. While
// weir runs, the events the agent processed per second and the ones lost (kernel ring full or shed
// by the agent) are read from its /metrics, and its CPU time from /proc. The load average is
// recorded with each run: the machine is shared, compare the ratios of one run.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentClient } from '../src/agent/client.js';
import type { Lab } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { run } from '../src/shared/exec.js';
import { nginxServerConf, parseWrk, startPeer } from './http-peers.js';
import { agentStatus, connPort, iptablesPolicy, weirPolicy, weirSwitch } from './policy.js';
import type { RawPair } from './raw-pair.js';
import type { BenchRow } from './row.js';

export interface ConnRateConfig {
  rounds: number;
  seconds: number;
  /** Policy entries (weir) and rules (iptables). */
  rules: number;
  /** Parallel connections of the client (default 16). */
  clients?: number;
}

export type ConnRow = BenchRow;

export const connRateLegend = (rounds: number, seconds: number, rules: number) =>
  `- **connection rate**: new TCP connections per second, bench/client → nginx in bench/server, each ` +
  `one HTTP request the server closes (wrk -t1 -c16, \`Connection: close\`), ${rounds} rounds × ${seconds} s; ` +
  `in each round, in turn: the raw veth pair, the routed path without weir, iptables with ${rules} rules ` +
  `(weir detached), weir with ${rules} policy entries (observability on), each round starting one scenario ` +
  `later. The pods' client and server run in the pods' cgroups (weir's socket hooks attached in every ` +
  `scenario), the raw pair's outside. baseline = the routed path; ` +
  `events/s: flow events the agent processed per second while weir ran (hubble_flows_processed_total), ` +
  `lost: hubble_lost_events_total over those runs; agent CPU: its user + system time over the weir runs; ` +
  `load: the 1-minute load average after each run (2 CPUs)\n`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const round = (x: number) => Math.round(x);

/** User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in USER_HZ (100)
}

/** Sum of every sample of a Prometheus counter in /metrics text. */
export function counterSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

/** run_time_ns and run_cnt of one BPF program (kernel.bpf_stats_enabled=1). */
interface ProgStat {
  name: string;
  ns: number;
  cnt: number;
}

/**
 * The lab's weir programs (by id): the tc programs attached in the node netns, and every weir
 * program sharing a map with them (tail call targets, the socket hooks), with their run time
 * and count so far. Other labs on the machine have programs of the same names: their maps differ.
 */
async function weirProgStats(nodeNetns: string): Promise<Map<number, ProgStat>> {
  const net = JSON.parse(
    (await run(['ip', 'netns', 'exec', nodeNetns, 'bpftool', 'net', 'show', '-j'])).stdout,
  ) as { tc?: { id: number }[] }[];
  const attached = new Set(net.flatMap((n) => (n.tc ?? []).map((t) => t.id)));
  const progs = JSON.parse((await run(['bpftool', 'prog', 'show', '-j'])).stdout) as {
    id: number;
    name?: string;
    map_ids?: number[];
    run_time_ns?: number;
    run_cnt?: number;
  }[];
  // Sharing a map with a program already taken, to a fixed point: the socket hooks reach the tc
  // programs' maps only through one another (getpeername uses weir_lb_sk_rev alone).
  const weir = progs.filter((p) => p.name?.startsWith('weir_'));
  const taken = new Set(attached);
  const maps = new Set<number>();
  for (let grew = true; grew;) {
    grew = false;
    for (const p of weir) {
      const ids = p.map_ids ?? [];
      if (!taken.has(p.id) && !ids.some((m) => maps.has(m))) continue;
      if (!taken.has(p.id)) grew = true;
      taken.add(p.id);
      for (const m of ids)
        if (!maps.has(m)) {
          maps.add(m);
          grew = true;
        }
    }
  }
  const out = new Map<number, ProgStat>();
  for (const p of weir)
    if (taken.has(p.id)) out.set(p.id, { name: p.name ?? '', ns: p.run_time_ns ?? 0, cnt: p.run_cnt ?? 0 });
  return out;
}

async function connectionsPerSecond(prefix: string[], url: string, seconds: number, clients: number) {
  const out = await run(
    [...prefix, 'wrk', '-t1', `-c${clients}`, `-d${seconds}s`, '--latency', '-H', 'Connection: close', url],
    { timeoutMs: (seconds + 30) * 1000 },
  );
  const r = parseWrk(out.stdout);
  if (r.errors > 0)
    throw new WeirError(
      'ERR_BENCH_OUTPUT',
      `wrk saw ${r.errors} errors against ${url}: ${out.stdout.slice(-400)}`,
    );
  return r.requestsPerSecond;
}

export async function measureConnRate(
  lab: Lab,
  labName: string,
  pair: RawPair,
  cfg: ConnRateConfig,
  log: (l: string) => void,
): Promise<ConnRow[]> {
  const clients = cfg.clients ?? 16;
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-conn-'));
  const server = await lab.pod('bench/server');
  const podClient = await lab.execArgv('bench/client', []);
  const podUrl = `http://${server.ip}:${connPort}/`;
  const pairUrl = `http://${pair.serverIP}:${connPort}/`;
  const conf = (d: string) => nginxServerConf(d, connPort, connPort + 1);
  const peers = [
    await startPeer('conn-pod', dir, await lab.execArgv('bench/server', []), 'nginx', conf, {
      prefix: podClient,
      host: server.ip,
      port: connPort,
    }),
    await startPeer('conn-raw', dir, pair.serverPrefix, 'nginx', conf, {
      prefix: pair.clientPrefix,
      host: pair.serverIP,
      port: connPort,
    }),
  ];
  const weirPol = weirPolicy(labName, cfg.rules);
  const ipt = iptablesPolicy(lab, cfg.rules);
  const sw = weirSwitch(lab, labName);
  const agent = agentClient(labName);
  // WEIR_BENCH_BPF_STATS=1: the kernel's per-program run time over the weir runs (bpf_stats adds
  // a clock read per program run, so it is off for the rates of a normal run).
  const bpfStats = process.env.WEIR_BENCH_BPF_STATS === '1';
  const nodeNetns = (await lab.node()).netns;
  const progTotals = new Map<string, { ns: number; cnt: number }>();
  let weirConns = 0;
  let statsBefore = '0';
  if (bpfStats) {
    statsBefore = readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim();
    await run(['sysctl', '-q', 'kernel.bpf_stats_enabled=1']);
  }
  const v = { pair: [] as number[], routed: [] as number[], iptables: [] as number[], weir: [] as number[] };
  const loads = {
    pair: [] as number[],
    routed: [] as number[],
    iptables: [] as number[],
    weir: [] as number[],
  };
  let events = 0;
  let lost = 0;
  let weirSeconds = 0;
  let agentCpu = 0;
  const load1 = () => Math.round((loadavg()[0] ?? 0) * 10) / 10;
  // Every scenario leaves weir attached (enforcing) and no iptables rule behind it.
  const scenarios: { key: keyof typeof v; label: string; measure: () => Promise<number> }[] = [
    {
      key: 'pair',
      label: 'raw veth pair',
      measure: () => connectionsPerSecond(pair.clientPrefix, pairUrl, cfg.seconds, clients),
    },
    {
      key: 'routed',
      label: 'routed, no weir',
      measure: async () => {
        await sw.raw();
        try {
          return await connectionsPerSecond(podClient, podUrl, cfg.seconds, clients);
        } finally {
          await sw.enforce();
        }
      },
    },
    {
      key: 'iptables',
      label: `iptables ${cfg.rules}`,
      measure: async () => {
        await sw.raw();
        await ipt.setup();
        try {
          return await connectionsPerSecond(podClient, podUrl, cfg.seconds, clients);
        } finally {
          await ipt.teardown();
          await sw.enforce();
        }
      },
    },
    {
      key: 'weir',
      label: `weir ${cfg.rules}`,
      measure: async () => {
        const pid = (await agentStatus(labName)).pid;
        const m0 = await agent.text('/metrics');
        const c0 = cpuSeconds(pid);
        const s0 = bpfStats ? await weirProgStats(nodeNetns) : undefined;
        const t0 = performance.now();
        const rate = await connectionsPerSecond(podClient, podUrl, cfg.seconds, clients);
        if (s0) {
          const s1 = await weirProgStats(nodeNetns);
          for (const [id, p] of s1) {
            const b = s0.get(id) ?? { ns: 0, cnt: 0 };
            const t = progTotals.get(p.name) ?? { ns: 0, cnt: 0 };
            progTotals.set(p.name, { ns: t.ns + p.ns - b.ns, cnt: t.cnt + p.cnt - b.cnt });
          }
          weirConns += rate * cfg.seconds;
        }
        // Let the pipeline catch up with what the ring still holds before reading its counters.
        await new Promise((res) => setTimeout(res, 1000));
        const m1 = await agent.text('/metrics');
        agentCpu += cpuSeconds(pid) - c0;
        weirSeconds += (performance.now() - t0) / 1000;
        events +=
          counterSum(m1, 'hubble_flows_processed_total') - counterSum(m0, 'hubble_flows_processed_total');
        lost += counterSum(m1, 'hubble_lost_events_total') - counterSum(m0, 'hubble_lost_events_total');
        return rate;
      },
    },
  ];
  try {
    await weirPol.setup();
    for (let r = 1; r <= cfg.rounds; r++)
      for (let i = 0; i < scenarios.length; i++) {
        const sc = scenarios[(r - 1 + i) % scenarios.length] as (typeof scenarios)[number];
        log(`  round ${r}/${cfg.rounds}: ${sc.label}`);
        v[sc.key].push(await sc.measure());
        loads[sc.key].push(load1());
      }
  } finally {
    if (bpfStats) await run(['sysctl', '-q', `kernel.bpf_stats_enabled=${statsBefore}`]);
    await sw.enforce();
    await weirPol.teardown();
    for (const p of peers) await p.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const pairM = median(v.pair);
  const routedM = median(v.routed);
  const row = (scenario: string, xs: number[], note: string, load: number[]): ConnRow => {
    const value = round(median(xs));
    return {
      scenario,
      metric: 'new TCP connections',
      value,
      unit: 'conn/s',
      runs: xs.map(round),
      ...(scenario === 'connection rate, routed (no weir)'
        ? {}
        : { baseline: round(routedM), ratio: value / routedM }),
      ...(scenario === 'connection rate, raw veth pair'
        ? {}
        : { rawPair: round(pairM), rawPairRatio: value / pairM }),
      note: `${note}; load ${load.join(' / ')}`,
    };
  };
  const note = `median of ${cfg.rounds} × ${cfg.seconds} s, ${clients} parallel clients`;
  const progRows: ConnRow[] = [];
  if (bpfStats && weirConns > 0) {
    const all = [...progTotals.entries()].filter(([, t]) => t.cnt > 0);
    const total = all.reduce((a, [, t]) => a + t.ns, 0);
    progRows.push({
      scenario: `connection rate, weir ${cfg.rules}`,
      metric: 'BPF run time per connection',
      value: Math.round(total / weirConns),
      unit: 'ns/conn',
      note:
        `kernel.bpf_stats_enabled over the weir runs, ${Math.round(weirConns)} connections: ` +
        all
          .map(
            ([n, t]) =>
              `${n} ${Math.round(t.ns / weirConns)} ns (${(t.cnt / weirConns).toFixed(1)} runs × ${Math.round(t.ns / t.cnt)} ns)`,
          )
          .join(', '),
    });
  }
  return [
    ...progRows,
    row('connection rate, raw veth pair', v.pair, note, loads.pair),
    row('connection rate, routed (no weir)', v.routed, note, loads.routed),
    row(`connection rate, iptables ${cfg.rules}`, v.iptables, note, loads.iptables),
    row(`connection rate, weir ${cfg.rules}`, v.weir, `${note}; target ≥ 0.9 × raw pair`, loads.weir),
    {
      scenario: `connection rate, weir ${cfg.rules}`,
      metric: 'flow events processed by the agent',
      value: round(events / weirSeconds),
      unit: 'events/s',
      note: `${events} events over the weir runs (hubble_flows_processed_total)`,
    },
    {
      scenario: `connection rate, weir ${cfg.rules}`,
      metric: 'agent CPU while weir ran',
      value: Math.round((agentCpu / weirSeconds) * 1000) / 10,
      unit: '% of one CPU',
      note: `${agentCpu.toFixed(2)} s user + system over ${weirSeconds.toFixed(1)} s (reading the ring, counting, storing)`,
    },
    {
      scenario: `connection rate, weir ${cfg.rules}`,
      metric: 'flow events lost',
      value: lost,
      unit: 'events',
      note: 'hubble_lost_events_total (kernel ring full or shed by the agent); goal 0',
    },
  ];
}
