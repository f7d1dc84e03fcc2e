// A real HTTP engine on loopback for the proxy's tests: a plain net.Server hands every accepted
// client socket to createHttpHandler() with a ProxiedConnection whose original destination is a real
// upstream server, and a connector that opens real TCP connections to it from the client's IP.
import net from 'node:net';
import type { PortL7Policy } from '../../src/policy/l7/types.js';
import { createHttpHandler, type HttpHandler, type HttpLimits } from '../../src/proxy/http/handler.js';
import type { L7Record, ProxiedConnection, UpstreamConnector } from '../../src/proxy/types.js';

export const CLIENT_IDENTITY = 1000;
export const SERVER_IDENTITY = 2000;

export interface ProxyHarness {
  /** The proxy's loopback port (clients connect here, as if redirected). */
  port: number;
  handler: HttpHandler;
  records: L7Record[];
  /** The policy every connection sees now (change it between requests). */
  policy: PortL7Policy | undefined;
  /** Upstream sockets the connector opened. */
  upstreamSockets: net.Socket[];
  close(): Promise<void>;
}

export interface HarnessOptions {
  upstream: { host: string; port: number };
  policy?: PortL7Policy;
  limits?: Partial<HttpLimits>;
  remoteIdentity?: number;
  connector?: UpstreamConnector;
}

