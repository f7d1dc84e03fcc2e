// Encryption between nodes (bench section `encryption`): two labs of two nodes each in the same run,
// one `weir lab up --nodes 2` (plain VXLAN, the baseline) and one `--encryption mtls` (pod TCP across
// the nodes inside the node proxies' HTTP/2 CONNECT tunnels over mutual TLS 1.3, docs/mtls.md), a
// client pod on node1 and a server pod on node2 in each. Rounds alternate (plain, mtls, plain, mtls …)
// so both see the same machine load; the ratio is of the medians. Measured: iperf3 TCP throughput
// (1 stream), sockperf TCP ping-pong latency (one connection kept open: request latency without
// connection setup), and wrk HTTP/1.1 requests on a new connection each (`Connection: close`,
// 4 connections: setup through both proxies and the tunnel's stream included) against the lab
// server. Anchor (l7-facts.md §4): Istio 1.24's ztunnel costs 0.06 vCPU per 1 000 rps (1 KB, mTLS);
// the latency charts are not machine-readable; the arXiv 2411.02267 mTLS study recalls ≈ +8 %
// latency for ambient (unverified).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { run } from '../src/shared/exec.js';
import { repoRoot } from '../src/shared/paths.js';
import { iperfPort, sockperfPort } from './measurements.js';
import { percentile } from './scale.js';
import type { BenchRow } from './row.js';

export type EncryptionRow = BenchRow;

export const encryptionLegend = (rounds: number, seconds: number) =>
  '- **pod to pod across nodes, --encryption mtls**: two labs of two nodes in the same run, plain VXLAN ' +
  "(the baseline) and mTLS tunnels between the node proxies (HTTP/2 CONNECT over TLS 1.3, Istio ambient's " +
  'HBONE); client pod on node1, server pod on node2; iperf3 TCP 1 stream, sockperf TCP ping-pong on one ' +
  'open connection, wrk HTTP/1.1 with a new connection per request (4 connections); ' +
  `${rounds} rounds of ${seconds} s each, alternating; medians (bench/encryption.ts)\n`;

const weir = join(repoRoot, 'bin/weir');
const HTTP_PORT = 8080;

const pods = `apiVersion: v1
kind: Pod
metadata: { name: client, labels: { app: client } }
spec: { nodeName: node1, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, labels: { app: server } }
spec: { nodeName: node2, containers: [{ name: c, ports: [{ containerPort: ${HTTP_PORT} }] }] }
`;

async function cli(lab: string, args: string[], timeoutMs = 600_000): Promise<string> {
  return (await run([weir, ...args, '--lab', lab], { timeoutMs })).stdout;
}

type Mode = 'plain' | 'mtls';

interface Side {
  lab: Lab;
  name: string;
  serverIP: string;
  servers: ChildProcess[];
}

async function client(side: Side, cmd: string[], seconds: number): Promise<string> {
  const argv = await side.lab.execArgv('default/client', cmd);
  return (await run(argv, { timeoutMs: (seconds + 30) * 1000 })).stdout;
}

async function measure(side: Side, seconds: number): Promise<Record<string, number>> {
  const ip = await client(
    side,
    ['iperf3', '-c', side.serverIP, '-p', String(iperfPort), '-t', String(seconds), '-J'],
    seconds,
  );
  const bps = (JSON.parse(ip) as { end?: { sum_received?: { bits_per_second?: number } } }).end?.sum_received
    ?.bits_per_second;
  if (bps === undefined)
    throw new WeirError('ERR_BENCH_OUTPUT', `iperf3 gave no throughput: ${ip.slice(0, 300)}`);
  const sp = await client(
    side,
    [
      'sockperf',
      'ping-pong',
      '--tcp',
      '-i',
      side.serverIP,
      '-p',
      String(sockperfPort),
      '-t',
      String(seconds),
    ],
    seconds,
  );
  const pct = (p: string) => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s*([\\d.]+)`).exec(sp);
    if (!m?.[1]) throw new WeirError('ERR_BENCH_OUTPUT', `sockperf gave no p${p}: ${sp.slice(-300)}`);
    return Number(m[1]);
  };
  const wrk = await client(
    side,
    [
      'wrk',
      '-t1',
      '-c4',
      `-d${seconds}s`,
      '--latency',
      '-H',
      'Connection: close',
      `http://${side.serverIP}:${HTTP_PORT}/`,
    ],
    seconds,
  );
  const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(wrk)?.[1] ?? NaN);
  const lat = (p: string) => {
    const m = new RegExp(`\\b${p}%\\s+([\\d.]+)(us|ms|s)\\b`).exec(wrk);
    if (!m?.[1]) throw new WeirError('ERR_BENCH_OUTPUT', `wrk gave no p${p}: ${wrk.slice(-400)}`);
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  if (!Number.isFinite(rps)) throw new WeirError('ERR_BENCH_OUTPUT', `wrk gave no rate: ${wrk.slice(-400)}`);
  return {
    tcp_1: Math.round(bps / 1e7) / 100,
    rr_p50: pct('50.000'),
    rr_p99: pct('99.000'),
    conn_rps: Math.round(rps),
    conn_p50: lat('50'),
    conn_p99: lat('99'),
  };
}

