// The node proxy's admin API: HTTP/1.1 with JSON bodies over a unix socket only root may open
// (mode 0600 in a 0700 directory). The agent is its only client:
//   PUT /v1/snapshot  {snapshot: ProxySnapshot, listeners: {ingress, egress}}  -> {version}
//                     applies the L7 policy, then (re)opens the listeners; the answer is the
//                     acknowledgement of the version the proxy runs from now on
//   GET /v1/status    pid, version, listeners, connections and counters (ProxyStatus)
//   GET /metrics      Prometheus text
//   GET /v1/records   NDJSON stream of L7 records ({record} | {lost}); one reader at a time
//   PUT /v1/tunnel    TunnelConfig (--encryption mtls: SVIDs, CA, ports) -> {version}; opens the
//                     mTLS tunnel listeners (tunnel.ts)
//   POST /v1/fqdn/forget  the DNS proxy forgets what it knew the agent's FQDN cache holds (the
//                     agent lost entries: cache clean, restart) -> {forgotten}
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import { httpStatus } from '../shared/error-codes.js';
import { privateDirSync } from '../shared/private-fs.js';
import { WeirError } from '../shared/errors.js';
import type { ProxyMetrics } from './metrics.js';
import type { RecordQueue } from './records.js';
import type { ListenerPorts, ProxyServer } from './server.js';
import { parseSnapshot } from './snapshot.js';
import { parseGatewaySnapshot, type GatewayServer } from './gateway/server.js';
import type { ProxyWorkers } from './workers.js';
import { parseTunnelConfig, type TunnelProxy, type TunnelStatus } from './tunnel.js';

export interface ProxyStatus {
  pid: number;
  lab: string;
  /** The handler of ports with HTTP rules. */
  handler: string;
  startedAt: string;
  /** The snapshot version running; null before the first one (no listener yet). */
  version: number | null;
  listeners: Partial<ListenerPorts>;
  connections: { ingress: number; egress: number };
  redirects: { ingress: number; egress: number };
  unresolved: { ingress: number; egress: number };
  upstreamConnectErrors: { ingress: number; egress: number };
  /** HTTP requests by direction: judged, forwarded, denied (403), refused before judging. */
  requests?: Record<
    'ingress' | 'egress',
    { received: number; forwarded: number; denied: number; parseErrors: number }
  >;
  /** Requests answered 502/504 because the upstream failed. */
  upstreamRequestErrors?: { ingress: number; egress: number };
  records: { sent: number; lost: number; waiting: number };
  /** The access log (one JSON line per request). */
  accessLog?: { path: string; lines: number; errors: number; rotations: number };
  /**
   * toFQDNs learning: addresses known held by the agent; answers released without asking it
   * (skipped) or after it (waited); requests (batches) and renewals sent; entries forgotten.
   */
  fqdn?: { known: number } & Record<string, number>;
  /** Connections each proxy thread accepted since start (main thread first; workers.ts). */
  threads?: { redirects: number[] };
  /** --encryption mtls: the tunnels between the nodes' proxies (tunnel.ts). */
  tunnel?: TunnelStatus;
}

export interface AdminContext {
  lab: string;
  handler: string;
  startedAt: string;
  server: ProxyServer;
  metrics: ProxyMetrics;
  records: RecordQueue;
  accessLog?: { path: string; stats(): { lines: number; errors: number; rotations: number } };
  /** The Gateway data plane (north-south listeners on the Gateways' addresses). */
  gateway?: GatewayServer;
  /** The DNS proxy's record of what the agent's FQDN cache holds. */
  fqdn?: { forget(): number; size(): number; stats: Record<string, number> };
  /** The extra proxy threads (workers.ts), when there are some. */
  workers?: ProxyWorkers;
  /** The mTLS tunnels between nodes (--encryption mtls). */
  tunnel?: TunnelProxy;
}

