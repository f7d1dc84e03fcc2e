// The L7 section of `make bench`: HTTP through weir's node proxy beside the same requests without
// it, and beside nginx and haproxy as reverse proxies between the same pods. Upstream: nginx in
// bench/server (HTTP/1.1 on l7Port, h2c on l7Port + 1; a second nginx on l4Port/l4Port + 1 for
// the L4 port beside the L7 one). Clients in bench/client: wrk (HTTP/1.1 keep-alive, 32 and 256
// connections) and h2load (HTTP/2 prior knowledge). In each round, in turn:
//   1. L4 policy only (client → server's ports, no rules): client → server direct;
//   2. the L7 policy (HTTP rules on l7Port/l7Port + 1 for the client, the node's L4 allow for the
//      reverse proxies, L4 only on l4Port): client → server through weir's proxy (redirected by
//      the datapath, flows and metrics on), client → nginx and haproxy in the node's netns →
//      server, and client → the L4 port beside the L7 one (the proxy's redirect counters must
//      not move during those runs).
// Then memory: N idle keep-alive connections (each after one request) through each proxy, the
// resident memory they add per 1 000. Targets (issue 10): weir ≥ 0.6× nginx's requests/s and
// p99 ≤ 2× nginx's; reported, not asserted.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { proxyPid } from '../src/agent/proxy-manager.js';
import { agentPid } from '../src/agent/spawn.js';
import { proxyAccessLogFile, proxyLogFile } from '../src/proxy/paths.js';
import {
  accessLatency,
  diagSummary,
  formatDiag,
  formatTasks,
  taskDelta,
  taskTimes,
  totalCpuNs,
  type Latency,
} from './l7-diag.js';
import { parse } from 'yaml';
import type { Lab } from '../src/lab/index.js';
import type { ProxyStatus } from '../src/proxy/admin.js';
import { WeirError } from '../src/shared/errors.js';
import {
  benchPlaces,
  h2load,
  haproxyConf,
  nginxProxyConf,
  nginxServerConf,
  startPeer,
  wrk,
  type HttpPeer,
  type LoadResult,
} from './http-peers.js';
import type { BenchRow } from './row.js';

export const l7Port = 11130;
export const l4Port = 11140;
const nginxPort = 11150;
const haproxyPort = 11160;
const policyName = 'bench-l7';

export interface L7BenchConfig {
  rounds: number;
  seconds: number;
  /** h2load: connections × concurrent streams each. */
  h2Clients: number;
  h2Streams: number;
  /** Idle connections held for the memory figure. */
  idle: number;
  /** Only these loads (h1-32, h1-256, h2) / targets (direct, weir, nginx, haproxy, beside); absent: all. */
  loads?: string[];
  targets?: string[];
  /** false: no memory figure. */
  memory?: boolean;
  /**
   * Settings of the proxy measured against each other in the same lab, taking turns within each
   * round (the order rotates from round to round): each is a restart of the agent and its proxy
   * with the variant's agent arguments and environment (WEIR_PROXY_NODE_ARGS, WEIR_PROXY_DIAG, …).
   */
  variants?: L7Variant[];
  /** Restarts the agent and a new proxy with a variant's settings (bench/run.ts). */
  restart?: (v: L7Variant) => Promise<void>;
}

/** A setting of the proxy: agent arguments (--proxy-workers 1) and environment (K=V). */
export interface L7Variant {
  name: string;
  agentArgs: string[];
  env: Record<string, string>;
}

/**
 * WEIR_BENCH_L7_VARIANTS: `name: tokens; name: tokens`, a token K=V is environment (a value's
 * commas become spaces: WEIR_PROXY_NODE_ARGS=--single-threaded-gc,--max-lazy), any other token
 * an agent argument. `w1: --proxy-workers 1; w2: --proxy-workers 2`.
 */
export function parseVariants(text: string): L7Variant[] {
  return text
    .split(';')
    .map((v) => v.trim())
    .filter((v) => v !== '')
    .map((v) => {
      const i = v.indexOf(':');
      const name = (i < 0 ? v : v.slice(0, i)).trim();
      const tokens = (i < 0 ? '' : v.slice(i + 1)).split(/\s+/).filter((t) => t !== '');
      const env: Record<string, string> = {};
      const agentArgs: string[] = [];
      for (const t of tokens) {
        const eq = t.indexOf('=');
        if (eq > 0 && !t.startsWith('-')) env[t.slice(0, eq)] = t.slice(eq + 1).replaceAll(',', ' ');
        else agentArgs.push(t);
      }
      return { name, agentArgs, env };
    });
}

