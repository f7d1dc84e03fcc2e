// Service load balancing without kube-proxy: connect latency and TCP request/response rate from
// pod bench/client to pod bench/server, straight to the pod IP, through a weir ClusterIP (the socket
// LB picks the backend at connect(), so packets carry the pod IP) and through a ClusterIP of
// kube-proxy's iptables mode (nat PREROUTING → KUBE-SERVICES → KUBE-SVC → KUBE-SEP DNAT in the node
// netns, the measured service last), each with N services present, measured in the same rounds.
// The iptables ClusterIPs are in 10.97.0.0/16, outside weir's service CIDR: weir's socket hook
// finds no frontend there and leaves those connects alone. The nat table is only loaded while the
// iptables target is measured (a loaded KUBE-SERVICES chain would also be walked by the other
// targets' first packets).
import { spawn, type ChildProcess } from 'node:child_process';
import { agentClient } from '../src/agent/client.js';
import type { DesiredObject } from '../src/cluster/objects.js';
import type { Lab } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { run } from '../src/shared/exec.js';
import { weirJson, type Fact } from './policy.js';
import { percentile } from './scale.js';
import { type BenchRow, round2 } from './row.js';

/** Accepts and drops connections (the connect target). */
export const connectPort = 11113;
/** sockperf TCP server (the request/response target). */
export const rrPort = 11112;
const svcConnectPort = 80;
const svcRRPort = 81;
const svcNs = 'bench';
const measuredName = 'svc-measured';
const weirMeasuredIP = '10.96.255.250';
const iptMeasuredIP = '10.97.255.250';
const batch = 500;

export interface ServiceConfig {
  sizes: number[];
  rounds: number;
  connects: number;
  rrSeconds: number;
}

/** One result row, shaped like run.ts's rows. */
export type ServiceRow = BenchRow;

/** The i-th dummy address of a /16 (10.96 for weir, 10.97 for iptables), from .1.0 on. */
function dummyIP(second: number, i: number): string {
  if (i < 0 || i >= 254 * 256) throw new WeirError('ERR_BENCH_SERVICES', `service ${i} does not fit a /16`);
  const n = 256 + i;
  return `10.${second}.${n >> 8}.${n & 255}`;
}

function service(name: string, clusterIP: string, ports: { name: string; port: number; target: number }[]) {
  const object = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: svcNs },
    spec: {
      clusterIP,
      selector: { app: 'server' },
      ports: ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.target, protocol: 'TCP' })),
    },
  };
  return { apiVersion: 'v1', kind: 'Service', name, namespace: svcNs, file: '<bench>', object };
}

const measuredService = (): DesiredObject =>
  service(measuredName, weirMeasuredIP, [
    { name: 'connect', port: svcConnectPort, target: connectPort },
    { name: 'rr', port: svcRRPort, target: rrPort },
  ]);
const dummyService = (i: number): DesiredObject =>
  service(`svc-${i}`, dummyIP(96, i), [{ name: 'connect', port: svcConnectPort, target: connectPort }]);

/** Starts the connect target (node, in the server pod) and sockperf's TCP server. */
export async function startServiceServers(lab: Lab): Promise<ChildProcess[]> {
  const acceptor = `require('net').createServer((s) => { s.on('error', () => {}); s.resume(); })
    .listen(${connectPort}, '0.0.0.0');`;
  const servers = await Promise.all(
    [
      [process.execPath, '-e', acceptor],
      ['sockperf', 'server', '--tcp', '-p', String(rrPort)],
    ].map(async (cmd) => {
      const [bin, ...args] = await lab.execArgv('bench/server', cmd);
      return spawn(bin as string, args, { stdio: 'ignore' });
    }),
  );
  await new Promise((r) => setTimeout(r, 800)); // node starts and binds well within this
  for (const s of servers)
    if (s.exitCode !== null)
      throw new WeirError(
        'ERR_BENCH_SERVER',
        `a service benchmark server exited early (${s.spawnargs.join(' ')})`,
      );
  return servers;
}

/**
 * Runs in the client pod (its netns and cgroup, where the socket LB hooks are): `n` timed connects
 * to each target after 200 untimed ones, the targets taking turns connect by connect (so machine
 * load hits them alike); each closes with a RST so no TIME_WAIT piles up on the shared 4-tuples.
 * Prints the connect times in µs, per target, as JSON.
 */
