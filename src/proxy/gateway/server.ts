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
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type {
  CompiledBackend,
  EntryPolicy,
  GatewayPortTable,
  MeshPortTable,
  TableEntry,
} from '../../gateway/compile.js';
import {
  applyHeaderOps,
  routeGateway,
  routeMesh,
  type RouteDecision,
  type RouteRequest,
} from '../../gateway/route.js';
import { WeirError } from '../../shared/errors.js';
import type { L7Record } from '../types.js';
import { tunnelConnection, upstreamAgent, type UpstreamTunnel } from './upstream.js';
import { Cluster, type ClusterConfig } from './cluster.js';
import { GatewayMetrics } from './metrics.js';
import { LocalRateLimiter } from './ratelimit.js';

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
  /** Where the weir_gateway_* metrics are registered (the proxy's registry); a private one if unset. */
  registry?: Registry;
  /**
   * --encryption mtls: upstreams to pods of other nodes go through the main thread's mTLS tunnel
   * with the node SVID (upstream.ts); never plain.
   */
  tunnel?: UpstreamTunnel;
}

/** Why an attempt got no response. */
type FailureCause = 'connect-failure' | 'reset' | 'refused-stream' | 'timeout';
type Failure = { code: number } | { cause: FailureCause };
type AttemptResult =
  | { kind: 'sent'; code: number }
  | { kind: 'retry'; code: number; detail: string }
  | { kind: 'failure'; cause: FailureCause; code: number; detail: string };

/** What one attempt at the upstream needs, whichever protocol carries it. */
interface Attempt {
  ep: { ip: string; port: number };
  d: Extract<RouteDecision, { kind: 'forward' }>;
  req: AnyReq;
  res: AnyRes;
  /** The buffered request body; undefined: the request is piped as it streams. */
  body: Buffer | undefined;
  timeoutMs: number;
  /** Whether a status is retried (holding a retry slot) rather than sent to the client. */
  retryCode: (code: number) => boolean;
  cl?: Cluster | undefined;
}

interface RetryPlan {
  /** Retries at most. */
  max: number;
  retriable(f: Failure): boolean;
  /** The wait before retry n (1-based). */
  backoff(n: number): number;
}

/**
 * The retry policy of a rule: the HTTPRoute's own `retry` (Gateway API: its codes and connection
 * errors, doubling back-off) wins over a BackendTrafficPolicy's (Envoy's retry_on triggers, fully
 * jittered exponential back-off), as in Envoy Gateway.
 */
function retryPlan(e: TableEntry): RetryPlan {
  if (e.retry) {
    const r = e.retry;
    const base = r.backoffMs ?? DEFAULT_BACKOFF_MS;
    return {
      max: r.attempts,
      retriable: (f) => ('code' in f ? r.codes.includes(f.code) : f.cause !== 'timeout'),
      backoff: (n) => Math.min(base * 2 ** (n - 1), 10 * base),
    };
  }
  const r = e.policy?.retry;
  if (!r) return { max: 0, retriable: () => false, backoff: () => 0 };
  const on = new Set(r.triggers);
  const any = (...t: string[]) => t.some((x) => on.has(x as never));
  return {
    max: r.numRetries,
    retriable: (f) => {
      if ('code' in f)
        return (
          (f.code >= 500 && any('5xx')) ||
          ([502, 503, 504].includes(f.code) && any('gateway-error')) ||
          (f.code === 409 && any('retriable-4xx')) ||
          (r.statusCodes.includes(f.code) && any('retriable-status-codes'))
        );
      switch (f.cause) {
        case 'connect-failure':
          return any('5xx', 'gateway-error', 'reset', 'connect-failure');
        case 'refused-stream':
          return any('5xx', 'gateway-error', 'reset', 'refused-stream');
        default:
          return any('5xx', 'gateway-error', 'reset');
      }
    },
    backoff: (n) => Math.random() * Math.min(r.maxIntervalMs, r.baseIntervalMs * (2 ** n - 1)),
  };
}

function clusterConfig(p: EntryPolicy): ClusterConfig {
  return {
    ...(p.circuitBreaker ? { circuitBreaker: p.circuitBreaker } : {}),
    ...(p.passiveHealthCheck ? { passiveHealthCheck: p.passiveHealthCheck } : {}),
    ...(p.retry ? { retry: p.retry } : {}),
    ...(p.timeout ? { timeout: p.timeout } : {}),
  };
}

