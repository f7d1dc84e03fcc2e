// Micro-benchmark of the node proxy's HTTP engine on loopback, for the record (the full bench with
// wrk/h2load/nginx in the lab comes later): requests/s straight to an upstream, through a plain L4
// pipe (reference: no parsing), and through createHttpHandler (every request judged against an L7
// rule, its records and access-log line rendered as a proxy thread renders them), for HTTP/1.1 (wrk, 50 keep-alive connections) and HTTP/2 cleartext (h2load).
// The upstream is nginx when installed (else a node:http server); the pipe and the proxy run in
// child processes whose CPU time gives CPU µs per request (the steadiest figure on a shared box).
// With taskset, the proxy or pipe gets CPU 0, the load generator and the upstream CPU 1.
// Bounded: a few 5-second runs. Run: node dist/bench/micro/http-proxy.js [--seconds 5] [--rounds 3] [--h1-only]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PortL7Policy } from '../../src/policy/l7/types.js';
import { renderAccess } from '../../src/proxy/access-log.js';
import { createHttpHandler } from '../../src/proxy/http/handler.js';
import { recordLine } from '../../src/proxy/records.js';
import type { ProxiedConnection } from '../../src/proxy/types.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** The policy judged on every request: GET under /, plus a header rule (two rules, regex fast path). */
const POLICY: PortL7Policy = {
  protocol: 'TCP',
  port: 80,
  parser: 'http',
  proxyPort: 15001,
  ruleSets: [
    {
      http: [
        { method: 'POST', path: '/admin/.*', headers: ['X-Admin: yes'] },
        { method: 'GET', path: '/.*' },
      ],
      origin: { kind: 'CiliumNetworkPolicy', namespace: 'bench', name: 'l7', cookie: 1 },
    },
  ],
};

/** Child mode: serve the proxy (or an L4 pipe) towards an upstream port; print the listening port. */
async function serve(kind: 'proxy' | 'pipe', upPort: number): Promise<void> {
  // Records and access-log lines are rendered as a proxy thread does (worker.ts), then dropped.
  let rendered = 0;
  const handler = createHttpHandler({
    connector: (conn) => net.connect({ host: conn.dst.ip, port: conn.dst.port }),
    onRecord: (r) => void (rendered += recordLine(r).length),
    onAccess: (a) => void (rendered += renderAccess(a).length),
  });
  const server = net.createServer((socket) => {
    if (kind === 'pipe') {
      socket.setNoDelay(true);
      const u = net.connect(upPort, '127.0.0.1');
      u.setNoDelay(true);
      socket.pipe(u).pipe(socket);
      socket.on('error', () => u.destroy());
      u.on('error', () => socket.destroy());
      return;
    }
    const conn: ProxiedConnection = {
      direction: 'ingress',
      endpoint: { id: 1, identity: 2000, namespace: 'bench', pod: 'server' },
      remoteIdentity: 1000,
      src: { ip: socket.remoteAddress as string, port: socket.remotePort as number },
      dst: { ip: '127.0.0.1', port: upPort },
      policy: () => POLICY,
    };
    handler.handle(socket, conn);
  });
  server.listen(0, '127.0.0.1', () =>
    process.stdout.write(`${(server.address() as net.AddressInfo).port}\n`),
  );
  process.on('SIGTERM', () => process.exit(0));
}

interface Upstream {
  h1: number;
  h2: number | undefined;
  name: string;
  /** The server's process (taskset execs it: the same pid), when it is one. */
  pid?: number | undefined;
  stop(): void;
}

/**
 * One nginx worker in the foreground on two free ports (h1, h2) with its files in a fresh temporary
 * folder; `server(h1, h2)` writes what goes into the http block after the shared settings.
 */
async function startNginx(
  prefix: string,
  pin: string[],
  server: (h1: number, h2: number) => string,
): Promise<{ h1: number; h2: number; pid: number | undefined; stop(): void }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const [h1, h2] = [await freePort(), await freePort()];
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir};
  uwsgi_temp_path ${dir}; scgi_temp_path ${dir}; keepalive_requests 1000000;
