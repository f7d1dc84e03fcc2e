// Upstream connection pools of the HTTP engine. Upstream connections are made by the process side's
// transparent connector (from the original client's IP to the original destination), so a pool
// serves one (client IP, destination IP, destination port): HTTP/1.1 through an undici Pool whose
// `connect` calls the connector, HTTP/2 through node:http2 client sessions, several per key when the
// peer's concurrent-stream limit is reached. Idle pools and sessions are closed; nothing grows
// without bound.
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import { Pool } from 'undici';
import type { ProxiedConnection, UpstreamConnector } from '../types.js';
import type { HttpLimits } from './limits.js';

/** An upstream connect that took longer than limits.upstreamConnectTimeoutMs. */
export class UpstreamConnectTimeout extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(ms: number) {
    super(`upstream connect timed out after ${ms} ms`);
  }
}

/** The pool key of a connection: its client IP and original destination. */
export function poolKey(conn: ProxiedConnection): string {
  return `${conn.src.ip}|${conn.dst.ip}|${conn.dst.port}`;
}

function origin(conn: ProxiedConnection): string {
  const host = conn.dst.ip.includes(':') ? `[${conn.dst.ip}]` : conn.dst.ip;
  return `http://${host}:${conn.dst.port}`;
}

/** Calls `cb` once: with the socket when it is connected, or with the error / a timeout. */
function whenConnected(socket: Socket, ms: number, cb: (err: Error | null, s: Socket | null) => void): void {
  if (!socket.connecting && !socket.destroyed) {
    cb(null, socket);
    return;
  }
  let done = false;
  // The connect error is reported through `cb`; an error emitted after that must not go unhandled.
  socket.on('error', () => {});
  const finish = (err: Error | null) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.removeListener('connect', onConnect);
    socket.removeListener('error', onError);
    cb(err, err ? null : socket);
  };
  const onConnect = () => finish(null);
  const onError = (err: Error) => finish(err);
  const timer = setTimeout(() => {
    const err = new UpstreamConnectTimeout(ms);
    socket.destroy(err);
    finish(err);
  }, ms);
  socket.once('connect', onConnect);
  socket.once('error', onError);
}

interface H1Entry {
  pool: Pool;
  lastUsed: number;
}

/** An HTTP/2 client session with the number of streams the proxy has open on it. */
export interface H2Upstream {
  session: http2.ClientHttp2Session;
  active: number;
}

interface H2Entry {
  sessions: H2Upstream[];
  lastUsed: number;
}

export class UpstreamPools {
  readonly #connector: UpstreamConnector;
  readonly #limits: HttpLimits;
  readonly #h1 = new Map<string, H1Entry>();
  readonly #h2 = new Map<string, H2Entry>();
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(connector: UpstreamConnector, limits: HttpLimits) {
    this.#connector = connector;
    this.#limits = limits;
    this.#sweeper = setInterval(() => this.sweep(), Math.max(1000, limits.upstreamKeepAliveMs)).unref();
  }

  /** The HTTP/1.1 pool for `conn`'s key (made on first use). */
  h1(conn: ProxiedConnection, key: string): Pool {
    const now = performance.now();
    let e = this.#h1.get(key);
    if (!e) {
      const connector = this.#connector;
      const connectMs = this.#limits.upstreamConnectTimeoutMs;
      const pool = new Pool(origin(conn), {
        connections: this.#limits.upstreamConnectionsPerPool,
        pipelining: 1,
        keepAliveTimeout: this.#limits.upstreamKeepAliveMs,
        keepAliveMaxTimeout: this.#limits.upstreamKeepAliveMs,
        headersTimeout: this.#limits.upstreamHeadersTimeoutMs,
        bodyTimeout: this.#limits.upstreamIdleTimeoutMs,
        maxHeaderSize: this.#limits.maxHeaderBytes,
        strictContentLength: true,
        connect: (_opts, cb) => {
          let socket: Socket;
          try {
            socket = connector(conn);
          } catch (err) {
            cb(err as Error, null);
            return;
          }
          socket.setNoDelay(true);
          whenConnected(socket, connectMs, cb as (err: Error | null, s: Socket | null) => void);
        },
      });
      pool.on('connectionError', () => {});
      e = { pool, lastUsed: now };
      this.#h1.set(key, e);
    }
    e.lastUsed = now;
    return e.pool;
  }

  /** An HTTP/2 session for `conn`'s key with room for one more stream (made when needed). */
  h2(conn: ProxiedConnection, key: string): H2Upstream {
    const now = performance.now();
    let e = this.#h2.get(key);
    if (!e) {
      e = { sessions: [], lastUsed: now };
      this.#h2.set(key, e);
    }
    e.lastUsed = now;
    for (const u of e.sessions) {
      const s = u.session;
      const peerMax = s.remoteSettings?.maxConcurrentStreams ?? 100;
      if (!s.closed && !s.destroyed && u.active < Math.min(peerMax, this.#limits.maxConcurrentStreams))
        return u;
    }
    const u = this.#connectH2(conn, e);
    e.sessions.push(u);
    return u;
  }

  #connectH2(conn: ProxiedConnection, e: H2Entry): H2Upstream {
    const connectMs = this.#limits.upstreamConnectTimeoutMs;
    const connector = this.#connector;
    const session = http2.connect(origin(conn), {
      createConnection: () => {
        const socket = connector(conn);
        socket.setNoDelay(true);
        whenConnected(socket, connectMs, () => {});
        return socket;
      },
      settings: { enablePush: false },
      maxSessionMemory: this.#limits.maxSessionMemoryMb,
      maxHeaderListPairs: this.#limits.maxHeaderCount + 8,
      maxSendHeaderBlockLength: this.#limits.maxHeaderBytes,
    });
    const u: H2Upstream = { session, active: 0 };
    const drop = () => {
      const i = e.sessions.indexOf(u);
      if (i >= 0) e.sessions.splice(i, 1);
    };
    session.on('error', () => {});
    session.on('goaway', drop);
    session.on('close', drop);
    // Closed when it carried no stream for a keep-alive period.
    session.setTimeout(this.#limits.upstreamKeepAliveMs, () => {
      if (u.active === 0) session.close();
    });
    return u;
  }

  /** Closes pools and entries idle for longer than the keep-alive period. */
  sweep(): void {
    const cutoff = performance.now() - this.#limits.upstreamKeepAliveMs;
    for (const [k, e] of this.#h1) {
      if (e.lastUsed > cutoff) continue;
      const s = e.pool.stats;
      if (s.running > 0 || s.pending > 0 || s.queued > 0) continue;
      this.#h1.delete(k);
      e.pool.close().catch(() => {});
    }
    for (const [k, e] of this.#h2) {
      if (e.sessions.length === 0 && e.lastUsed <= cutoff) this.#h2.delete(k);
    }
  }

  stats(): { h1Pools: number; h1Connections: number; h2Sessions: number; h2Streams: number } {
    let h1Connections = 0;
    for (const e of this.#h1.values()) h1Connections += e.pool.stats.connected;
    let h2Sessions = 0;
    let h2Streams = 0;
    for (const e of this.#h2.values()) {
      h2Sessions += e.sessions.length;
      for (const u of e.sessions) h2Streams += u.active;
    }
    return { h1Pools: this.#h1.size, h1Connections, h2Sessions, h2Streams };
  }

  /** Closes every pool and session (requests in flight are cut). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    const pools = [...this.#h1.values()].map((e) => e.pool);
    this.#h1.clear();
    for (const e of this.#h2.values()) for (const u of [...e.sessions]) u.session.destroy();
    this.#h2.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => {})));
  }
}