export class GatewayServer {
  #snap: GatewaySnapshot = { version: 0, ports: [], mesh: [], endpoints: {}, pods: {} };
  readonly #servers = new Map<string, Server>();
  readonly #sockets = new Set<Socket>();
  readonly #h1: http.Server;
  readonly #h2: http2.Http2Server;
  readonly #agent: http.Agent;
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
  /** Local rate-limit buckets by policy, route rule and selector (Envoy's token buckets). */
  readonly #rateLimiter = new LocalRateLimiter();
  /** Backends of BackendTrafficPolicies (Envoy's clusters) by policy and backend. */
  readonly #clusters = new Map<string, Cluster>();
  /** Attempts made so far per downstream request (x-envoy-attempt-count). */
  readonly #attempts = new WeakMap<AnyReq, number>();
  readonly metrics: GatewayMetrics;

  constructor(private readonly o: GatewayServerOptions) {
    this.metrics = new GatewayMetrics(o.registry);
    this.#agent = upstreamAgent({ keepAlive: true, maxSockets: 256 }, o.tunnel);
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
    // Clusters follow their policy's new settings; a policy gone takes its clusters with it.
    const policies = new Map<string, EntryPolicy>();
    for (const t of s.ports)
      for (const l of t.listeners)
        for (const e of l.entries) if (e.policy) policies.set(e.policy.policy, e.policy);
    for (const m of s.mesh) for (const e of m.entries) if (e.policy) policies.set(e.policy.policy, e.policy);
    for (const [k, c] of this.#clusters) {
      const p = policies.get(k.slice(0, k.indexOf('|')));
      if (p) c.config = clusterConfig(p);
      else {
        c.close();
        this.#clusters.delete(k);
      }
    }
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
      const entry = 'entry' in d ? d.entry : undefined;
      const gateway = table ? table.gateway : mesh ? `mesh:${mesh.service}` : '';
      const route = entry ? `${entry.route.namespace}/${entry.route.name}` : '';
      const b = backend ? `${backend.namespace}/${backend.name}:${backend.port}` : '';
      this.metrics.requests.inc({
        gateway,
        route,
        rule: entry ? String(entry.ruleIndex) : '',
        backend: b,
        code,
      });
      this.metrics.duration.observe({ gateway, route, backend: b }, (performance.now() - started) / 1000);
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
        const rv = p?.rateLimit
          ? this.#rateLimiter.take(
              `${p.policy}|${d.entry.route.namespace}/${d.entry.route.name}|${d.entry.ruleIndex}`,
              p.rateLimit,
              rreq.headers,
              (sock.remoteAddress ?? '').replace(/^::ffff:/, ''),
            )
          : undefined;
        if (rv) {
          extra['x-ratelimit-limit'] = String(rv.limit);
          extra['x-ratelimit-remaining'] = String(rv.remaining);
          extra['x-ratelimit-reset'] = String(rv.resetSeconds);
          if (!rv.allowed) {
            this.stats.rateLimited++;
            this.metrics.rateLimited.inc({ route: `${d.entry.route.namespace}/${d.entry.route.name}` });
            res.writeHead(429, { ...extra, 'content-type': 'text/plain', 'content-length': '19' });
            res.end('local_rate_limited\n');
            return void done(429, d.backend, 'local_rate_limited');
          }
        }
        const cl = p && !d.backend.invalid ? this.#cluster(p, d.backend) : undefined;
        if (cl) {
          if (!cl.admit()) return void this.#overflow(res, d.backend, done);
          let left = false;
          const leave = () => {
            if (left) return;
            left = true;
            cl.leave();
          };
          res.once('close', leave);
          res.once('finish', leave);
        }
        // The rate limit's headers go on the upstream's response too.
        const withHeaders = { ...d, corsHeaders: [...d.corsHeaders, ...Object.entries(extra)] };
        return await this.#forward(req, res, withHeaders, done, cl);
      }
    }
  }

  /** The circuit breaker's answer to an overflow (Envoy: 503, x-envoy-overloaded, flag UO). */
  #overflow(
    res: AnyRes,
    backend: CompiledBackend,
    done: (c: number, b?: CompiledBackend, detail?: string) => void,
  ) {
    this.stats.circuitOpen++;
    if (!res.headersSent) {
      res.writeHead(503, {
        'x-envoy-overloaded': 'true',
        'content-type': 'text/plain',
        'content-length': '17',
      });
      res.end('upstream overflow');
    } else res.destroy();
    done(503, backend, 'upstream_overflow');
  }

  /** The cluster of a policy's backend (Envoy's upstream cluster), made on first use. */
  #cluster(p: EntryPolicy, b: CompiledBackend): Cluster {
    const backend = `${b.namespace}/${b.name}:${b.port}`;
    const k = `${p.policy}|${backend}`;
    let c = this.#clusters.get(k);
    if (!c) this.#clusters.set(k, (c = new Cluster(backend, clusterConfig(p), this.metrics, this.o.tunnel)));
    return c;
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
    cl?: Cluster,
  ) {
    const e = d.entry;
    const isGrpc =
      e.route.kind === 'GRPCRoute' || (req.headers['content-type'] ?? '').startsWith('application/grpc');
    const h2c = isGrpc || d.backend.appProtocol === 'kubernetes.io/h2c';
    const plan = retryPlan(e);
    // The body, buffered when small enough to be sent again (retries, mirrors).
    const chunks: Buffer[] = [];
    let size = 0;
    let streamed = false;
    const canRetry = plan.max > 0 || d.mirrors.length > 0;
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
    const backendKey = `${d.backend.namespace}/${d.backend.name}:${d.backend.port}`;
    const requestMs = e.timeouts.request ?? e.policy?.timeout?.requestMs;
    const perTryMs = e.timeouts.backendRequest ?? (e.retry ? undefined : e.policy?.retry?.perTryTimeoutMs);
    const deadline = requestMs !== undefined ? performance.now() + requestMs : Infinity;
    const attempts = 1 + plan.max;
    let lastCode = 503;
    let lastDetail = 'no ready endpoint';
    // A retry holds a slot of the cluster's retry limit from the decision through its back-off and
    // attempt (Envoy's outstanding retries); the slot of a finished attempt is given back first.
    const budgeted = !!cl && !!e.policy?.retry && !e.retry;
    let holding = false;
    const releaseSlot = () => {
      if (holding) cl?.retryDone();
      holding = false;
    };
    /** A retry may follow: attempts left, the trigger matches, and the breaker or budget allow it. */
    const mayRetry = (attempt: number, f: Failure): boolean => {
      releaseSlot();
      if (streamed || attempt >= attempts - 1 || !plan.retriable(f)) return false;
      if (performance.now() >= deadline) return false;
      if (budgeted && cl) {
        if (!cl.retryAllowed()) return false;
        holding = true;
      }
      return true;
    };
    try {
      for (let attempt = 0; attempt < attempts; attempt++) {
        if (attempt > 0) {
          this.stats.retries++;
          this.metrics.retries.inc({ route: `${e.route.namespace}/${e.route.name}`, backend: backendKey });
          const wait = Math.min(plan.backoff(attempt), Math.max(0, deadline - performance.now()));
          await new Promise((r) => setTimeout(r, wait));
        }
        const eps = this.#snap.endpoints[backendKey] ?? [];
        const ep = this.#pick(backendKey, cl);
        if (!ep) break;
        const left = deadline - performance.now();
        if (left <= 0) {
          lastCode = 504;
          lastDetail = 'request timeout';
          break;
        }
        let release: (() => void) | undefined;
        if (cl && !h2c) {
          const got = await cl.connection(left);
          if (got === 'timeout') {
            lastCode = 504;
            lastDetail = 'request timeout';
            break;
          }
          if (!got) {
            releaseSlot();
            return void this.#overflow(res, d.backend, done);
          }
          release = () => cl.release();
        }
        const perTry = Math.min(deadline - performance.now(), perTryMs ?? Infinity);
        const perTryIsRequest = perTryMs === undefined || deadline - performance.now() <= perTryMs;
        const retryCode = (code: number) => mayRetry(attempt, { code });
        const one: Attempt = {
          ep,
          d,
          req,
          res,
          body: streamed ? undefined : body,
          timeoutMs: perTry,
          retryCode,
          cl,
        };
        const r = await (h2c ? this.#h2Attempt(one) : this.#h1Attempt(one, release));
        if (r.kind === 'sent') releaseSlot();
        const epKey = `${ep.ip}:${ep.port}`;
        cl?.outcome(
          epKey,
          eps,
          r.kind === 'failure'
            ? {
                local:
                  r.cause === 'connect-failure'
                    ? 'connect-failure'
                    : r.cause === 'timeout'
                      ? 'timeout'
                      : 'reset',
              }
            : { code: r.code },
        );
        if (r.kind === 'sent') return void done(r.code, d.backend);
        lastCode = r.code;
        lastDetail = r.detail;
        if (r.kind === 'failure') {
          if (r.cause === 'timeout') {
            const kind = perTryIsRequest ? 'request' : 'per_try';
            if (kind === 'request') break;
            this.metrics.timeouts.inc({ backend: backendKey, kind });
          }
          if (!mayRetry(attempt, { cause: r.cause })) break;
        }
      }
    } finally {
      releaseSlot();
    }
    if (lastCode === 504) {
      this.stats.timeouts++;
      if (performance.now() >= deadline - 1)
        this.metrics.timeouts.inc({ backend: backendKey, kind: 'request' });
    } else this.stats.upstreamErrors++;
    this.#local(res, lastCode, lastDetail, done, d.backend);
  }

  #pick(key: string, cl?: Cluster): { ip: string; port: number } | undefined {
    const all = this.#snap.endpoints[key] ?? [];
    const eps = cl ? cl.healthy(all) : all;
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

  /**
   * One HTTP/1.1 attempt. 'sent': the response went to the client; 'retry': a status the caller
   * retries (retryCode said so, holding a retry slot); 'failure': no response (connect failure,
   * reset, timeout), nothing sent yet.
   */
  #h1Attempt(
    { ep, d, req, res, body, timeoutMs, retryCode, cl }: Attempt,
    release?: () => void,
  ): Promise<AttemptResult> {
    return new Promise((resolve) => {
      const headers: Record<string, string> = { ...this.#upstreamHeaders(d, req), host: d.request.host };
      if (cl) headers['x-envoy-attempt-count'] = String(1 + (this.#attempts.get(req) ?? 0));
      if (cl) this.#attempts.set(req, 1 + (this.#attempts.get(req) ?? 0));
      const up = http.request({
        host: ep.ip,
        port: ep.port,
        method: d.request.method,
        path: d.request.path,
        headers,
        agent: cl ? cl.agent : this.#agent,
      });
      let released = false;
      up.once('close', () => {
        if (released) return;
        released = true;
        release?.();
      });
      let connected = false;
      let connectTimedOut = false;
      up.once('socket', (s) => {
        if (!s.connecting) connected = true;
        else s.once('connect', () => (connected = true));
      });
      if (cl) cl.track(up, `${ep.ip}:${ep.port}`, () => (connectTimedOut = true));
      let timer: NodeJS.Timeout | undefined;
      if (Number.isFinite(timeoutMs))
        timer = setTimeout(() => {
          up.destroy();
          settle({ kind: 'failure', cause: 'timeout', code: 504, detail: 'upstream request timeout' });
        }, timeoutMs);
      let settled = false;
      const settle = (r: AttemptResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      up.on('error', (err) =>
        settle(
          connected
            ? { kind: 'failure', cause: 'reset', code: 503, detail: `upstream reset: ${err.message}` }
            : {
                kind: 'failure',
                cause: 'connect-failure',
                code: 503,
                detail: connectTimedOut
                  ? 'upstream connect error: connection timeout'
                  : `upstream connect error: ${err.message}`,
              },
        ),
      );
      up.on('response', (ur) => {
        const code = ur.statusCode ?? 502;
        if (retryCode(code)) {
          ur.resume();
          return settle({ kind: 'retry', code, detail: `upstream answered ${code}` });
        }
        const h: Record<string, string[]> = {};
        for (let i = 0; i < ur.rawHeaders.length; i += 2) {
          const k = (ur.rawHeaders[i] ?? '').toLowerCase();
          if (hopByHop.has(k)) continue;
          (h[k] ??= []).push(ur.rawHeaders[i + 1] ?? '');
        }
        clearTimeout(timer);
        writeUpstreamHead(res, code, h, d);
        ur.pipe(res as NodeJS.WritableStream);
        ur.on('error', () => res.destroy());
        settle({ kind: 'sent', code });
      });
      if (body) up.end(body);
      else (req as NodeJS.ReadableStream).pipe(up);
    });
  }

  #session(ep: { ip: string; port: number }, connectMs?: number): ClientHttp2Session {
    const k = `${ep.ip}:${ep.port}`;
    let s = this.#h2Sessions.get(k);
    if (!s || s.closed || s.destroyed) {
      // A backend pod of another node with encryption on: the tunnel's stream (upstream.ts).
      const tunnelled = tunnelConnection(this.o.tunnel, ep.ip, ep.port);
      const session = http2.connect(
        `http://${k.includes(':') && ep.ip.includes(':') ? `[${ep.ip}]:${ep.port}` : k}`,
        tunnelled ? { createConnection: () => tunnelled } : {},
      );
      s = session;
      session.on('error', () => undefined);
      session.once('close', () => {
        if (this.#h2Sessions.get(k) === session) this.#h2Sessions.delete(k);
      });
      if (connectMs) {
        const timer = setTimeout(() => {
          if (session.connecting) session.destroy(new Error('connect timeout'));
        }, connectMs);
        session.once('connect', () => clearTimeout(timer));
        session.once('close', () => clearTimeout(timer));
      }
      this.#h2Sessions.set(k, session);
    }
    return s;
  }

  /** One h2c attempt (gRPC and appProtocol kubernetes.io/h2c), trailers relayed. */
  #h2Attempt({ ep, d, req, res, body, timeoutMs, retryCode, cl }: Attempt): Promise<AttemptResult> {
    return new Promise((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (r: AttemptResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      let stream: http2.ClientHttp2Stream;
      let session: ClientHttp2Session;
      try {
        session = this.#session(ep, cl?.config.timeout?.connectMs);
        stream = session.request({
          ...this.#upstreamHeaders(d, req),
          ':method': d.request.method,
          ':path': d.request.path,
          ':authority': d.request.host,
          ':scheme': 'http',
        });
      } catch (err) {
        return settle({
          kind: 'failure',
          cause: 'connect-failure',
          code: 503,
          detail: `upstream h2c error: ${(err as Error).message}`,
        });
      }
      let connected = !session.connecting;
      if (!connected) session.once('connect', () => (connected = true));
      if (Number.isFinite(timeoutMs))
        timer = setTimeout(() => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          settle({ kind: 'failure', cause: 'timeout', code: 504, detail: 'upstream request timeout' });
        }, timeoutMs);
      stream.on('error', (err) => {
        if (settled) return void res.destroy();
        const refused = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
        settle({
          kind: 'failure',
          cause: refused ? 'refused-stream' : connected ? 'reset' : 'connect-failure',
          code: 503,
          detail: `upstream h2c reset: ${err.message}`,
        });
      });
      stream.on('close', () => {
        if (!settled)
          settle({
            kind: 'failure',
            cause: stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ? 'refused-stream' : 'reset',
            code: 503,
            detail: `upstream h2c stream closed (${stream.rstCode})`,
          });
      });
      stream.on('response', (uh) => {
        const code = Number(uh[':status'] ?? 502);
        if (retryCode(code)) {
          stream.resume();
          return settle({ kind: 'retry', code, detail: `upstream answered ${code}` });
        }
        const h: Record<string, string[]> = {};
        for (const [k, v] of Object.entries(uh)) {
          if (k.startsWith(':') || hopByHop.has(k) || v === undefined) continue;
          h[k] = Array.isArray(v) ? v.map(String) : [String(v)];
        }
        clearTimeout(timer);
        writeUpstreamHead(res, code, h, d);
        stream.on('trailers', (t) => {
          const tr: Record<string, string> = {};
          for (const [k, v] of Object.entries(t))
            if (!k.startsWith(':') && v !== undefined) tr[k] = String(v);
          if ('addTrailers' in res) res.addTrailers(tr);
        });
        stream.pipe(res as NodeJS.WritableStream);
        settle({ kind: 'sent', code });
      });
      // node:http2 ends a GET/HEAD/DELETE stream at once (no payload): nothing more to write.
      if (body) {
        if (!stream.writableEnded) stream.end(body);
      } else (req as NodeJS.ReadableStream).pipe(stream);
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
    for (const c of this.#clusters.values()) c.close();
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

/** Sends the upstream's response head to the client, after the route's response header ops and CORS headers. */
function writeUpstreamHead(
  res: AnyRes,
  code: number,
  h: Record<string, string[]>,
  d: Extract<RouteDecision, { kind: 'forward' }>,
): void {
  for (const ops of d.responseHeaders) applyHeaderOps(h, ops);
  for (const [k, v] of d.corsHeaders) h[k] = [v];
  res.writeHead(code, flatten(h, res));
}