/** What the bench saw of the proxy during one run (bench/l7-diag.ts). */
interface RunDiag {
  /** The proxy's own view of the same requests (access log duration_ms). */
  seen: Latency;
  proxyCpuUsPerReq: number;
  /** Time the proxy's threads waited, runnable, for a core, per request. */
  proxyWaitUsPerReq: number;
  agentCpuUsPerReq: number;
}

export type L7Row = BenchRow;

export const l7Legend = (c: L7BenchConfig) =>
  `- **L7**: bench/client → nginx in bench/server (${64}-byte bodies), ${c.rounds} rounds × ${c.seconds} s per ` +
  `load, targets taking turns within each round: **direct, L4 policy** (a CiliumNetworkPolicy allowing the ` +
  `client on the ports, no rules), then with the L7 policy in force: **weir proxy, L7 policy** (HTTP rules ` +
  `method GET, path /.* on the port: every connection redirected to the node proxy, requests judged, L7 flows ` +
  `and Hubble HTTP metrics on), **nginx / haproxy reverse proxy** (in the node's netns, one worker/thread, ` +
  `keep-alive upstream; the node is allowed at L4) and **direct, L4 port beside the L7 port** (same pod, a ` +
  `port with an L4-only allow). Loads: wrk -t1 keep-alive with 32 and 256 connections; h2load ` +
  `-c${c.h2Clients} -m${c.h2Streams} (h2c). baseline = nginx reverse proxy; targets ≥ 0.6× its requests/s, ` +
  `p99 ≤ 2× its p99. Memory: the proxy's resident memory (process tree) with ${2 * c.idle} idle keep-alive ` +
  `connections (one request each) minus with ${c.idle}, each settled 3 s, per 1 000 connections, measured before any load\n`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const r2 = (x: number) => Math.round(x * 100) / 100;

function policies(mode: 'l4' | 'l7'): unknown[] {
  const rules = mode === 'l7' ? '\n          rules: { http: [{ method: GET, path: "/.*" }] }' : '';
  const yaml = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: ${policyName}, namespace: bench }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts:
        - ports: [{ port: "${l7Port}", protocol: TCP }, { port: "${l7Port + 1}", protocol: TCP }]${rules}
        - ports: [{ port: "${l4Port}", protocol: TCP }, { port: "${l4Port + 1}", protocol: TCP }]
    - fromEntities: [host]
      toPorts:
        - ports: [{ port: "${l7Port}", protocol: TCP }, { port: "${l7Port + 1}", protocol: TCP }]
