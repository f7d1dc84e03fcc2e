// The Gateway data plane of the node proxy (north-south): listeners on the Gateways' addresses
// (plain sockets in the node's namespace — the addresses are the node's, like a LoadBalancer's
// VIP on the node), every request served from the compiled route table of its address and port
// (src/gateway: listener by Host, rule by precedence, backend by weight, filters), forwarded to a
// ready endpoint of the chosen Service port, with the rule's timeouts and retries.
//
//   socket ─ sniff ─┬─ HTTP/1.1: node:http server ─┐
//                   └─ h2c:      node:http2 server ─┴─ route ─ 404 | 3xx | 500 | CORS | upstream (h1 or h2c)
//
// The agent pushes a GatewaySnapshot (tables + endpoints per Service port) through the admin API.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, {
  type ClientHttp2Session,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { CompiledBackend, GatewayPortTable, MeshPortTable, TableEntry } from '../../gateway/compile.js';
import {
  applyHeaderOps,
  routeGateway,
  routeMesh,
  type RouteDecision,
  type RouteRequest,
} from '../../gateway/route.js';
import { WeirError } from '../../shared/errors.js';
import type { L7Record } from '../types.js';

/** A Service port redirected to the proxy (GAMMA): its routes, served on address:listenPort. */
export interface MeshListener extends MeshPortTable {
  address: string;
  listenPort: number;
}

export interface GatewaySnapshot {
  version: number;
  ports: GatewayPortTable[];
  mesh: MeshListener[];
  /** "ns/name:port" of a Service port → its ready endpoints "ip:port". */
  endpoints: Record<string, string[]>;
  /** Pod IP → namespace: the client's namespace picks a mesh route's consumer routes. */
  pods: Record<string, string>;
}

const snapshotSchema = z.object({
  version: z.number().int().nonnegative(),
  ports: z.array(
    z.looseObject({ gateway: z.string(), port: z.number().int(), address: z.string().optional() }),
  ),
  mesh: z.array(
    z.looseObject({
      service: z.string(),
      port: z.number().int(),
      address: z.string(),
      listenPort: z.number().int(),
    }),
  ),
  endpoints: z.record(z.string(), z.array(z.string())),
  pods: z.record(z.string(), z.string()),
});

export function parseGatewaySnapshot(body: unknown): GatewaySnapshot {
  const r = snapshotSchema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new WeirError('ERR_PROXY_SNAPSHOT_INVALID', `gateway snapshot: ${issue?.message ?? 'invalid'}`, {
      location: { object: 'GatewaySnapshot', field: issue?.path.join('.') ?? '' },
    });
  }
  return r.data as unknown as GatewaySnapshot;
}

export interface GatewayStats {
  requests: number;
  /** Answered 429 by a BackendTrafficPolicy's local rate limit. */
  rateLimited: number;
  /** Answered 503 because a circuit breaker's maxParallelRequests was reached. */
  circuitOpen: number;
  byCode: Record<string, number>;
  retries: number;
  upstreamErrors: number;
  timeouts: number;
}

type AnyReq = IncomingMessage | Http2ServerRequest;
type AnyRes = ServerResponse | Http2ServerResponse;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** Bodies kept for retries and mirrors; a longer body is streamed once, without either. */
const MAX_BUFFERED_BODY = 1 << 20;
/** Envoy's default base interval between retries. */
const DEFAULT_BACKOFF_MS = 25;
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'http2-settings',
  'host',
]);

export interface GatewayServerOptions {
  log: Logger;
  onRecord?(r: L7Record): void;
}

export class GatewayServer {
  #snap: GatewaySnapshot = { version: 0, ports: [], mesh: [], endpoints: {}, pods: {} };
  readonly #servers = new Map<string, Server>();
  readonly #sockets = new Set<Socket>();
  readonly #h1: http.Server;
  readonly #h2: http2.Http2Server;
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  readonly #h2Sessions = new Map<string, ClientHttp2Session>();
  readonly stats: GatewayStats = {
    requests: 0,
    rateLimited: 0,
    circuitOpen: 0,
    byCode: {},
    retries: 0,
    upstreamErrors: 0,
    timeouts: 0,
  };
  /** Local rate-limit buckets by policy and rule (Envoy's token bucket, refilled each unit). */
  readonly #buckets = new Map<string, { tokens: number; windowStart: number }>();
  /** Requests in flight by policy and backend (the circuit breaker's parallel requests). */
  readonly #inFlight = new Map<string, number>();