${server(h1, h2)} }
`,
  );
  const p = spawn(
    pin[0] ?? 'nginx',
    [...pin.slice(1), ...(pin.length ? ['nginx'] : []), '-c', conf, '-p', dir],
    {
      stdio: 'ignore',
    },
  );
  await waitPort(h1);
  return {
    h1,
    h2,
    pid: p.pid,
    stop: () => {
      p.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** nginx as a reverse proxy to `upPort` (keep-alive upstream connections): the reference proxy. */
async function startNginxProxy(upPort: number, upH2: number | undefined, pin: string[]): Promise<Upstream> {
  const ngx = await startNginx(
    'weir-bench-nginx-proxy-',
    pin,
    (h1, h2) => `  upstream backend { server 127.0.0.1:${upPort}; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:${h1}; ${upH2 !== undefined ? `listen 127.0.0.1:${h2} http2;` : ''}
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } }`,
  );
  return { ...ngx, h2: upH2 !== undefined ? ngx.h2 : undefined, name: 'nginx proxy' };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function startUpstream(pin: string[]): Promise<Upstream> {
  if (have('nginx')) {
    const ngx = await startNginx(
      'weir-bench-nginx-',
      pin,
      (h1, h2) =>
        `  server { listen 127.0.0.1:${h1}; listen 127.0.0.1:${h2} http2; location / { return 200 "hello world\\n"; } }`,
    );
    return { h1: ngx.h1, h2: ngx.h2, name: 'nginx 1 worker', stop: ngx.stop };
  }
  const server = http.createServer((_req, res) => res.end('hello world\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    h1: (server.address() as net.AddressInfo).port,
    h2: undefined,
    name: 'node:http',
    stop: () => server.close(),
  };
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

async function child(
  kind: 'proxy' | 'pipe',
  upPort: number,
  pin: string[],
  script = fileURLToPath(import.meta.url),
): Promise<{ p: ChildProcess; port: number }> {
  // WEIR_BENCH_PROXY_NODE_ARGS: node flags for the proxy children (e.g. --max-semi-space-size=16).
  const flags = (process.env.WEIR_BENCH_PROXY_NODE_ARGS ?? '').split(' ').filter((f) => f !== '');
  const cmd = [...pin, process.execPath, ...flags, script, '--serve', kind, String(upPort)];
  const p = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) =>
    p.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))),
  );
  return { p, port };
}

/** CPU seconds (user + system) of a process so far. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

interface Run {
  rps: number;
  cpuUsPerReq?: number;
  /** wrk --latency (HTTP/1.1 runs), ms. */
  p50Ms?: number;
  p99Ms?: number;
}

const unitMs: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };
/** A percentile line of wrk --latency ("     99%    1.23ms") in ms. */
function wrkPercentile(out: string, p: string): number | undefined {
  const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
  return m ? Number(m[1]) * (unitMs[m[2] as string] ?? 1) : undefined;
}

function load(kind: 'h1' | 'h2', port: number, seconds: number, pin: string[], pid?: number): Run {
  const before = pid ? cpuSeconds(pid) : 0;
  const cmd =
    kind === 'h1'
      ? ['wrk', '-t1', '-c50', `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/bench/x`]
      : ['h2load', '-c10', '-m10', `-D${seconds}`, `http://127.0.0.1:${port}/bench/x`];
  const all = [...pin, ...cmd];
  const out = spawnSync(all[0] as string, all.slice(1), {
    encoding: 'utf8',
    timeout: (seconds + 20) * 1000,
  }).stdout;
  let rps = 0;
  let total = 0;
  if (kind === 'h1') {
    rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
    total = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  } else {
    rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
    total = Number(/requests: \d+ total, \d+ started, (\d+) done/.exec(out)?.[1] ?? 0);
  }
  const run: Run = { rps };
  if (kind === 'h1') {
    const p50 = wrkPercentile(out, '50');
    const p99 = wrkPercentile(out, '99');
    if (p50 !== undefined) run.p50Ms = p50;
    if (p99 !== undefined) run.p99Ms = p99;
  }
  if (pid && total > 0) run.cpuUsPerReq = ((cpuSeconds(pid) - before) * 1e6) / total;
  return run;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function main(): Promise<void> {
  const si = process.argv.indexOf('--serve');
  if (si > 0) return serve(process.argv[si + 1] as 'proxy' | 'pipe', Number(process.argv[si + 2]));
  const seconds = arg('--seconds', 5);
  const rounds = arg('--rounds', 3);
  if (!have('wrk')) throw new Error('wrk is needed (apt-get install wrk)');
  const pinned = have('taskset');
  const cpu0 = pinned ? ['taskset', '-c', '0'] : [];
  const cpu1 = pinned ? ['taskset', '-c', '1'] : [];
  const up = await startUpstream(cpu1);
  const proxy = await child('proxy', up.h1, cpu0);
  const pipe = await child('pipe', up.h1, cpu0);
  // --h1-only: no HTTP/2 runs.
  const proxy2 =
    up.h2 !== undefined && !process.argv.includes('--h1-only')
      ? await child('proxy', up.h2, cpu0)
      : undefined;
  // WEIR_BENCH_PROXY_B: this script of another build (dist/bench/micro/http-proxy.js): its HTTP/1.1
  // proxy runs beside this one, taking turns, for an A/B of two builds under the same load.
  const otherBuild = process.env.WEIR_BENCH_PROXY_B;
  const proxyB = otherBuild ? await child('proxy', up.h1, cpu0, otherBuild) : undefined;
  const ngx = have('nginx') ? await startNginxProxy(up.h1, up.h2, cpu0) : undefined;
  // Its own pid (a pgrep for its command line could find another process, even its own shell).
  const ngxPid = () => ngx?.pid;
  const rows: Record<string, Run[]> = {};
  const add = (k: string, r: Run) => (rows[k] ??= []).push(r);
  try {
    // Warm-up (JIT, pools).
    load('h1', proxy.port, 2, cpu1);
    if (proxyB) load('h1', proxyB.port, 2, cpu1);
    if (proxy2 && have('h2load')) load('h2', proxy2.port, 2, cpu1);
    for (let i = 0; i < rounds; i++) {
      add('HTTP/1.1 direct', load('h1', up.h1, seconds, cpu1));
      add('HTTP/1.1 L4 pipe (node)', load('h1', pipe.port, seconds, cpu1, pipe.p.pid));
      if (ngx) add('HTTP/1.1 nginx proxy', load('h1', ngx.h1, seconds, cpu1, ngxPid()));
      add('HTTP/1.1 weir proxy (L7 judged)', load('h1', proxy.port, seconds, cpu1, proxy.p.pid));
      if (proxyB) add('HTTP/1.1 weir proxy, build B', load('h1', proxyB.port, seconds, cpu1, proxyB.p.pid));
      if (proxy2 && up.h2 !== undefined && have('h2load')) {
        add('HTTP/2 direct', load('h2', up.h2, seconds, cpu1));
        if (ngx?.h2 !== undefined)
          add('HTTP/2 nginx proxy (HTTP/1.1 upstream)', load('h2', ngx.h2, seconds, cpu1, ngxPid()));
        add(
          'HTTP/2 weir proxy (L7 judged, HTTP/2 upstream)',
          load('h2', proxy2.port, seconds, cpu1, proxy2.p.pid),
        );
      }
    }
  } finally {
    for (const c of [proxy, pipe, proxy2, proxyB]) c?.p.kill('SIGTERM');
    ngx?.stop();
    up.stop();
  }
  console.log(
    `upstream: ${up.name}; ${rounds} rounds of ${seconds} s; ${pinned ? 'proxy/pipe on CPU 0, load+upstream on CPU 1' : 'unpinned'}`,
  );
  console.log(
    '| path | req/s (median) | CPU µs/request (median) | p50 / p99 ms (median, wrk) | runs (req/s) |',
  );
  console.log('| --- | --- | --- | --- | --- |');
  for (const [k, rs] of Object.entries(rows)) {
    const cpu = rs.map((r) => r.cpuUsPerReq).filter((x): x is number => x !== undefined);
    const p50 = rs.map((r) => r.p50Ms).filter((x): x is number => x !== undefined);
    const p99 = rs.map((r) => r.p99Ms).filter((x): x is number => x !== undefined);
    const lat = p99.length ? `${median(p50).toFixed(2)} / ${median(p99).toFixed(2)}` : '-';
    console.log(
      `| ${k} | ${median(rs.map((r) => r.rps)).toFixed(0)} | ${cpu.length ? median(cpu).toFixed(1) : '-'} | ${lat} | ${rs.map((r) => r.rps.toFixed(0)).join(', ')} |`,
    );
  }
}

await main();
