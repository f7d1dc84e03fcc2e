// State shared by the HTTP engine's parts (the handler, the HTTP/1.1 and HTTP/2 sides, local
// replies): limits, upstream pools, counters and the record sink. Per-connection state hangs off the
// client socket.
import type { Http2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { L7Record, ProxiedConnection } from '../types.js';
import type { HttpLimits } from './limits.js';
import type { RecordEnds } from './records.js';
import type { UpstreamPools } from './upstream.js';

/** The per-connection context, on the client socket under this symbol. */
export const kCtx = Symbol('weir.proxy.http.connection');

export interface ConnCtx {
  conn: ProxiedConnection;
  ends: RecordEnds;
  /** The upstream pool key (client IP, original destination). */
  key: string;
  socket: Socket;
  protocol: 'sniffing' | 'http1' | 'http2';
  /** HTTP/2: the server session on this connection. */
  session?: Http2Session;
}

export function ctxOf(socket: Socket): ConnCtx {
  return (socket as Socket & { [kCtx]: ConnCtx })[kCtx];
}

/** Counters; gauges are the `*Active` fields. */
export interface HttpHandlerStats {
  connectionsTotal: number;
  connectionsActive: number;
  http1ConnectionsActive: number;
  http2ConnectionsActive: number;
  /** Closed at once: over limits.maxConnections or after close(). */
  connectionsRejected: number;
  requestsTotal: number;
  requestsActive: number;
  /** Sent upstream. */
  forwarded: number;
  /** Answered 403 by policy. */
  denied: number;
  /** Answered by the proxy with a 4xx other than 403 (malformed, too large, timeouts). */
  rejected: number;
  /** Answered 502/504 by the proxy, or cut after the upstream failed mid-response. */
  upstreamErrors: number;
  /** Upstream requests aborted because the client went away first. */
  cancelled: number;
  /** Upgraded (WebSocket) tunnels. */
  tunnelsTotal: number;
  tunnelsActive: number;
  /** onRecord threw (the record was dropped, the request went on). */
  recordErrors: number;
}

export function newStats(): HttpHandlerStats {
  return {
    connectionsTotal: 0,
    connectionsActive: 0,
    http1ConnectionsActive: 0,
    http2ConnectionsActive: 0,
    connectionsRejected: 0,
    requestsTotal: 0,
    requestsActive: 0,
    forwarded: 0,
    denied: 0,
    rejected: 0,
    upstreamErrors: 0,
    cancelled: 0,
    tunnelsTotal: 0,
    tunnelsActive: 0,
    recordErrors: 0,
  };
}

export interface Engine {
  readonly limits: HttpLimits;
  readonly pools: UpstreamPools;
  readonly stats: HttpHandlerStats;
  /** close() was called: no new connections, keep-alive ends after the current request. */
  closing: boolean;
  emit(r: L7Record): void;
}
