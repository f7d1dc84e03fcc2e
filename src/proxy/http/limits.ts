// The HTTP engine's limits and timeouts, with Envoy-like defaults. Every limit answers the client
// cleanly (a status code, a GOAWAY or a stream reset) instead of growing without bound.
import { WeirError } from '../../shared/errors.js';

export interface HttpLimits {
  /** Request line + header fields (HTTP/1.1) or header list (HTTP/2), bytes → 431. Envoy: 60 KiB. */
  maxHeaderBytes: number;
  /** The request target, bytes → 414 (must be below maxHeaderBytes; longer ones get 431). */
  maxUriBytes: number;
  /** Header fields per request → 431. Envoy: 100. */
  maxHeaderCount: number;
  /** Time to receive a request's headers, from its first byte (slowloris) → 408 and close. */
  headersTimeoutMs: number;
  /** Time to receive a whole HTTP/1.1 request (headers and body) → 408 and close. */
  requestTimeoutMs: number;
  /** An idle client connection (no request in flight) is closed after this. */
  idleTimeoutMs: number;
  /** Open client connections; more are closed at once. */
  maxConnections: number;
  /** Concurrent streams per HTTP/2 client connection (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused. */
  maxConcurrentStreams: number;
  /** Memory nghttp2 may hold per HTTP/2 session (MB) before new streams are refused. */
  maxSessionMemoryMb: number;
  /** Upstream TCP connect → 504. */
  upstreamConnectTimeoutMs: number;
  /** Request sent → upstream response headers → 504. Envoy's route timeout default is 15 s. */
  upstreamHeadersTimeoutMs: number;
  /** No upstream response bytes for this long while a body streams → the stream is reset. Envoy: 5 min. */
  upstreamIdleTimeoutMs: number;
  /** An idle pooled upstream connection is closed after this. */
  upstreamKeepAliveMs: number;
  /** HTTP/1.1 connections per upstream pool (one pool per client IP and original destination). */
  upstreamConnectionsPerPool: number;
  /** Time close() waits for requests in flight before it cuts the rest. */
  drainTimeoutMs: number;
}

export const defaultHttpLimits: Readonly<HttpLimits> = Object.freeze({
  maxHeaderBytes: 60 * 1024,
  maxUriBytes: 16 * 1024,
  maxHeaderCount: 100,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  idleTimeoutMs: 60_000,
  maxConnections: 16_384,
  maxConcurrentStreams: 100,
  maxSessionMemoryMb: 10,
  upstreamConnectTimeoutMs: 5_000,
  upstreamHeadersTimeoutMs: 15_000,
  upstreamIdleTimeoutMs: 300_000,
  upstreamKeepAliveMs: 4_000,
  upstreamConnectionsPerPool: 128,
  drainTimeoutMs: 5_000,
});

/** The defaults overridden by `given`; throws ERR_PROXY_LIMITS naming the bad field. */
export function resolveLimits(given: Partial<HttpLimits> | undefined): HttpLimits {
  const out = { ...defaultHttpLimits, ...given };
  for (const [k, v] of Object.entries(out)) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new WeirError('ERR_PROXY_LIMITS', `limits.${k} must be a positive integer, got ${String(v)}`, {
        location: { field: `limits.${k}` },
      });
    }
  }
  if (out.maxUriBytes >= out.maxHeaderBytes) {
    throw new WeirError('ERR_PROXY_LIMITS', 'limits.maxUriBytes must be below limits.maxHeaderBytes', {
      location: { field: 'limits.maxUriBytes' },
    });
  }
  if (out.headersTimeoutMs > out.requestTimeoutMs) {
    throw new WeirError(
      'ERR_PROXY_LIMITS',
      'limits.headersTimeoutMs must not exceed limits.requestTimeoutMs',
      {
        location: { field: 'limits.headersTimeoutMs' },
      },
    );
  }
  return out;
}