const connectScript = `
const net = require('net');
const [n, ...targets] = process.argv.slice(1);
const one = (target) => new Promise((res, rej) => {
  const [ip, port] = target.split(':');
  const t0 = process.hrtime.bigint();
  const s = net.connect({ host: ip, port: +port });
  s.setTimeout(2000, () => { s.destroy(); rej(new Error('connect timeout to ' + target)); });
  s.on('error', rej);
  s.on('connect', () => { const t = Number(process.hrtime.bigint() - t0) / 1000; s.resetAndDestroy(); res(t); });
});
(async () => {
  for (let i = 0; i < 200; i++) for (const t of targets) await one(t);
  const ts = targets.map(() => []);
  for (let i = 0; i < +n; i++) for (const [k, t] of targets.entries()) ts[k].push(await one(t));
  process.stdout.write(JSON.stringify(ts));
})().catch((e) => { console.error(e.message); process.exit(1); });
`;

/**
 * Where the client runs: 'socket' in the client pod's netns and cgroup (the socket LB hooks
 * translate at connect()); 'tc' in its netns only, from the bench's own cgroup, where no socket
 * hook runs and the pod's tc program translates every packet.
 */
type Via = 'socket' | 'tc';

async function inClient(lab: Lab, cmd: string[], timeoutMs: number, via: Via): Promise<string> {
  const argv =
    via === 'socket'
      ? await lab.execArgv('bench/client', cmd)
      : ['ip', 'netns', 'exec', (await lab.pod('bench/client')).netns, ...cmd];
  return (await run(argv, { timeoutMs })).stdout;
}

/** Connect latency p50/p99 in µs per `ip:port` target (nearest rank over `n` connects each). */
async function connectLatency(lab: Lab, targets: string[], n: number, via: Via) {
  const out = await inClient(
    lab,
    [process.execPath, '-e', connectScript, String(n), ...targets],
    180_000,
    via,
  );
  const per = JSON.parse(out) as number[][];
  return per.map((ts) => {
    if (ts.length !== n)
      throw new WeirError('ERR_BENCH_OUTPUT', `expected ${n} connect times, got ${ts.length}`);
    return { p50: percentile(ts, 50), p99: percentile(ts, 99) };
  });
}

/** sockperf TCP ping-pong over one connection for `seconds`: exchanges and the seconds they took. */
async function rrRun(lab: Lab, ip: string, port: number, seconds: number, via: Via) {
  const out = await inClient(
    lab,
    ['sockperf', 'ping-pong', '--tcp', '-i', ip, '-p', String(port), '-t', String(seconds)],
    (seconds + 20) * 1000,
    via,
  );
  const m = /RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)/.exec(out);
  if (!m?.[1] || !m[2])
    throw new WeirError('ERR_BENCH_OUTPUT', `sockperf gave no message count: ${out.slice(-400)}`);
  return { exchanges: Number(m[2]), seconds: Number(m[1]) };
}

/**
 * Request/response exchanges per second for each target: `seconds` one-second sockperf runs per
 * target, the targets taking turns (the order swapped each turn), so machine load hits them alike.
 */
async function rrRates(lab: Lab, targets: [string, number][], seconds: number, via: Via): Promise<number[]> {
  const exchanges = targets.map(() => 0);
  const took = targets.map(() => 0);
  for (let s = 0; s < seconds; s++)
    for (const k of s % 2 ? [...targets.keys()].reverse() : targets.keys()) {
      const [ip, port] = targets[k] as [string, number];
      const r = await rrRun(lab, ip, port, 1, via);
      exchanges[k] = (exchanges[k] as number) + r.exchanges;
      took[k] = (took[k] as number) + r.seconds;
    }
  return exchanges.map((x, k) => x / (took[k] as number));
}

const iptablesIn = (netns: string, args: string[], input?: string) =>
  run(['ip', 'netns', 'exec', netns, ...args], { timeoutMs: 300_000, ...(input ? { input } : {}) });