const maxBody = 64 << 20;

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBody) throw new WeirError('ERR_PROXY_BODY_TOO_LARGE', `request body over ${maxBody} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new WeirError('ERR_PROXY_BAD_JSON', 'request body is not JSON', { cause: err });
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

function portsOf(v: unknown): ListenerPorts {
  const p = v as Partial<ListenerPorts> | undefined;
  const ok = (n: unknown) => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;
  if (!p || !ok(p.ingress) || !ok(p.egress) || p.ingress === p.egress)
    throw new WeirError('ERR_PROXY_LISTENERS', 'listeners must be {ingress, egress}: two different ports', {
      location: { field: 'listeners' },
    });
  if (p.dns !== undefined && (!ok(p.dns) || p.dns === p.ingress || p.dns === p.egress))
    throw new WeirError('ERR_PROXY_LISTENERS', 'listeners.dns must be a port of its own', {
      location: { field: 'listeners.dns' },
    });
  if (p.dnsRejectCode !== undefined && p.dnsRejectCode !== 'refused' && p.dnsRejectCode !== 'nameError')
    throw new WeirError('ERR_PROXY_LISTENERS', "listeners.dnsRejectCode must be 'refused' or 'nameError'", {
      location: { field: 'listeners.dnsRejectCode' },
    });
  return {
    ingress: p.ingress as number,
    egress: p.egress as number,
    ...(p.dns !== undefined ? { dns: p.dns } : {}),
    ...(p.dnsRejectCode !== undefined ? { dnsRejectCode: p.dnsRejectCode } : {}),
  };
}

export async function status(c: AdminContext): Promise<ProxyStatus> {
  await c.workers?.flush();
  const byDir = async (m: Parameters<ProxyMetrics['value']>[0]) => ({
    ingress: await c.metrics.value(m, 'ingress'),
    egress: await c.metrics.value(m, 'egress'),
  });
  return {
    pid: process.pid,
    lab: c.lab,
    handler: c.handler,
    startedAt: c.startedAt,
    version: c.server.snapshots.version ?? null,
    listeners: c.server.ports(),
    connections: sumDirections(c.server.active(), c.workers?.active()),
    redirects: await byDir(c.metrics.redirects),
    unresolved: await byDir(c.metrics.unresolved),
    upstreamConnectErrors: await byDir(c.metrics.upstreamErrors),
    requests: {
      ingress: await requestsOf(c.metrics, 'ingress'),
      egress: await requestsOf(c.metrics, 'egress'),
    },
    upstreamRequestErrors: {
      ingress: await c.metrics.sum(c.metrics.upstreamRequestErrors, { direction: 'ingress' }),
      egress: await c.metrics.sum(c.metrics.upstreamRequestErrors, { direction: 'egress' }),
    },
    records: { sent: c.records.sent, lost: c.records.lost, waiting: c.records.waiting },
    ...(c.accessLog ? { accessLog: { path: c.accessLog.path, ...c.accessLog.stats() } } : {}),
    ...(c.fqdn ? { fqdn: { known: c.fqdn.size(), ...c.fqdn.stats } } : {}),
    ...(c.workers ? { threads: { redirects: await threadRedirects(c, c.workers) } } : {}),
    ...(c.tunnel && c.tunnel.status().version !== null ? { tunnel: c.tunnel.status() } : {}),
  };
}

function sumDirections(
  a: { ingress: number; egress: number },
  b: { ingress: number; egress: number } | undefined,
): { ingress: number; egress: number } {
  return b ? { ingress: a.ingress + b.ingress, egress: a.egress + b.egress } : a;
}

async function threadRedirects(c: AdminContext, w: ProxyWorkers): Promise<number[]> {
  const all = await c.metrics.sum(c.metrics.redirects, {});
  const workers = w.redirects();
  return [all - workers.reduce((a, b) => a + b, 0), ...workers];
}

async function requestsOf(m: ProxyMetrics, direction: string) {
  const n = (rule: string) => m.sum(m.policyL7, { direction, rule });
  return {
    received: await n('received'),
    forwarded: await n('forwarded'),
    denied: await n('denied'),
    parseErrors: await n('parse_errors'),
  };
}

async function route(c: AdminContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://weir').pathname;
  const method = req.method ?? 'GET';
  if (method === 'GET' && path === '/v1/status') return send(res, 200, await status(c));
  if (method === 'GET' && path === '/metrics') {
    await c.workers?.flush();
    const text = await c.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': c.metrics.registry.contentType });
    res.end(text);
    return;
  }
  if (method === 'PUT' && path === '/v1/snapshot') {
    const body = (await readJson(req)) as { snapshot?: unknown; listeners?: unknown };
    const listeners = portsOf(body?.listeners);
    const snapshot = parseSnapshot(body?.snapshot);
    // Policy first: a connection the new listeners accept must find it.
    c.server.snapshots.apply(snapshot);
    await c.server.listen(listeners);
    await c.workers?.apply(snapshot, listeners);
    return send(res, 200, { version: snapshot.version });
  }
  if (method === 'PUT' && path === '/v1/tunnel') {
    if (!c.tunnel) throw new WeirError('ERR_PROXY_NOT_FOUND', 'this proxy runs no tunnel');
    const cfg = parseTunnelConfig((await readJson(req)) as unknown);
    await c.tunnel.apply(cfg);
    return send(res, 200, { version: cfg.version });
  }
  if (method === 'PUT' && path === '/v1/gateway') {
    if (!c.gateway) throw new WeirError('ERR_PROXY_NOT_FOUND', 'this proxy runs no gateway');
    const snapshot = parseGatewaySnapshot((await readJson(req)) as unknown);
    await c.gateway.apply(snapshot);
    return send(res, 200, { version: snapshot.version, listening: c.gateway.listening() });
  }
  if (method === 'GET' && path === '/v1/gateway') {
    if (!c.gateway) throw new WeirError('ERR_PROXY_NOT_FOUND', 'this proxy runs no gateway');
    return send(res, 200, {
      version: c.gateway.version,
      listening: c.gateway.listening(),
      stats: c.gateway.stats,
    });
  }
  if (method === 'POST' && path === '/v1/fqdn/forget')
    return send(res, 200, { forgotten: c.fqdn?.forget() ?? 0 });
  if (method === 'GET' && path === '/v1/records') {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.flushHeaders();
    const detach = c.records.attach(res);
    res.on('close', detach);
    return;
  }
  send(res, 404, { error: { code: 'ERR_PROXY_NOT_FOUND', message: `no route ${method} ${path}` } });
}

export async function listenAdmin(socketPath: string, c: AdminContext): Promise<Server> {
  privateDirSync(dirname(socketPath));
  rmSync(socketPath, { force: true });
  const server = createServer((req, res) => {
    route(c, req, res).catch((err: unknown) => {
      const e =
        err instanceof WeirError
          ? { code: err.code, message: err.message, location: err.location, details: err.details }
          : { code: 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
      const code = err instanceof WeirError ? httpStatus(err.code) : 500;
      if (!res.headersSent) send(res, code, { error: e });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return server;
}
