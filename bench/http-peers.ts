// The HTTP peers of the L7 benchmarks, all Debian's: nginx as the upstream server (HTTP/1.1 and
// h2c), nginx and haproxy as the reverse proxies weir's proxy is compared with, wrk and h2load as
// the clients. Each runs inside a lab namespace through an argv prefix the caller gives (a pod's
// `lab.execArgv`, or `ip netns exec` for the node), with its files under a weir-named directory so
// that leftovers are recognisable (`pgrep -f weir`). Parsers are pure and unit-tested.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentClient } from '../src/agent/client.js';
import type { Lab } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { run } from '../src/shared/exec.js';

/** Bytes of every response body the upstream serves (small: the benchmark is per request). */
export const bodyBytes = 64;

export interface HttpPeer {
  name: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Where an L7 benchmark runs in the bench lab: a fresh weir-named directory for its peers' files
 * (the caller removes it), pod bench/server (the upstream) and the node with the argv prefixes that
 * run a peer in them, the argv prefix of pod bench/client (the load), and the node's agent.
 */
export async function benchPlaces(lab: Lab, labName: string, name: string) {
  const node = await lab.node();
  return {
    dir: await mkdtemp(join(tmpdir(), `weir-bench-${name}-`)),
    server: await lab.pod('bench/server'),
    node,
    client: await lab.execArgv('bench/client', []),
    serverPrefix: await lab.execArgv('bench/server', []),
    nodePrefix: ['ip', 'netns', 'exec', node.netns],
    agent: agentClient(labName),
  };
}

/** A directory for a peer's config, pid and logs: <dir>/weir-bench-<name>. */
function peerDir(dir: string, name: string): string {
  const d = join(dir, `weir-bench-${name}`);
  mkdirSync(d, { recursive: true, mode: 0o700 });
  return d;
}

/** nginx serving `bodyBytes` bytes on `port` (HTTP/1.1) and `h2cPort` (HTTP/2 prior knowledge). */
export function nginxServerConf(d: string, port: number, h2cPort: number): string {
  return [
    `pid ${d}/nginx.pid;`,
    'worker_processes 1;',
    'daemon off;',
    `error_log ${d}/error.log warn;`,
    'events { worker_connections 4096; }',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${d}; proxy_temp_path ${d}; fastcgi_temp_path ${d};`,
    `  uwsgi_temp_path ${d}; scgi_temp_path ${d};`,
    '  keepalive_requests 1000000; keepalive_timeout 300s;',
    `  server { listen ${port} reuseport backlog=4096; listen ${h2cPort} http2;`,
    `    location / { default_type text/plain; return 200 '${'x'.repeat(bodyBytes - 1)}\\n'; } }`,
    '}',
    '',
  ].join('\n');
}

/**
 * The start of an nginx reverse proxy's config with its files under `d`: one worker with room for
 * many connections, no access log, long keep-alive; the caller adds its upstream and servers and
 * closes the `http {` block.
 */
export function nginxProxyHead(d: string): string[] {
  return [
    `pid ${d}/nginx.pid;`,
    'worker_processes 1;',
    'worker_rlimit_nofile 20000;',
    'daemon off;',
    `error_log ${d}/error.log warn;`,
    'events { worker_connections 8192; }',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${d}; proxy_temp_path ${d}; fastcgi_temp_path ${d};`,
    `  uwsgi_temp_path ${d}; scgi_temp_path ${d};`,
    '  keepalive_requests 1000000; keepalive_timeout 300s;',
  ];
}

/** nginx as a reverse proxy: `listen` → upstream, HTTP/1.1 keep-alive both ways (h2c downstream too). */
export function nginxProxyConf(d: string, listen: number, h2cListen: number, upstream: string): string {
  return [
    ...nginxProxyHead(d),
    `  upstream backend { server ${upstream}; keepalive 512; keepalive_requests 1000000; }`,
    `  server { listen ${listen} backlog=4096; listen ${h2cListen} http2;`,
    '    location / { proxy_pass http://backend; proxy_http_version 1.1;',
    '      proxy_set_header Connection ""; proxy_buffering off; } }',
    '}',
    '',
  ].join('\n');
}

/** haproxy as a reverse proxy, one thread, HTTP mode with keep-alive and connection reuse. */
export function haproxyConf(d: string, listen: number, h2cListen: number, upstream: string): string {
  return [
    'global',
    '  nbthread 1',
    '  maxconn 9000',
    `  pidfile ${d}/haproxy.pid`,
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 300s',
    '  timeout server 300s',
    '  http-reuse always',
    'frontend weir_bench',
    `  bind :${listen}`,
    `  bind :${h2cListen} proto h2`,
    '  default_backend upstream',
    'backend upstream',
    `  server s1 ${upstream} maxconn 4096`,
    '',
  ].join('\n');
}

/** Starts a long-running peer with `prefix` (netns/cgroup entry) and waits until it listens. */
export async function startPeer(
  name: string,
  dir: string,
  prefix: string[],
  kind: 'nginx' | 'haproxy',
  conf: (d: string) => string,
  check: { prefix: string[]; host: string; port: number },
): Promise<HttpPeer> {
  const d = peerDir(dir, name);
  const file = join(d, `${kind}.conf`);
  writeFileSync(file, conf(d), { mode: 0o600 });
  const argv = kind === 'nginx' ? ['nginx', '-c', file, '-e', join(d, 'error.log')] : ['haproxy', '-f', file];
  const [cmd, ...args] = [...prefix, ...argv];
  const proc = spawn(cmd as string, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null)
      throw new WeirError('ERR_BENCH_PEER', `${kind} (${name}) exited ${proc.exitCode}: ${stderr}`);
    const probe = await run([...check.prefix, 'bash', '-c', `exec 3<>/dev/tcp/${check.host}/${check.port}`], {
      check: false,
      timeoutMs: 5_000,
    });
    if (probe.code === 0) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new WeirError(
        'ERR_BENCH_PEER',
        `${kind} (${name}) did not listen on ${check.host}:${check.port}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    name,
    proc,
    stop: async () => {
      if (proc.exitCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 3_000);
      await gone;
      clearTimeout(t);
    },
  };
}

export interface LoadResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx answers and socket errors: a run with any is not a clean measurement. */
  errors: number;
}

const unitMs: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

/** wrk --latency output → requests/s, p50, p99 (ms), errors. */
export function parseWrk(out: string): LoadResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    if (!m?.[1] || !m[2]) throw new WeirError('ERR_BENCH_OUTPUT', `wrk gave no p${p}: ${out.slice(-400)}`);
    return Math.round(Number(m[1]) * (unitMs[m[2]] ?? NaN) * 1000) / 1000;
  };
  if (!rps?.[1]) throw new WeirError('ERR_BENCH_OUTPUT', `wrk gave no Requests/sec: ${out.slice(-400)}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = Number(non2xx?.[1] ?? 0) + (sock ? sock.slice(1, 5).reduce((a, b) => a + Number(b), 0) : 0);
  return { requestsPerSecond: Number(rps[1]), p50Ms: pct('50'), p99Ms: pct('99'), errors };
}

/**
 * h2load output → requests/s, errors, and p50/p99 of request time. h2load prints mean/sd and
 * min/max only, so percentiles come from its per-request log (`--log-file`: one line per request,
 * the third column the request's duration in µs).
 */
export function parseH2load(out: string, log: string): LoadResult {
  const rps = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out);
  if (!rps?.[1]) throw new WeirError('ERR_BENCH_OUTPUT', `h2load gave no req/s: ${out.slice(-400)}`);
  const st = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
    out,
  );
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const errors =
    Number(st?.[2] ?? 0) + Number(st?.[3] ?? 0) + Number(codes?.[3] ?? 0) + Number(codes?.[4] ?? 0);
  const us = log
    .split('\n')
    .map((l) => Number(l.split('\t')[2]))
    .filter((n) => Number.isFinite(n) && n >= 0)
    .sort((a, b) => a - b);
  if (us.length === 0) throw new WeirError('ERR_BENCH_OUTPUT', 'h2load wrote no request log');
  const at = (p: number) => (us[Math.min(us.length - 1, Math.ceil((p / 100) * us.length) - 1)] ?? 0) / 1000;
  return { requestsPerSecond: Number(rps[1]), p50Ms: at(50), p99Ms: at(99), errors };
}

/** wrk with one thread, `connections` keep-alive connections, for `seconds` (`headers`: "Name: value"). */
export async function wrk(
  prefix: string[],
  url: string,
  connections: number,
  seconds: number,
  headers: string[] = [],
): Promise<LoadResult> {
  const h = headers.flatMap((x) => ['-H', x]);
  const out = await run(
    [...prefix, 'wrk', '-t1', `-c${connections}`, `-d${seconds}s`, '--latency', ...h, url],
    // On the loaded 2-core machine wrk sometimes exits 128 after printing a complete report (seen
    // with 256 connections, through any proxy): the report counts; no report is an error.
    { timeoutMs: (seconds + 30) * 1000, check: false },
  );
  if (out.code !== 0 && !/Requests\/sec:/.test(out.stdout))
    throw new WeirError(
      'ERR_BENCH_OUTPUT',
      `wrk exited ${out.code}: ${(out.stdout + out.stderr).slice(-400)}`,
    );
  return parseWrk(out.stdout);
}

/** h2load over h2c (prior knowledge): `clients` connections × `streams` concurrent streams. */
export async function h2load(
  prefix: string[],
  url: string,
  clients: number,
  streams: number,
  seconds: number,
  logDir: string,
): Promise<LoadResult> {
  const log = join(peerDir(logDir, 'h2load'), 'requests.log');
  const out = await run(
    [
      ...prefix,
      'h2load',
      '-c',
      String(clients),
      '-m',
      String(streams),
      '-D',
      String(seconds),
      '--log-file',
      log,
      url,
    ],
    { timeoutMs: (seconds + 30) * 1000 },
  );
  const text = await run(['cat', log], { timeoutMs: 10_000 });
  return parseH2load(out.stdout, text.stdout);
}