export async function startProxy(o: HarnessOptions): Promise<ProxyHarness> {
  const records: L7Record[] = [];
  const upstreamSockets: net.Socket[] = [];
  const connector: UpstreamConnector =
    o.connector ??
    ((conn) => {
      const s = net.connect({ host: conn.dst.ip, port: conn.dst.port, localAddress: conn.src.ip });
      upstreamSockets.push(s);
      s.once('close', () => upstreamSockets.splice(upstreamSockets.indexOf(s), 1));
      return s;
    });
  const handler = createHttpHandler({ connector, onRecord: (r) => records.push(r), limits: o.limits });
  const h: ProxyHarness = {
    port: 0,
    handler,
    records,
    policy: o.policy,
    upstreamSockets,
    close: async () => {},
  };
  const server = net.createServer((socket) => {
    const conn: ProxiedConnection = {
      direction: 'ingress',
      endpoint: { id: 7, identity: SERVER_IDENTITY, namespace: 'x', pod: 'server' },
      remoteIdentity: o.remoteIdentity ?? CLIENT_IDENTITY,
      src: { ip: socket.remoteAddress as string, port: socket.remotePort as number },
      dst: { ip: o.upstream.host, port: o.upstream.port },
      policy: () => h.policy,
    };
    handler.handle(socket, conn);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  h.port = (server.address() as net.AddressInfo).port;
  h.close = async () => {
    server.close();
    await handler.close();
  };
  return h;
}

/** A port's L7 policy with one rule set for every peer (or for `identities`). */
export function portPolicy(
  http: import('../../src/policy/l7/types.js').HttpRule[] | undefined,
  o: { identities?: number[]; name?: string; cookie?: number } = {},
): PortL7Policy {
  return {
    protocol: 'TCP',
    port: 80,
    parser: 'http',
    proxyPort: 15001,
    ruleSets: [
      {
        ...(o.identities ? { identities: o.identities } : {}),
        ...(http ? { http } : {}),
        origin: { kind: 'CiliumNetworkPolicy', namespace: 'x', name: o.name ?? 'l7', cookie: o.cookie ?? 1 },
      },
    ],
  };
}

/** What an upstream test server saw of one request. */
export interface SeenRequest {
  method: string;
  url: string;
  rawHeaders: string[];
  remoteAddress: string;
  /** The upstream connection's client port (the same for requests on one connection). */
  remotePort: number;
  bodyBytes: number;
  body: string;
  /** The request ended normally (false: aborted before its end). */
  complete: boolean;
  /** Response body bytes written so far (/big). */
  sent: number;
}

/** Header values (lower-case name) in a raw header list. */
export function headerValues(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

export interface TestUpstream {
  server: import('node:http').Server;
  port: number;
  seen: SeenRequest[];
  /** Requests whose response has not been sent (for /hang). */
  open: Set<import('node:http').ServerResponse>;
  close(): Promise<void>;
}

/**
 * A real node:http upstream on 127.0.0.1. Routes: /big?n=<bytes> streams n bytes; /echo echoes the
 * body; /trailers answers chunked with a trailer; /hang never answers; /stall never answers nor
 * reads the body; /reset destroys the connection; /cut drops it in the middle of the body; anything
 * else answers 200 "ok <method> <url>".
 */
export async function startUpstream(): Promise<TestUpstream> {
  const http = await import('node:http');
  const seen: SeenRequest[] = [];
  const open = new Set<import('node:http').ServerResponse>();
  const server = http.createServer((req, res) => {
    const s: SeenRequest = {
      method: req.method!,
      url: req.url!,
      rawHeaders: req.rawHeaders,
      remoteAddress: req.socket.remoteAddress!,
      remotePort: req.socket.remotePort!,
      bodyBytes: 0,
      body: '',
      complete: false,
      sent: 0,
    };
    seen.push(s);
    const path = req.url!.split('?')[0];
    if (path === '/hang') {
      open.add(res);
      res.once('close', () => open.delete(res));
      req.on('data', (d: Buffer) => (s.bodyBytes += d.length));
      req.on('end', () => (s.complete = true));
      return;
    }
    if (path === '/stall') {
      // Never reads the body: the client is held back by flow control.
      open.add(res);
      res.once('close', () => open.delete(res));
      req.pause();
      return;
    }
    if (path === '/reset') {
      req.socket.destroy();
      return;
    }
    if (path === '/cut') {
      // Promises 1000 bytes, sends 10, then drops the connection.
      res.writeHead(200, { 'content-length': 1000 });
      res.write('0123456789', () => setTimeout(() => req.socket.destroy(), 20));
      return;
    }
    if (path === '/echo') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.on('data', (d: Buffer) => (s.bodyBytes += d.length));
      req.on('end', () => (s.complete = true));
      req.pipe(res);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => {
      s.bodyBytes += d.length;
      if (s.bodyBytes < 65536) chunks.push(d);
    });
    req.on('end', () => {
      s.complete = true;
      s.body = Buffer.concat(chunks).toString();
      if (path === '/big') {
        const n = Number(new URL(req.url!, 'http://x').searchParams.get('n'));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
        const block = Buffer.alloc(64 * 1024, 'x');
        let left = n;
        const pump = () => {
          while (left > 0) {
            const b = left >= block.length ? block : block.subarray(0, left);
            left -= b.length;
            s.sent += b.length;
            if (!res.write(b)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      if (path === '/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('part1;');
        res.write('part2');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'yes' });
      res.end(`ok ${req.method} ${req.url}`);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    port: (server.address() as net.AddressInfo).port,
    seen,
    open,
    close: async () => {
      for (const r of open) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Sends `data` on a new TCP connection and collects what comes back until close, `until`, or the timeout. */
export function rawExchange(
  port: number,
  data: string | Buffer | (string | Buffer)[],
  o: { until?: (received: string) => boolean; timeoutMs?: number; localAddress?: string } = {},
): Promise<{ received: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: o.localAddress });
    let received = '';
    let settled = false;
    const done = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ received, closed });
    };
    const timer = setTimeout(() => done(false), o.timeoutMs ?? 3000);
    s.on('data', (d) => {
      received += d.toString('latin1');
      if (o.until?.(received)) done(false);
    });
    s.on('close', () => done(true));
    s.on('error', () => done(true));
    for (const d of Array.isArray(data) ? data : [data]) s.write(d);
  });
}

/** Waits until `cond()` holds (polling), or throws after `ms`. */
export async function eventually(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Response {
  status: number;
  headers: import('node:http').IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  body: Buffer;
}

/** One HTTP/1.1 request through the proxy (node:http client; pass an Agent to reuse connections). */
export function request(
  port: number,
  o: {
    method?: string;
    path?: string;
    headers?: import('node:http').OutgoingHttpHeaders;
    body?: string | Buffer | (string | Buffer)[];
    agent?: import('node:http').Agent;
    localAddress?: string;
  } = {},
): Promise<Response> {
  return import('node:http').then(
    (http) =>
      new Promise<Response>((resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port,
            method: o.method ?? 'GET',
            path: o.path ?? '/',
            headers: o.headers,
            agent: o.agent ?? false,
            localAddress: o.localAddress,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (d: Buffer) => chunks.push(d));
            res.on('end', () =>
              resolve({
                status: res.statusCode!,
                headers: res.headers,
                trailers: res.trailers,
                body: Buffer.concat(chunks),
              }),
            );
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        for (const b of Array.isArray(o.body) ? o.body : o.body !== undefined ? [o.body] : []) req.write(b);
        req.end();
      }),
  );
}