  constructor(private readonly o: GatewayServerOptions) {
    this.#h1 = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) =>
      this.#serve(req, res, 'HTTP/1.1'),
    );
    this.#h2 = http2.createServer({}, (req, res) => this.#serve(req, res, 'HTTP/2'));
    this.#h1.on('clientError', (_err, socket) => socket.destroy());
  }

  get version(): number {
    return this.#snap.version;
  }

  /** Addresses and ports listened on now ("ip:port"). */
  listening(): string[] {
    return [...this.#servers.keys()].sort();
  }

  /** Runs `s` from now on: listeners opened for new address:port pairs, closed for gone ones. */
  async apply(s: GatewaySnapshot): Promise<void> {
    if (s.version < this.#snap.version)
      throw new WeirError(
        'ERR_PROXY_SNAPSHOT_STALE',
        `gateway snapshot ${s.version} is older than ${this.#snap.version}`,
        {
          details: { version: this.#snap.version },
        },
      );
    const want = new Set([
      ...s.ports.filter((p) => p.address).map((p) => `${p.address}:${p.port}`),
      ...s.mesh.map((m) => `${m.address}:${m.listenPort}`),
    ]);
    for (const k of want) {
      if (this.#servers.has(k)) continue;
      const [ip, port] = splitHostPort(k);
      const server = createServer({ allowHalfOpen: false }, (sock) => this.#accept(sock));
      server.on('error', (err) => this.o.log.error({ err, listen: k }, 'gateway listener error'));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: ip, port }, () => {
          server.off('error', reject);
          resolve();
        });
      }).catch((err: Error) => {
        throw new WeirError('ERR_PROXY_LISTEN', `gateway cannot listen on ${k}: ${err.message}`);
      });
      this.#servers.set(k, server);
      this.o.log.info({ listen: k }, 'gateway listening');
    }
    this.#snap = s;
    for (const [k, server] of this.#servers)
      if (!want.has(k)) {
        server.close();
        this.#servers.delete(k);
        this.o.log.info({ listen: k }, 'gateway listener closed');
      }
  }

  #accept(sock: Socket): void {
    this.#sockets.add(sock);
    sock.once('close', () => this.#sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.once('readable', () => {
      const first = sock.read() as Buffer | null;
      if (!first) return void sock.destroy();
      sock.unshift(first);
      const n = Math.min(first.length, PREFACE.length);
      if (first.compare(PREFACE, 0, n, 0, n) === 0) this.#h2.emit('connection', sock);
      else this.#h1.emit('connection', sock);
    });
  }

  #table(localAddress: string | undefined, localPort: number | undefined): GatewayPortTable | undefined {
    const ip = (localAddress ?? '').replace(/^::ffff:/, '');
    return this.#snap.ports.find((p) => p.address === ip && p.port === localPort);
  }

  #mesh(localAddress: string | undefined, localPort: number | undefined): MeshListener | undefined {
    const ip = (localAddress ?? '').replace(/^::ffff:/, '');
    return this.#snap.mesh.find((m) => m.address === ip && m.listenPort === localPort);
  }

  async #serve(req: AnyReq, res: AnyRes, protocol: 'HTTP/1.1' | 'HTTP/2'): Promise<void> {
    const started = performance.now();
    this.stats.requests++;
    const sock = req.socket;
    const table = this.#table(sock.localAddress, sock.localPort);
    const headers: Record<string, string[]> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const k = (req.rawHeaders[i] ?? '').toLowerCase();
      if (k.startsWith(':')) continue;
      (headers[k] ??= []).push(req.rawHeaders[i + 1] ?? '');
    }
    const authority = (req as Http2ServerRequest).authority ?? headers.host?.[0] ?? '';
    delete headers.host;
    const rreq: RouteRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      host: authority,
      headers,
      scheme: 'http',
    };
    const mesh = table ? undefined : this.#mesh(sock.localAddress, sock.localPort);
    if (mesh) {
      const ns = this.#snap.pods[(sock.remoteAddress ?? '').replace(/^::ffff:/, '')];
      if (ns) rreq.fromNamespace = ns;
    }
    const d: RouteDecision = table
      ? routeGateway(table, rreq)
      : mesh
        ? mesh.entries.length > 0
          ? routeMesh(mesh, rreq)
          : passThrough(mesh, rreq)
        : { kind: 'no-route', status: 404, reason: 'no gateway listens here' };
    const done = (code: number, backend?: CompiledBackend, detail?: string) => {
      this.stats.byCode[code] = (this.stats.byCode[code] ?? 0) + 1;
      this.o.onRecord?.(
        this.#record(req, rreq, protocol, code, d, backend, performance.now() - started, detail),
      );
    };
    switch (d.kind) {
      case 'no-route':
        return void this.#local(res, 404, d.reason, done);
      case 'error':
        return void this.#local(res, 500, d.reason, done, d.backend);
      case 'redirect':
        res.writeHead(d.status, { location: d.location, 'content-length': '0' });
        res.end();
        return void done(d.status);
      case 'cors-preflight':
        res.writeHead(200, Object.fromEntries(d.headers.map(([k, v]) => [k, v])));
        res.end();
        return void done(200);
      case 'forward': {
        const p = d.entry.policy;
        const extra: Record<string, string> = {};
        if (p?.rateLimit) {
          const rl = p.rateLimit;
          const k = `${p.policy}|${d.entry.route.namespace}/${d.entry.route.name}|${d.entry.ruleIndex}`;
          const now = performance.now();
          let b = this.#buckets.get(k);
          if (!b) this.#buckets.set(k, (b = { tokens: rl.requests, windowStart: now }));
          if (now - b.windowStart >= rl.unitMs) {
            b.tokens = rl.requests;
            b.windowStart = now - ((now - b.windowStart) % rl.unitMs);
          }
          const reset = String(Math.max(1, Math.ceil((b.windowStart + rl.unitMs - now) / 1000)));
          extra['x-ratelimit-limit'] = String(rl.requests);
          extra['x-ratelimit-reset'] = reset;
          if (b.tokens <= 0) {
            this.stats.rateLimited++;
            extra['x-ratelimit-remaining'] = '0';
            res.writeHead(429, { ...extra, 'content-type': 'text/plain', 'content-length': '19' });
            res.end('local_rate_limited\n');
            return void done(429, d.backend, 'local_rate_limited');
          }
          b.tokens--;
          extra['x-ratelimit-remaining'] = String(b.tokens);
        }
        const max = p?.circuitBreaker?.maxParallelRequests;
        const ck = p ? `${p.policy}|${d.backend.namespace}/${d.backend.name}:${d.backend.port}` : '';
        if (max !== undefined) {
          const n = this.#inFlight.get(ck) ?? 0;
          if (n >= max) {
            this.stats.circuitOpen++;
            res.writeHead(503, {
              'x-envoy-overloaded': 'true',
              'content-type': 'text/plain',
              'content-length': '17',
            });
            res.end('upstream overflow');
            return void done(503, d.backend, 'upstream_overflow');
          }
          this.#inFlight.set(ck, n + 1);
        }
        try {
          // The rate limit's headers go on the upstream's response too.
          const withHeaders = { ...d, corsHeaders: [...d.corsHeaders, ...Object.entries(extra)] };
          return await this.#forward(req, res, withHeaders, done);
        } finally {
          if (max !== undefined) this.#inFlight.set(ck, (this.#inFlight.get(ck) ?? 1) - 1);
        }
      }
    }
  }

  #local(
    res: AnyRes,
    code: number,
    reason: string,
    done: (c: number, b?: CompiledBackend, detail?: string) => void,
    b?: CompiledBackend,
  ) {
    const body = `${reason}\n`;
    if (!res.headersSent) {
      res.writeHead(code, {
        'content-type': 'text/plain',
        'content-length': String(Buffer.byteLength(body)),
      });
      res.end(body);
    } else res.destroy();
    done(code, b, reason);
  }

  async #forward(
    req: AnyReq,
    res: AnyRes,
    d: Extract<RouteDecision, { kind: 'forward' }>,
    done: (c: number, b?: CompiledBackend, detail?: string) => void,
  ) {
    const e = d.entry;
    const isGrpc =
      e.route.kind === 'GRPCRoute' || (req.headers['content-type'] ?? '').startsWith('application/grpc');
    const h2c = isGrpc || d.backend.appProtocol === 'kubernetes.io/h2c';
    // The body, buffered when small enough to be sent again (retries, mirrors).
    const chunks: Buffer[] = [];
    let size = 0;
    let streamed = false;
    const canRetry = !!e.retry || d.mirrors.length > 0;
    if (canRetry && !isGrpc) {
      for await (const c of req as AsyncIterable<Buffer>) {
        size += c.length;
        if (size > MAX_BUFFERED_BODY)
          return void this.#local(res, 413, 'request body too large to retry', done, d.backend);
        chunks.push(c);
      }
    } else streamed = true;
    const body = Buffer.concat(chunks);
    for (const m of d.mirrors) {
      if (m.invalid) continue;
      const ep = this.#pick(`${m.namespace}/${m.name}:${m.port}`);
      if (ep) this.#mirror(ep, d.request, body);
    }
    const attempts = 1 + (e.retry?.attempts ?? 0);
    const deadline = e.timeouts.request !== undefined ? performance.now() + e.timeouts.request : Infinity;
    let lastCode = 503;
    let lastDetail = 'no ready endpoint';
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        this.stats.retries++;
        const backoff = e.retry?.backoffMs ?? DEFAULT_BACKOFF_MS;
        await new Promise((r) => setTimeout(r, Math.min(backoff * 2 ** (attempt - 1), 10 * backoff)));
      }
      const ep = this.#pick(`${d.backend.namespace}/${d.backend.name}:${d.backend.port}`);
      if (!ep) break;
      const left = deadline - performance.now();
      if (left <= 0) {
        lastCode = 504;
        lastDetail = 'request timeout';
        break;
      }
      const perTry = Math.min(left, e.timeouts.backendRequest ?? Infinity);
      const r = await (h2c
        ? this.#h2Attempt(ep, d, req, res, streamed ? undefined : body, perTry, attempt === attempts - 1)
        : this.#h1Attempt(ep, d, req, res, streamed ? undefined : body, perTry, attempt === attempts - 1));
      if (r.kind === 'sent') return void done(r.code, d.backend);
      lastCode = r.code;
      lastDetail = r.detail;
      if (streamed) break;
      if (r.kind === 'timeout') break;
    }
    if (lastCode === 504) this.stats.timeouts++;
    else this.stats.upstreamErrors++;
    this.#local(res, lastCode, lastDetail, done, d.backend);
  }

  #pick(key: string): { ip: string; port: number } | undefined {
    const eps = this.#snap.endpoints[key] ?? [];
    if (eps.length === 0) return undefined;
    const [ip, port] = splitHostPort(eps[Math.floor(Math.random() * eps.length)] ?? '');
    return { ip, port };
  }

  #upstreamHeaders(d: Extract<RouteDecision, { kind: 'forward' }>, src: AnyReq): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(d.request.headers)) if (!hopByHop.has(k)) out[k] = v.join(', ');
    const xff = src.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '';
    out['x-forwarded-for'] = out['x-forwarded-for'] ? `${out['x-forwarded-for']}, ${xff}` : xff;
    out['x-forwarded-proto'] = 'http';
    return out;
  }

  /** One HTTP/1.1 attempt. 'sent': the response went to the client; otherwise it may be retried. */
  #h1Attempt(
    ep: { ip: string; port: number },
    d: Extract<RouteDecision, { kind: 'forward' }>,
    req: AnyReq,
    res: AnyRes,
    body: Buffer | undefined,
    timeoutMs: number,
    last: boolean,
  ): Promise<{ kind: 'sent' | 'retry' | 'timeout'; code: number; detail: string }> {
    return new Promise((resolve) => {
      const headers = { ...this.#upstreamHeaders(d, req), host: d.request.host };
      const up = http.request({
        host: ep.ip,
        port: ep.port,
        method: d.request.method,
        path: d.request.path,
        headers,
        agent: this.#agent,
      });
      let timer: NodeJS.Timeout | undefined;
      if (Number.isFinite(timeoutMs))
        timer = setTimeout(() => {
          up.destroy();
          settle({ kind: 'timeout', code: 504, detail: 'upstream request timeout' });
        }, timeoutMs);
      let settled = false;
      const settle = (r: { kind: 'sent' | 'retry' | 'timeout'; code: number; detail: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      up.on('error', (err) =>
        settle({ kind: 'retry', code: 503, detail: `upstream connect error or reset: ${err.message}` }),
      );
      up.on('response', (ur) => {
        const code = ur.statusCode ?? 502;
        if (!last && d.entry.retry?.codes.includes(code)) {
          ur.resume();
          return settle({ kind: 'retry', code, detail: `upstream answered ${code}` });
        }
        const h: Record<string, string[]> = {};
        for (let i = 0; i < ur.rawHeaders.length; i += 2) {
          const k = (ur.rawHeaders[i] ?? '').toLowerCase();
          if (hopByHop.has(k)) continue;
          (h[k] ??= []).push(ur.rawHeaders[i + 1] ?? '');
        }
        for (const ops of d.responseHeaders) applyHeaderOps(h, ops);
        for (const [k, v] of d.corsHeaders) h[k] = [v];
        clearTimeout(timer);
        res.writeHead(code, flatten(h, res));
        ur.pipe(res as NodeJS.WritableStream);
        ur.on('error', () => res.destroy());
        settle({ kind: 'sent', code, detail: '' });
      });
      if (body) up.end(body);
      else (req as NodeJS.ReadableStream).pipe(up);
    });
  }

  #session(ep: { ip: string; port: number }): ClientHttp2Session {
    const k = `${ep.ip}:${ep.port}`;
    let s = this.#h2Sessions.get(k);
    if (!s || s.closed || s.destroyed) {
      s = http2.connect(`http://${k.includes(':') && ep.ip.includes(':') ? `[${ep.ip}]:${ep.port}` : k}`);
      s.on('error', () => undefined);
      s.once('close', () => {
        if (this.#h2Sessions.get(k) === s) this.#h2Sessions.delete(k);
      });
      this.#h2Sessions.set(k, s);
    }
    return s;
  }

  /** One h2c attempt (gRPC and appProtocol kubernetes.io/h2c), trailers relayed. */
  #h2Attempt(
    ep: { ip: string; port: number },
    d: Extract<RouteDecision, { kind: 'forward' }>,
    req: AnyReq,
    res: AnyRes,
    body: Buffer | undefined,
    timeoutMs: number,
    last: boolean,
  ): Promise<{ kind: 'sent' | 'retry' | 'timeout'; code: number; detail: string }> {
    return new Promise((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (r: { kind: 'sent' | 'retry' | 'timeout'; code: number; detail: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      let stream: http2.ClientHttp2Stream;
      try {
        stream = this.#session(ep).request({
          ...this.#upstreamHeaders(d, req),
          ':method': d.request.method,
          ':path': d.request.path,
          ':authority': d.request.host,
          ':scheme': 'http',
        });
      } catch (err) {
        return settle({ kind: 'retry', code: 503, detail: `upstream h2c error: ${(err as Error).message}` });
      }
      if (Number.isFinite(timeoutMs))
        timer = setTimeout(() => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          settle({ kind: 'timeout', code: 504, detail: 'upstream request timeout' });
        }, timeoutMs);
      stream.on('error', (err) => {
        if (!settled) settle({ kind: 'retry', code: 503, detail: `upstream h2c reset: ${err.message}` });
        else res.destroy();
      });
      stream.on('response', (uh) => {
        const code = Number(uh[':status'] ?? 502);
        if (!last && d.entry.retry?.codes.includes(code)) {
          stream.resume();
          return settle({ kind: 'retry', code, detail: `upstream answered ${code}` });
        }
        const h: Record<string, string[]> = {};
        for (const [k, v] of Object.entries(uh)) {
          if (k.startsWith(':') || hopByHop.has(k) || v === undefined) continue;
          h[k] = Array.isArray(v) ? v.map(String) : [String(v)];
        }
        for (const ops of d.responseHeaders) applyHeaderOps(h, ops);
        for (const [k, v] of d.corsHeaders) h[k] = [v];
        clearTimeout(timer);
        res.writeHead(code, flatten(h, res));
        stream.on('trailers', (t) => {
          const tr: Record<string, string> = {};
          for (const [k, v] of Object.entries(t))
            if (!k.startsWith(':') && v !== undefined) tr[k] = String(v);
          if ('addTrailers' in res) res.addTrailers(tr);
        });
        stream.pipe(res as NodeJS.WritableStream);
        settle({ kind: 'sent', code, detail: '' });
      });
      if (body) stream.end(body);
      else (req as NodeJS.ReadableStream).pipe(stream);
    });
  }

  #mirror(
    ep: { ip: string; port: number },
    r: { method: string; path: string; host: string; headers: Record<string, string[]> },
    body: Buffer,
  ) {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(r.headers)) if (!hopByHop.has(k)) headers[k] = v.join(', ');
    const m = http.request({
      host: ep.ip,
      port: ep.port,
      method: r.method,
      path: r.path,
      headers: { ...headers, host: r.host },
      agent: this.#agent,
    });
    m.on('response', (res) => res.resume());
    m.on('error', () => undefined);
    m.setTimeout(10_000, () => m.destroy());
    m.end(body);
  }

  #record(
    req: AnyReq,
    r: RouteRequest,
    protocol: string,
    code: number,
    d: RouteDecision,
    backend: CompiledBackend | undefined,
    ms: number,
    detail?: string,
  ): L7Record {
    const sock = req.socket;
    const entry = 'entry' in d ? d.entry : undefined;
    return {
      timeNs: String(BigInt(Date.now()) * 1_000_000n),
      type: 'RESPONSE',
      direction: 'ingress',
      endpointId: 0,
      verdict: code >= 500 ? 'ERROR' : 'FORWARDED',
      source: {
        ip: (sock.remoteAddress ?? '').replace(/^::ffff:/, ''),
        port: sock.remotePort ?? 0,
        identity: 2,
      },
      destination: {
        ip: (sock.localAddress ?? '').replace(/^::ffff:/, ''),
        port: sock.localPort ?? 0,
        identity: 1,
      },
      http: { method: r.method, url: `http://${r.host}${r.path}`, protocol, code, headers: [] },
      latencyNs: Math.round(ms * 1e6),
      ...(entry
        ? {
            route: {
              kind: entry.route.kind,
              namespace: entry.route.namespace,
              name: entry.route.name,
              rule: entry.ruleIndex,
              ...(entry.ruleName ? { ruleName: entry.ruleName } : {}),
            },
          }
        : {}),
      ...(backend ? { backend: `${backend.namespace}/${backend.name}:${backend.port}` } : {}),
      ...(detail ? { detail } : {}),
    };
  }

  async close(): Promise<void> {
    for (const s of this.#servers.values()) s.close();
    this.#servers.clear();
    for (const s of this.#sockets) s.destroy();
    for (const s of this.#h2Sessions.values()) s.destroy();
    this.#agent.destroy();
  }
}

/** A port of a redirected Service that no route names: forwarded as it came, to the Service's pods. */
function passThrough(m: MeshListener, r: RouteRequest): RouteDecision {
  const [namespace = '', name = ''] = m.service.split('/');
  const backend: CompiledBackend = { namespace, name, port: m.port, weight: 1, filters: [] };
  const entry: TableEntry = {
    route: { kind: 'HTTPRoute', namespace, name: '(no route: pass-through)' },
    ruleIndex: 0,
    matchIndex: 0,
    hostnames: [],
    match: { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] },
    filters: [],
    backends: [backend],
    mirrors: [],
    timeouts: {},
  };
  return {
    kind: 'forward',
    entry,
    backend,
    request: { method: r.method, path: r.path, host: r.host, headers: r.headers },
    responseHeaders: [],
    corsHeaders: [],
    mirrors: [],
  };
}

function splitHostPort(s: string): [string, number] {
  const i = s.lastIndexOf(':');
  return [s.slice(0, i).replace(/^\[|\]$/g, ''), Number(s.slice(i + 1))];
}

/**
 * Header lists as node's writeHead takes them: a header with several values is sent as several
 * header lines (as Envoy appends them), one value as one line.
 */
function flatten(h: Record<string, string[]>, _res: AnyRes): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) out[k] = v.length === 1 ? (v[0] as string) : v;
  return out;
}