/**
 * kube-proxy's iptables mode for `n` service ports in the node netns: n−2 dummy services (one port
 * each) and the measured service's two ports last, each KUBE-SERVICES rule → KUBE-SVC → KUBE-SEP
 * DNAT to the server pod. No masquerade rules (pod to pod on one node needs none).
 */
function iptablesRules(n: number, server: string): string {
  const chains: string[] = [':PREROUTING ACCEPT [0:0]', ':KUBE-SERVICES - [0:0]'];
  const rules: string[] = [
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  ];
  const add = (i: string, ip: string, port: number, target: number) => {
    chains.push(`:KUBE-SVC-${i} - [0:0]`, `:KUBE-SEP-${i} - [0:0]`);
    rules.push(
      `-A KUBE-SERVICES -d ${ip}/32 -p tcp -m tcp --dport ${port} -j KUBE-SVC-${i}`,
      `-A KUBE-SVC-${i} -j KUBE-SEP-${i}`,
      `-A KUBE-SEP-${i} -p tcp -m tcp -j DNAT --to-destination ${server}:${target}`,
    );
  };
  for (let i = 0; i < n - 2; i++) add(String(i), dummyIP(97, i), svcConnectPort, connectPort);
  add('MEASURED-C', iptMeasuredIP, svcConnectPort, connectPort);
  add('MEASURED-R', iptMeasuredIP, svcRRPort, rrPort);
  return ['*nat', ...chains, ...rules, 'COMMIT', ''].join('\n');
}

async function kubeServicesRules(netns: string): Promise<number> {
  const out = (await iptablesIn(netns, ['iptables', '-t', 'nat', '-S', 'KUBE-SERVICES'])).stdout;
  return out.split('\n').filter((l) => l.startsWith('-A ')).length;
}

async function natLoad(netns: string, ruleset: string, n: number): Promise<number> {
  const t0 = performance.now();
  await iptablesIn(netns, ['iptables-restore'], ruleset);
  const ms = performance.now() - t0;
  const count = await kubeServicesRules(netns);
  if (count !== n)
    throw new WeirError('ERR_BENCH_IPTABLES', `expected ${n} KUBE-SERVICES rules, found ${count}`);
  return ms;
}

/** Removes the nat table and its hooks from the node netns (the other targets run without it). */
async function natUnload(netns: string): Promise<void> {
  await iptablesIn(netns, ['nft', 'delete', 'table', 'ip', 'nat']);
}

async function natPresent(netns: string): Promise<boolean> {
  const out = await run(['ip', 'netns', 'exec', netns, 'nft', 'list', 'tables'], { timeoutMs: 30_000 });
  return /\btable ip nat\b/.test(out.stdout);
}

/** Applies services through the agent API in batches; returns how long the calls took. */
async function applyServices(
  lab: string,
  objects: DesiredObject[],
  log: (l: string) => void,
): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < objects.length; i += batch) {
    await agentClient(lab).call('POST', '/v1/apply', { objects: objects.slice(i, i + batch) });
    if (objects.length > batch)
      log(`  services applied: ${Math.min(i + batch, objects.length)}/${objects.length}`);
  }
  return performance.now() - t0;
}

interface LbEntry {
  frontend: { address: string; port: number };
  backendIds: number[];
}