const METRICS: { key: string; label: string; unit: string }[] = [
  { key: 'tcp_1', label: 'throughput 1 stream', unit: 'Gbit/s' },
  { key: 'rr_p50', label: 'TCP request latency p50 (open connection)', unit: 'µs' },
  { key: 'rr_p99', label: 'TCP request latency p99 (open connection)', unit: 'µs' },
  { key: 'conn_rps', label: 'HTTP requests/s, new connection each', unit: 'req/s' },
  { key: 'conn_p50', label: 'HTTP request latency p50, new connection each', unit: 'ms' },
  { key: 'conn_p99', label: 'HTTP request latency p99, new connection each', unit: 'ms' },
];

async function up(name: string, mode: Mode, dir: string): Promise<Side> {
  await run([weir, 'lab', 'down', '--lab', name], { check: false, timeoutMs: 300_000 });
  try {
    return await start(name, mode, dir);
  } catch (err) {
    await run([weir, 'lab', 'down', '--lab', name], { check: false, timeoutMs: 300_000 });
    throw err;
  }
}

async function start(name: string, mode: Mode, dir: string): Promise<Side> {
  await cli(name, ['lab', 'up', '--nodes', '2', ...(mode === 'mtls' ? ['--encryption', 'mtls'] : [])]);
  await cli(name, ['apply', '-f', join(dir, 'pods.yaml')]);
  const list = JSON.parse(await cli(name, ['get', 'pods', '-o', 'json'])) as {
    items: { metadata: { name: string }; status: { podIP: string } }[];
  };
  const serverIP = list.items.find((p) => p.metadata.name === 'server')?.status.podIP;
  if (!serverIP) throw new WeirError('ERR_BENCH_SERVER', `lab ${name}: no server pod address`);
  const lab = await Lab.open(name);
  const servers = await Promise.all(
    [
      ['iperf3', '-s', '-p', String(iperfPort)],
      ['sockperf', 'server', '--tcp', '-p', String(sockperfPort)],
    ].map(async (cmd) => {
      const [bin, ...args] = await lab.execArgv('default/server', cmd);
      return spawn(bin as string, args, { stdio: 'ignore' });
    }),
  );
  await new Promise((r) => setTimeout(r, 1000));
  for (const s of servers)
    if (s.exitCode !== null)
      throw new WeirError('ERR_BENCH_SERVER', `a benchmark server exited early (${s.spawnargs.join(' ')})`);
  return { lab, name, serverIP, servers };
}

export async function measureEncryption(
  base: string,
  o: { rounds: number; seconds: number },
  log: (l: string) => void,
): Promise<EncryptionRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-enc-'));
  await writeFile(join(dir, 'pods.yaml'), pods);
  const sides: Partial<Record<Mode, Side>> = {};
  try {
    sides.plain = await up(`${base}-ep`, 'plain', dir);
    sides.mtls = await up(`${base}-em`, 'mtls', dir);
    const values: Record<Mode, Record<string, number[]>> = { plain: {}, mtls: {} };
    // One warm-up request each (the mTLS side opens its tunnel).
    for (const mode of ['plain', 'mtls'] as const)
      await client(
        sides[mode] as Side,
        ['curl', '-s', '-m', '10', `http://${sides[mode]?.serverIP}:${HTTP_PORT}/`],
        10,
      );
    for (let round = 0; round < o.rounds; round++)
      for (const mode of ['plain', 'mtls'] as const) {
        const r = await measure(sides[mode] as Side, o.seconds);
        for (const [k, v] of Object.entries(r)) (values[mode][k] ??= []).push(v);
        log(`encryption: round ${round + 1}/${o.rounds} ${mode} ${JSON.stringify(r)}`);
      }
    return METRICS.map(({ key, label, unit }) => {
      const plain = percentile(values.plain[key] ?? [], 50);
      const mtls = percentile(values.mtls[key] ?? [], 50);
      return {
        scenario: 'pod to pod across nodes, --encryption mtls',
        metric: label,
        value: mtls,
        unit,
        baseline: plain,
        ...(plain > 0 ? { ratio: Math.round((mtls / plain) * 1000) / 1000 } : {}),
        note: `mtls runs ${JSON.stringify(values.mtls[key])}; plain VXLAN runs ${JSON.stringify(values.plain[key])}`,
      };
    });
  } finally {
    for (const s of Object.values(sides)) for (const c of s.servers) c.kill('SIGKILL');
    for (const s of Object.values(sides))
      await run([weir, 'lab', 'down', '--lab', s.name], { check: false, timeoutMs: 300_000 });
    await rm(dir, { recursive: true, force: true });
  }
}
