// Upstream connection pools of the HTTP engine. Upstream connections are made by the process side's
// transparent connector (from the original client's IP to the original destination), so a pool
// serves one (client IP, destination IP, destination port): HTTP/1.1 through H1Pool (llhttp-parsed
// connections, h1-upstream.ts), HTTP/2 through node:http2 client sessions, several per key when the
// peer's concurrent-stream limit is reached. Idle pools and sessions are closed; nothing grows
// without bound.
import http2 from 'node:http2';
import type { ProxiedConnection, UpstreamConnector } from '../types.js';
import { H1Pool, whenConnected } from './h1-upstream.js';
import { CONNECTION_WINDOW, STREAM_WINDOW } from './http2.js';
import type { HttpLimits } from './limits.js';

/**
 * The pool key of a connection: its direction, client IP and original destination. The direction
 * belongs to it because a pool's sockets carry the mark of the listener they serve: when both ends
 * filter, the egress proxy's upstream must be redirected to the ingress proxy, and the ingress
 * proxy's must not (one pool for both looped the ingress proxy into itself).
 */
export function poolKey(conn: ProxiedConnection): string {
  return `${conn.direction}|${conn.src.ip}|${conn.dst.ip}|${conn.dst.port}`;
}

function origin(conn: ProxiedConnection): string {
  const host = conn.dst.ip.includes(':') ? `[${conn.dst.ip}]` : conn.dst.ip;
  return `http://${host}:${conn.dst.port}`;
}

/** An HTTP/2 client session with the number of streams the proxy has open on it. */
export interface H2Upstream {
  session: http2.ClientHttp2Session;
  active: number;
  /** performance.now() when it last carried no stream (the sweep closes it after the keep-alive). */
  idleSince: number;
}

interface H2Entry {
  sessions: H2Upstream[];
  lastUsed: number;
}

export class UpstreamPools {
  readonly #connector: UpstreamConnector;
  readonly #limits: HttpLimits;
  readonly #h1 = new Map<string, H1Pool>();
  readonly #h2 = new Map<string, H2Entry>();
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(connector: UpstreamConnector, limits: HttpLimits) {
    this.#connector = connector;
    this.#limits = limits;
    this.#sweeper = setInterval(() => this.sweep(), Math.min(1000, limits.upstreamKeepAliveMs)).unref();
  }

  /** The HTTP/1.1 pool for `conn`'s key (made on first use). */
  h1(conn: ProxiedConnection, key: string): H1Pool {
    let pool = this.#h1.get(key);
    if (!pool) {
      pool = new H1Pool(conn, this.#connector, this.#limits);
      this.#h1.set(key, pool);
    }
    return pool;
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
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
      maxSessionMemory: this.#limits.maxSessionMemoryMb,
      maxHeaderListPairs: this.#limits.maxHeaderCount + 8,
      maxSendHeaderBlockLength: this.#limits.maxHeaderBytes,
    });
    const u: H2Upstream = { session, active: 0, idleSince: performance.now() };
    const drop = () => {
      const i = e.sessions.indexOf(u);
      if (i >= 0) e.sessions.splice(i, 1);
    };
    session.on('error', () => {});
    session.once('connect', () => session.setLocalWindowSize(CONNECTION_WINDOW));
    session.on('goaway', drop);
    session.on('close', drop);
    // Closed by sweep() when it carried no stream for a keep-alive period (a session timeout is
    // refreshed on every frame: a cost per request).
    return u;
  }

  /** Closes idle connections past their keep-alive, and pools and entries left empty. */
  sweep(): void {
    const now = performance.now();
    const cutoff = now - this.#limits.upstreamKeepAliveMs;
    for (const [k, pool] of this.#h1) {
      if (pool.sweep(now) && pool.lastUsed <= cutoff) this.#h1.delete(k);
    }
    for (const [k, e] of this.#h2) {
      for (const u of [...e.sessions])
        if (u.active === 0 && u.idleSince <= cutoff && !u.session.closed) u.session.close();
      if (e.sessions.length === 0 && e.lastUsed <= cutoff) this.#h2.delete(k);
    }
  }

  stats(): { h1Pools: number; h1Connections: number; h2Sessions: number; h2Streams: number } {
    let h1Connections = 0;
    for (const pool of this.#h1.values()) h1Connections += pool.open;
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
    for (const pool of this.#h1.values()) pool.close();
    this.#h1.clear();
    for (const e of this.#h2.values()) for (const u of [...e.sessions]) u.session.destroy();
    this.#h2.clear();
  }
}