/** Frontends of weir's service CIDR in the pinned map, and whether the measured ones have a backend. */
async function weirFrontends(lab: string): Promise<{ frontends: number; measuredReady: boolean }> {
  const entries = await weirJson<LbEntry[]>(lab, ['bpf', 'lb', 'list']);
  const ours = entries.filter((e) => e.frontend.address.startsWith('10.96.'));
  const measured = ours.filter((e) => e.frontend.address === weirMeasuredIP);
  return {
    frontends: ours.length,
    measuredReady: measured.length === 2 && measured.every((e) => e.backendIds.length === 1),
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
type Target =
  | 'pod IP'
  | 'weir ClusterIP'
  | 'iptables ClusterIP'
  | 'pod IP, kube-proxy rules loaded'
  | 'pod IP, no socket hook'
  | 'weir ClusterIP, tc (no socket hook)';
/** The pod IP measured beside each target, in the same rounds: its baseline. */
const baselineOf: Record<Target, Target> = {
  'pod IP': 'pod IP',
  'weir ClusterIP': 'pod IP',
  'iptables ClusterIP': 'pod IP',
  'pod IP, kube-proxy rules loaded': 'pod IP',
  'pod IP, no socket hook': 'pod IP',
  'weir ClusterIP, tc (no socket hook)': 'pod IP, no socket hook',
};
const metrics = [
  { key: 'p50', label: 'TCP connect p50', unit: 'µs' },
  { key: 'p99', label: 'TCP connect p99', unit: 'µs' },
  { key: 'rr', label: 'TCP request/response rate', unit: 'exchanges/s' },
] as const;

/**
 * The service section: for each size N, services are added through the agent until weir holds N
 * (the measured one with two ports + N−1 dummies, all selecting the server pod), then `rounds`
 * rounds each measure pod IP and weir ClusterIP (connects interleaved), then with kube-proxy's nat
 * table of N services loaded, iptables ClusterIP and pod IP again (interleaved). Removes its
 * services and the nat table when done.
 */
export async function measureServices(
  lab: Lab,
  labName: string,
  cfg: ServiceConfig,
  log: (l: string) => void,
): Promise<ServiceRow[]> {
  const rows: ServiceRow[] = [];
  const { netns } = await lab.node();
  const server = (await lab.pod('bench/server')).ip;
  const servers = await startServiceServers(lab);
  let dummies = 0;
  const weirAt: Record<number, Record<string, number>> = {};
  try {
    const t0 = performance.now();
    await applyServices(labName, [measuredService()], log);
    rows.push({
      scenario: 'services',
      metric: 'apply measured service (2 ports)',
      value: Math.round(performance.now() - t0),
      unit: 'ms',
    });
    for (const n of cfg.sizes) {
      const want = n - 1;
      if (want > dummies) {
        log(`services: ${dummies + 1} → ${n}`);
        const objs = Array.from({ length: want - dummies }, (_, k) => dummyService(dummies + k));
        const ms = await applyServices(labName, objs, log);
        rows.push({
          scenario: `services ${n}`,
          metric: `apply ${objs.length} services (batches of ${batch})`,
          value: Math.round(ms),
          unit: 'ms',
          note: 'agent API calls until the maps are written',
        });
        dummies = want;
      }
      const lb = await weirFrontends(labName);
      // N services: the measured one's 2 ports + N−1 dummies.
      if (lb.frontends !== n + 1 || !lb.measuredReady)
        throw new WeirError(
          'ERR_BENCH_SERVICES',
          `expected ${n + 1} frontends in 10.96.0.0/16 with the measured ones backed, the map holds ${lb.frontends}`,
        );
      const facts: Fact[] = [
        { metric: 'weir frontends in weir_lb_services', value: lb.frontends, unit: 'frontends' },
      ];
      const ruleset = iptablesRules(n + 1, server);
      const values: Record<Target, Record<string, number[]>> = {
        'pod IP': {},
        'weir ClusterIP': {},
        'iptables ClusterIP': {},
        'pod IP, kube-proxy rules loaded': {},
        'pod IP, no socket hook': {},
        'weir ClusterIP, tc (no socket hook)': {},
      };
      const push = (t: Target, k: string, v: number) => (values[t][k] ??= []).push(v);
      /** Both measurements with the two targets taking turns. */
      const measure = async (pair: [Target, string, number, number][], via: Via = 'socket') => {
        const c = await connectLatency(
          lab,
          pair.map(([, ip, port]) => `${ip}:${port}`),
          cfg.connects,
          via,
        );
        pair.forEach(([t], i) => {
          push(t, 'p50', c[i]?.p50 as number);
          push(t, 'p99', c[i]?.p99 as number);
        });
        const rr = await rrRates(
          lab,
          pair.map(([, ip, , port]) => [ip, port]),
          cfg.rrSeconds,
          via,
        );
        pair.forEach(([t], i) => push(t, 'rr', rr[i] as number));
      };
      const loads: number[] = [];
      for (let r = 0; r < cfg.rounds; r++) {
        log(`  services ${n}, round ${r + 1}/${cfg.rounds}`);
        if (await natPresent(netns))
          throw new WeirError('ERR_BENCH_IPTABLES', 'nat table left in the node netns');
        await measure([
          ['pod IP', server, connectPort, rrPort],
          ['weir ClusterIP', weirMeasuredIP, svcConnectPort, svcRRPort],
        ]);
        await measure(
          [
            ['pod IP, no socket hook', server, connectPort, rrPort],
            ['weir ClusterIP, tc (no socket hook)', weirMeasuredIP, svcConnectPort, svcRRPort],
          ],
          'tc',
        );
        loads.push(await natLoad(netns, ruleset, n + 1));
        try {
          await measure([
            ['pod IP, kube-proxy rules loaded', server, connectPort, rrPort],
            ['iptables ClusterIP', iptMeasuredIP, svcConnectPort, svcRRPort],
          ]);
        } finally {
          await natUnload(netns);
        }
      }
      facts.push(
        {
          metric: 'iptables KUBE-SERVICES rules',
          value: n + 1,
          unit: 'rules',
          note: `${n + 1} service ports, 3 rules each (services → svc → sep DNAT), the measured two last`,
        },
        {
          metric: 'iptables-restore (nat)',
          value: Math.round(median(loads)),
          unit: 'ms',
          note: `median of ${loads.length}`,
        },
      );
      const pairOf = (t: Target) =>
        t === 'pod IP' || t === 'weir ClusterIP'
          ? 'the other of pod IP / weir'
          : t.includes('no socket hook')
            ? 'the other of the no-socket-hook pair (client outside the pod cgroup)'
            : 'the other of the nat block';
      const note = (t: Target) =>
        `median of ${cfg.rounds} rounds; connect: ${cfg.connects}/round, interleaved with ${pairOf(t)}` +
        `; RR: sockperf TCP ping-pong, ${cfg.rrSeconds} × 1 s/round taking turns` +
        (baselineOf[t] === t ? '' : `; baseline = ${baselineOf[t]} (no nat table) in the same rounds`);
      for (const t of Object.keys(values) as Target[])
        for (const m of metrics) {
          const vs = values[t][m.key] ?? [];
          const value = round2(median(vs));
          const base = round2(median(values[baselineOf[t]][m.key] ?? []));
          if (t === 'weir ClusterIP') (weirAt[n] ??= {})[m.key] = value / base;
          rows.push({
            scenario: `services ${n}, ${t}`,
            metric: m.label,
            value,
            unit: m.unit,
            runs: vs.map(round2),
            ...(baselineOf[t] === t ? {} : { baseline: base, ratio: value / base }),
            note: note(t),
          });
        }
      for (const f of facts) rows.push({ scenario: `services ${n}`, ...f });
    }
    // Flatness: weir's cost relative to the pod IP of the same rounds, at the largest size ÷ at the
    // smallest (machine load drifts between sizes, minutes apart; within a round it hits both alike).
    const first = cfg.sizes[0];
    const last = cfg.sizes[cfg.sizes.length - 1];
    if (first !== undefined && last !== undefined && first !== last)
      for (const m of metrics) {
        const a = weirAt[first]?.[m.key];
        const b = weirAt[last]?.[m.key];
        if (a === undefined || b === undefined) continue;
        rows.push({
          scenario: `services, weir ${last} vs ${first}`,
          metric: `${m.label}, (weir / pod IP) at ${last} ÷ at ${first}`,
          value: Math.round((b / a) * 1000) / 1000,
          unit: 'ratio',
          note: `weir / pod IP: ${a.toFixed(3)} at ${first}, ${b.toFixed(3)} at ${last}; target within 5 % (0.95–1.05)`,
        });
      }
  } finally {
    for (const s of servers) s.kill('SIGKILL');
    if (await natPresent(netns).catch(() => false)) await natUnload(netns);
    const keys = [measuredName, ...Array.from({ length: dummies }, (_, i) => `svc-${i}`)].map((name) => ({
      kind: 'Service',
      namespace: svcNs,
      name,
    }));
    const t0 = performance.now();
    await agentClient(labName).call('POST', '/v1/delete', { objects: keys });
    rows.push({
      scenario: 'services',
      metric: `delete ${keys.length} services`,
      value: Math.round(performance.now() - t0),
      unit: 'ms',
      note: 'one agent API call',
    });
  }
  return rows;
}
