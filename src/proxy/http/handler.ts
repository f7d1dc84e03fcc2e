// The HTTP engine of the node proxy: takes redirected client connections from the process side,
// tells HTTP/1.1 from HTTP/2 (the client preface, prior knowledge) and serves them — every request
// judged against the connection's current L7 policy, denied ones answered 403, allowed ones
// forwarded to the original destination through pooled upstream connections made by the
// transparent connector. One REQUEST and one RESPONSE record per request go to onRecord.
//
//   handle(socket, conn) ─ sniff ─┬─ HTTP/1.1: llhttp ─ judge ─ 403 | H1Pool connection ─────┐
//                                 └─ HTTP/2:   node:http2 session ─ judge ─ 403 | h2 session ─┴─ connector(conn)
import type { Socket } from 'node:net';
import type { AccessRecord, L7Record, ProxiedConnection, UpstreamConnector } from '../types.js';
import { kCtx, newStats, type ConnCtx, type Engine, type HttpHandlerStats } from './engine.js';
import { createHttp1 } from './http1.js';
import { createHttp2Server } from './http2.js';
import { resolveLimits, type HttpLimits } from './limits.js';
import { probe } from './llhttp.js';
import { recordEnds } from './records.js';
import { poolKey, UpstreamPools } from './upstream.js';

export type { HttpHandlerStats } from './engine.js';
export type { HttpLimits } from './limits.js';

export interface HttpHandlerOptions {
  /** Opens upstream connections (transparently from the client's IP to the original destination). */
  connector: UpstreamConnector;
  /** Receives every L7 record, synchronously; it must not throw (a throw is counted, the record lost). */
  onRecord(r: L7Record): void;
  /** Receives one entry per finished request (the access log), synchronously; like onRecord. */
  onAccess?(a: AccessRecord): void;
  limits?: Partial<HttpLimits>;
}

export interface HttpHandler {
  /** Serves one accepted, redirected client connection. */
  handle(socket: Socket, conn: ProxiedConnection): void;
  /** Stops taking connections, lets requests in flight finish (limits.drainTimeoutMs), closes the rest. */
  close(): Promise<void>;
  stats(): HttpHandlerStats & { upstream: ReturnType<UpstreamPools['stats']> };
}

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function createHttpHandler(opts: HttpHandlerOptions): HttpHandler {
  const limits = resolveLimits(opts.limits);
  probe();
  const stats = newStats();
  const pools = new UpstreamPools(opts.connector, limits);
  const sockets = new Set<Socket>();
  const onRecord = opts.onRecord;
  const onAccess = opts.onAccess;
  const engine: Engine = {
    limits,
    pools,
    stats,
    closing: false,
    emit(r: L7Record): void {
      try {
        onRecord(r);
      } catch {
        stats.recordErrors++;
      }
    },
    access(a: AccessRecord): void {
      if (!onAccess) return;
      try {
        onAccess(a);
      } catch {
        stats.recordErrors++;
      }
    },
  };
  const h1 = createHttp1(engine);
  const h2 = createHttp2Server(engine);
  // One sweep checks every HTTP/1.1 connection's timeouts (no timer per request).
  const shortest = Math.min(limits.headersTimeoutMs, limits.upstreamHeadersTimeoutMs, limits.idleTimeoutMs);
  const sweeper = setInterval(
    () => h1.sweep(performance.now()),
    Math.max(25, Math.min(1000, shortest / 4)),
  ).unref();

  function start(socket: Socket, ctx: ConnCtx, first: Buffer): void {
    if (
      first.length >= PREFACE.length &&
      first.compare(PREFACE, 0, PREFACE.length, 0, PREFACE.length) === 0
    ) {
      ctx.protocol = 'http2';
      stats.http2ConnectionsActive++;
      socket.pause();
      socket.unshift(first);
      h2.accept(socket, ctx);
    } else {
      ctx.protocol = 'http1';
      stats.http1ConnectionsActive++;
      h1.accept(socket, ctx, first);
    }
  }

  function handle(socket: Socket, conn: ProxiedConnection): void {
    if (engine.closing || sockets.size >= limits.maxConnections) {
      stats.connectionsRejected++;
      socket.destroy();
      return;
    }
    stats.connectionsTotal++;
    stats.connectionsActive++;
    sockets.add(socket);
    const ctx: ConnCtx = {
      conn,
      ends: recordEnds(conn),
      key: poolKey(conn),
      socket,
      protocol: 'sniffing',
    };
    (socket as Socket & { [kCtx]: ConnCtx })[kCtx] = ctx;
    socket.setNoDelay(true);
    // The engine decides what a client's FIN means (node would end the socket by itself).
    socket.allowHalfOpen = true;
    socket.on('error', () => {});
    socket.once('close', () => {
      sockets.delete(socket);
      stats.connectionsActive--;
      if (ctx.protocol === 'http1') stats.http1ConnectionsActive--;
      else if (ctx.protocol === 'http2') stats.http2ConnectionsActive--;
    });
    // Until the first bytes tell the protocol: a client that sends nothing is dropped like a slow one.
    let seen: Buffer | undefined;
    const timer = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
    // A client that closes its side before it said anything (a connect-and-close health check, a
    // port probe) is done: its connection is released at once, not held until the header timeout.
    const onEnd = () => socket.destroy();
    const onData = (chunk: Buffer) => {
      seen = seen ? Buffer.concat([seen, chunk]) : chunk;
      const n = Math.min(seen.length, PREFACE.length);
      // A prefix of the preface: wait for the rest of it.
      if (n < PREFACE.length && seen.compare(PREFACE, 0, n, 0, n) === 0) return;
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      clearTimeout(timer);
      start(socket, ctx, seen);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', () => clearTimeout(timer));
  }

  async function close(): Promise<void> {
    if (engine.closing) return;
    engine.closing = true;
    h1.drain();
    for (const s of sockets) {
      const ctx = (s as Socket & { [kCtx]: ConnCtx })[kCtx];
      if (ctx.protocol === 'sniffing') s.destroy();
      else if (ctx.protocol === 'http2') ctx.session?.close();
    }
    const deadline = performance.now() + limits.drainTimeoutMs;
    while (sockets.size > 0 && performance.now() < deadline) {
      h1.drain();
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const s of sockets) s.destroy();
    clearInterval(sweeper);
    await pools.close();
    h2.close();
    h2.server.close();
  }

  return {
    handle,
    close,
    stats: () => ({ ...stats, upstream: pools.stats() }),
  };
}