`;
  return [
    {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      name: policyName,
      namespace: 'bench',
      file: '<bench l7>',
      object: parse(yaml) as unknown,
    },
  ];
}

/** Resident memory of a process and its descendants, KiB. */
async function rssTreeKiB(pid: number): Promise<number> {
  let total = 0;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  total += Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  for (const t of tasks) {
    const children = await readFile(`/proc/${pid}/task/${t}/children`, 'utf8').catch(() => '');
    for (const c of children.split(' ').filter(Boolean)) total += await rssTreeKiB(Number(c));
  }
  return total;
}

/** Holds `n` keep-alive connections (one request each) from inside the client pod until killed. */
const idleScript = `
const net = require('node:net');
const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
let ready = 0; const socks = [];
for (let i = 0; i < n; i++) {
  const s = net.connect({ host, port }, () => s.write('GET /idle HTTP/1.1\\r\\nHost: bench\\r\\n\\r\\n'));
  let got = '';
  s.on('data', (d) => { got += d; if (got.includes('\\r\\n\\r\\n') && !s.counted) { s.counted = true; if (++ready === n) console.log('ready'); } });
  s.on('error', (e) => { console.error(String(e)); process.exit(1); });
  socks.push(s);
}
setInterval(() => {}, 1 << 30);
`;

/** Starts a holder of `n` idle connections in the client pod; resolves once all answered. */
async function holdIdle(lab: Lab, target: { host: string; port: number }, n: number): Promise<ChildProcess> {
  const argv = await lab.execArgv('bench/client', [
    process.execPath,
    '-e',
    idleScript,
    target.host,
    String(target.port),
    String(n),
  ]);
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const t = setTimeout(
      () => reject(new WeirError('ERR_BENCH_OUTPUT', `idle connections not ready: ${err}`)),
      60_000,
    );
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on('exit', (code) =>
      reject(new WeirError('ERR_BENCH_OUTPUT', `idle client exited ${code}: ${err}`)),
    );
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return child;
}

/**
 * MiB per 1 000 idle connections: the process tree's resident memory with `n` connections held,
 * then with `2n`, once each has settled (the difference leaves out what the earlier load left
 * behind, whatever the garbage collector does with it meanwhile).
 */
async function idleMemory(
  lab: Lab,
  target: { host: string; port: number },
  pid: number,
  n: number,
): Promise<number> {
  const settle = () => new Promise((r) => setTimeout(r, 3000));
  const holders: ChildProcess[] = [];
  try {
    holders.push(await holdIdle(lab, target, n));
    await settle();
    const first = await rssTreeKiB(pid);
    holders.push(await holdIdle(lab, target, n));
    await settle();
    const second = await rssTreeKiB(pid);
    return ((second - first) / 1024) * (1000 / n);
  } finally {
    for (const h of holders) h.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 1000));
  }
}

type Load = {
  key: string;
  label: string;
  run: (prefix: string[], host: string, port: number) => Promise<LoadResult>;
};

export async function measureL7(
  lab: Lab,
  labName: string,
  cfg: L7BenchConfig,
  log: (l: string) => void,
): Promise<L7Row[]> {
  const { dir, server, node, client, serverPrefix, nodePrefix, agent } = await benchPlaces(
    lab,
    labName,
    'l7',
  );
  const upstream = `${server.ip}:${l7Port}`;
  const peers: HttpPeer[] = [];
  const loads: Load[] = [
    {
      key: 'h1-32',
      label: 'HTTP/1.1 keep-alive, 32 conns',
      run: (p, h, port) => wrk(p, `http://${h}:${port}/`, 32, cfg.seconds),
    },
    {
      key: 'h1-256',
      label: 'HTTP/1.1 keep-alive, 256 conns',
      run: (p, h, port) => wrk(p, `http://${h}:${port}/`, 256, cfg.seconds),
    },
    {
      key: 'h2',
      label: `HTTP/2 h2c, ${cfg.h2Clients}×${cfg.h2Streams} streams`,
      run: (p, h, port) =>
        h2load(p, `http://${h}:${port + 1}/`, cfg.h2Clients, cfg.h2Streams, cfg.seconds, dir),
    },
  ];
  const loadsRun = loads.filter((l) => !cfg.loads || cfg.loads.includes(l.key));
  const allTargets: {
    key: string;
    name: string;
    host: string;
    port: number;
    phase: 'l4' | 'l7';
    variant?: L7Variant;
  }[] = [
    { key: 'direct', name: 'direct, L4 policy', host: server.ip, port: l7Port, phase: 'l4' as const },
    { key: 'weir', name: 'weir proxy, L7 policy', host: server.ip, port: l7Port, phase: 'l7' as const },
    { key: 'nginx', name: 'nginx reverse proxy', host: node.ip, port: nginxPort, phase: 'l7' as const },
    { key: 'haproxy', name: 'haproxy reverse proxy', host: node.ip, port: haproxyPort, phase: 'l7' as const },
    {
      key: 'beside',
      name: 'direct, L4 port beside the L7 port',
      host: server.ip,
      port: l4Port,
      phase: 'l7' as const,
    },
  ];
  const variants = cfg.variants ?? [];
  const targets = allTargets
    .flatMap((t) =>
      t.key === 'weir' && variants.length > 0
        ? variants.map((v) => ({
            ...t,
            key: `weir@${v.name}`,
            name: `weir proxy (${v.name}), L7 policy`,
            variant: v,
          }))
        : [t],
    )
    .filter((t) => !cfg.targets || cfg.targets.includes(t.key.split('@')[0] as string));
  const results = new Map<string, LoadResult[]>();
  const diags = new Map<string, RunDiag[]>();
  /** The proxy's counters of the proxies a variant's restart replaced. */
  const earlier = { received: 0, forwarded: 0, denied: 0, sent: 0, lost: 0 };
  let current: string | undefined;
  const accessFiles = [0, 1, 2].map((i) => proxyAccessLogFile(labName) + (i ? `.${i}` : ''));
  const useVariant = async (v: L7Variant) => {
    if (current === v.name || !cfg.restart) return;
    const s = await proxyStatus().catch(() => undefined);
    if (s) {
      earlier.received += (s.requests?.ingress.received ?? 0) + (s.requests?.egress.received ?? 0);
      earlier.forwarded += s.requests?.ingress.forwarded ?? 0;
      earlier.denied += s.requests?.ingress.denied ?? 0;
      earlier.sent += s.records.sent;
      earlier.lost += s.records.lost;
    }
    log(
      `  proxy variant ${v.name}: ${[...v.agentArgs, ...Object.entries(v.env).map(([k, x]) => `${k}=${x}`)].join(' ') || 'defaults'}`,
    );
    await cfg.restart(v);
    current = v.name;
    // Warm-up (JIT, upstream pool) before the measured runs.
    await wrk(client, `http://${server.ip}:${l7Port}/`, 32, 2);
  };
  /** One run of `load` against `t`, with what the proxy did during it when it is the proxy. */
  const measure = async (load: Load, t: (typeof targets)[number]): Promise<LoadResult> => {
    if (!t.key.startsWith('weir')) return load.run(client, t.host, t.port);
    const pid = proxyPid(labName);
    const apid = agentPid(labName);
    const s0 = await proxyStatus().catch(() => undefined);
    const [p0, a0] = [taskTimes(pid), taskTimes(apid)];
    const t0 = Date.now();
    const r = await load.run(client, t.host, t.port);
    const t1 = Date.now();
    const s1 = await proxyStatus().catch(() => undefined);
    const split = (s1?.threads?.redirects ?? []).map((n, i) => n - (s0?.threads?.redirects[i] ?? 0));
    const lost = (s1?.records.lost ?? 0) - (s0?.records.lost ?? 0);
    const p = taskDelta(p0, taskTimes(pid));
    const a = taskDelta(a0, taskTimes(apid));
    const n = Math.max(1, r.requestsPerSecond * cfg.seconds);
    const seen = accessLatency(accessFiles, t0);
    const wait = [...p.values()].reduce((x, e) => x + e.waitNs, 0);
    const d: RunDiag = {
      seen,
      proxyCpuUsPerReq: totalCpuNs(p) / 1e3 / n,
      proxyWaitUsPerReq: wait / 1e3 / n,
      agentCpuUsPerReq: totalCpuNs(a) / 1e3 / n,
    };
    const k = `${t.key}/${load.key}`;
    diags.set(k, [...(diags.get(k) ?? []), d]);
    const diag = formatDiag(diagSummary(proxyLogFile(labName), t0 + 1000, t1));
    log(
      `    ${Math.round(r.requestsPerSecond)} req/s, wrk p50 ${r.p50Ms} p99 ${r.p99Ms} ms; proxy saw p50 ${seen.p50} ` +
        `p99 ${seen.p99} p99.9 ${seen.p999} max ${seen.max} ms (${seen.n}); proxy CPU ${d.proxyCpuUsPerReq.toFixed(1)} µs/req, ` +
        `run-queue wait ${d.proxyWaitUsPerReq.toFixed(1)} µs/req [${formatTasks(p)}]; agent ${d.agentCpuUsPerReq.toFixed(1)} µs/req` +
        `; accepted per thread ${split.join('/') || 'one thread'}; records lost ${lost}` +
        `; load ${loadavg()[0]?.toFixed(2)}${diag ? `; ${diag}` : ''}`,
    );
    for (const line of seen.slow) log(`    slow: ${line}`);
    return r;
  };
  let besideRedirects = 0;
  const proxyStatus = async () =>
    (await agent.call<{ proxy?: ProxyStatus }>('GET', '/v1/proxy/status')).proxy;
  const rows: L7Row[] = [];
  const memRows: L7Row[] = [];
  try {
    const check = (port: number) => ({ prefix: client, host: server.ip, port });
    peers.push(
      await startPeer(
        'l7-upstream',
        dir,
        serverPrefix,
        'nginx',
        (d) => nginxServerConf(d, l7Port, l7Port + 1),
        check(l7Port),
      ),
      await startPeer(
        'l7-beside',
        dir,
        serverPrefix,
        'nginx',
        (d) => nginxServerConf(d, l4Port, l4Port + 1),
        check(l4Port),
      ),
    );
    await agent.call('POST', '/v1/apply', { objects: policies('l7') });
    const viaNode = { prefix: client, host: node.ip };
    peers.push(
      await startPeer(
        'l7-nginx-rp',
        dir,
        nodePrefix,
        'nginx',
        (d) => nginxProxyConf(d, nginxPort, nginxPort + 1, upstream),
        {
          ...viaNode,
          port: nginxPort,
        },
      ),
      await startPeer(
        'l7-haproxy',
        dir,
        nodePrefix,
        'haproxy',
        (d) => haproxyConf(d, haproxyPort, haproxyPort + 1, upstream),
        {
          ...viaNode,
          port: haproxyPort,
        },
      ),
    );
    // Memory per 1 000 idle connections, first (the L7 policy in force): before any load, the
    // proxy holds no garbage a collection could return while connections are being added.
    const weirPid = proxyPid(labName);
    const mem: [string, number | undefined, { host: string; port: number }][] = [
      ['weir proxy, L7 policy', weirPid, { host: server.ip, port: l7Port }],
      [
        'nginx reverse proxy',
        peers.find((p) => p.name === 'l7-nginx-rp')?.proc.pid,
        { host: node.ip, port: nginxPort },
      ],
      [
        'haproxy reverse proxy',
        peers.find((p) => p.name === 'l7-haproxy')?.proc.pid,
        { host: node.ip, port: haproxyPort },
      ],
    ];
    for (const [name, pid, target] of cfg.memory === false ? [] : mem) {
      if (pid === undefined) continue;
      log(`  memory: ${cfg.idle} idle connections through ${name}`);
      const mib = await idleMemory(lab, target, pid, cfg.idle);
      memRows.push({
        scenario: `L7: ${name}`,
        metric: 'memory per 1 000 idle connections',
        value: r2(mib),
        unit: 'MiB',
        note: `resident memory of the process tree with ${2 * cfg.idle} minus with ${cfg.idle} keep-alive connections (one request each), settled`,
      });
    }
    for (let round = 1; round <= cfg.rounds; round++)
      for (const phase of ['l4', 'l7'] as const) {
        const inPhase = targets.filter((x) => x.phase === phase);
        if (inPhase.length === 0) continue;
        await agent.call('POST', '/v1/apply', { objects: policies(phase) });
        // With variants, each variant's runs come together (one restart each), in an order that
        // rotates from round to round; the other targets' runs follow.
        const order = variants.map((_, i) => variants[(i + round - 1) % variants.length] as L7Variant);
        const steps: [Load, (typeof targets)[number]][] =
          variants.length > 0 && phase === 'l7'
            ? [
                ...order.flatMap((v) =>
                  loadsRun.flatMap((load) =>
                    inPhase
                      .filter((t) => t.variant === v)
                      .map((t) => [load, t] as [Load, (typeof targets)[number]]),
                  ),
                ),
                ...loadsRun.flatMap((load) =>
                  inPhase.filter((t) => !t.variant).map((t) => [load, t] as [Load, (typeof targets)[number]]),
                ),
              ]
            : loadsRun.flatMap((load) => inPhase.map((t) => [load, t] as [Load, (typeof targets)[number]]));
        for (const [load, t] of steps) {
          {
            if (t.variant) await useVariant(t.variant);
            log(`  round ${round}/${cfg.rounds}: ${load.label}, ${t.name}`);
            const before = t.key === 'beside' ? await proxyStatus() : undefined;
            const r = await measure(load, t);
            if (before) {
              const after = await proxyStatus();
              besideRedirects +=
                (after?.redirects.ingress ?? 0) -
                (before?.redirects.ingress ?? 0) +
                (after?.redirects.egress ?? 0) -
                (before?.redirects.egress ?? 0);
            }
            const k = `${t.key}/${load.key}`;
            results.set(k, [...(results.get(k) ?? []), r]);
          }
        }
      }
    const status = await proxyStatus();

    for (const load of loadsRun) {
      const at = (key: string) => results.get(`${key}/${load.key}`) ?? [];
      const nginxRps = median(at('nginx').map((r) => r.requestsPerSecond));
      const nginxP99 = median(at('nginx').map((r) => r.p99Ms));
      for (const t of targets) {
        const rs = at(t.key);
        const errors = rs.reduce((a, r) => a + r.errors, 0);
        const note = `median of ${rs.length} × ${cfg.seconds} s${errors ? `; ${errors} errors` : ''}`;
        const rps = r2(median(rs.map((r) => r.requestsPerSecond)));
        const p50 = r2(median(rs.map((r) => r.p50Ms)));
        const p99 = r2(median(rs.map((r) => r.p99Ms)));
        const vsNginx = (v: number, base: number) =>
          t.key === 'nginx' ? {} : { baseline: r2(base), ratio: base ? v / base : 0 };
        rows.push(
          {
            scenario: `L7: ${t.name}`,
            metric: `${load.label} req/s`,
            value: rps,
            unit: 'req/s',
            runs: rs.map((r) => r2(r.requestsPerSecond)),
            ...vsNginx(rps, nginxRps),
            note: `${note}; baseline = nginx reverse proxy`,
          },
          {
            scenario: `L7: ${t.name}`,
            metric: `${load.label} p50`,
            value: p50,
            unit: 'ms',
            runs: rs.map((r) => r.p50Ms),
            note,
          },
          {
            scenario: `L7: ${t.name}`,
            metric: `${load.label} p99`,
            value: p99,
            unit: 'ms',
            runs: rs.map((r) => r.p99Ms),
            ...vsNginx(p99, nginxP99),
            note,
          },
        );
      }
      for (const w of targets.filter((x) => x.key.startsWith('weir'))) {
        const rs = at(w.key);
        if (rs.length === 0 || at('nginx').length === 0) continue;
        const weirRps = median(rs.map((r) => r.requestsPerSecond));
        const weirP99 = median(rs.map((r) => r.p99Ms));
        const rpsRatio = nginxRps ? weirRps / nginxRps : 0;
        const p99Ratio = nginxP99 ? weirP99 / nginxP99 : Infinity;
        const scenario = `L7 target: weir proxy${w.variant ? ` (${w.variant.name})` : ''} vs nginx`;
        rows.push(
          {
            scenario,
            metric: `${load.label} req/s ratio`,
            value: r2(rpsRatio),
            unit: '×',
            note: `target ≥ 0.6: ${rpsRatio >= 0.6 ? 'met' : 'not met'}`,
          },
          {
            scenario,
            metric: `${load.label} p99 ratio`,
            value: r2(p99Ratio),
            unit: '×',
            note: `target ≤ 2: ${p99Ratio <= 2 ? 'met' : 'not met'}`,
          },
        );
      }
      // What the proxy itself saw and spent (bench/l7-diag.ts), medians of the runs.
      for (const w of targets.filter((x) => x.key.startsWith('weir'))) {
        const ds = diags.get(`${w.key}/${load.key}`) ?? [];
        if (ds.length === 0) continue;
        const note = `median of ${ds.length} runs; runs: ${ds.map((d) => `p50 ${d.seen.p50} p99 ${d.seen.p99} p99.9 ${d.seen.p999}`).join(' | ')}`;
        rows.push(
          {
            scenario: `L7: ${w.name}`,
            metric: `${load.label} p99 inside the proxy`,
            value: r2(median(ds.map((d) => d.seen.p99))),
            unit: 'ms',
            note: `access log duration_ms (request start to the response's last byte); ${note}`,
          },
          {
            scenario: `L7: ${w.name}`,
            metric: `${load.label} proxy CPU per request`,
            value: r2(median(ds.map((d) => d.proxyCpuUsPerReq))),
            unit: 'µs',
            note: `all threads of the proxy process (schedstat); run-queue wait ${ds.map((d) => d.proxyWaitUsPerReq.toFixed(1)).join(', ')} µs/request`,
          },
          {
            scenario: `L7: ${w.name}`,
            metric: `${load.label} agent CPU per request`,
            value: r2(median(ds.map((d) => d.agentCpuUsPerReq))),
            unit: 'µs',
            note: 'the agent process (records stream, flows, metrics)',
          },
        );
      }
    }
    rows.push({
      scenario: 'L7: direct, L4 port beside the L7 port',
      metric: 'proxy redirects during its runs',
      value: besideRedirects,
      unit: 'connections',
      note: "the proxy's redirect counters (ingress + egress) before and after each run; 0 = never met the proxy",
    });
    if (status)
      rows.push({
        scenario: 'L7: weir proxy, L7 policy',
        metric: 'requests judged by the proxy (whole section)',
        value:
          earlier.received +
          (status.requests?.ingress.received ?? 0) +
          (status.requests?.egress.received ?? 0),
        unit: 'requests',
        note: `forwarded ${earlier.forwarded + (status.requests?.ingress.forwarded ?? 0)}, denied ${earlier.denied + (status.requests?.ingress.denied ?? 0)}, records sent ${earlier.sent + status.records.sent}, lost ${earlier.lost + status.records.lost}${variants.length ? ` (all variants' proxies)` : ''}; proxy threads ${status.threads?.redirects.length ?? 1} (connections accepted by each: ${status.threads?.redirects.join(', ') ?? 'all'})`,
      });

    rows.push(...memRows);
  } finally {
    await agent
      .call('POST', '/v1/delete', {
        objects: [{ kind: 'CiliumNetworkPolicy', namespace: 'bench', name: policyName }],
      })
      .catch(() => undefined);
    for (const p of peers) await p.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
