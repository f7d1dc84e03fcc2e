// The HTTP engine's access-log entries (src/proxy/types.ts AccessRecord): one per request, written
// once when it ends, from its RequestFacts (records.ts) — and one per protocol error that no request
// carries. Envoy's response flags say how a request ended when it did not end normally:
//   UF  the upstream connection failed (refused, unreachable)    UC  the upstream connection ended
//   UT  the upstream took too long (504, or silent mid-response)  DC  the client went away first
//   DPE malformed or oversized request (400, 413, 414, 431, 501)  SI  the request timed out (408)
import type { ConnCtx, Engine } from './engine.js';
import { nowNs, wallNs, type RequestFacts } from './records.js';
import type { AccessRecord } from '../types.js';

/** The response flag of a local reply's detail ('' when the reply is no failure of the request). */
export function flagOfDetail(detail: string): string {
  if (detail === 'request_timeout') return 'SI';
  if (
    detail.startsWith('downstream_protocol_error') ||
    detail === 'uri_too_long' ||
    detail === 'request_headers_too_large' ||
    detail === 'unsupported_transfer_coding'
  )
    return 'DPE';
  return '';
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EACCES']);

/**
 * The response flag of an upstream failure: UT for a timeout, UF when no connection was made
 * (`connected` false, or a connect error), else UC.
 */
export function upstreamFlag(err: unknown, connected: boolean): 'UT' | 'UF' | 'UC' {
  let connectError = false;
  for (
    let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0;
    e && i < 4;
    e = e.cause as never, i++
  ) {
    const code = typeof e.code === 'string' ? e.code : '';
    if (code === 'ETIMEDOUT' || code === 'WEIR_UPSTREAM_TIMEOUT' || code.endsWith('_TIMEOUT')) return 'UT';
    if (CONNECT_ERRORS.has(code)) connectError = true;
  }
  return !connected || connectError ? 'UF' : 'UC';
}

/**
 * Writes the request's access-log entry (once; later calls do nothing). `flag` is added to its
 * response flags; `code`, when given, is what the client was sent instead of the facts' status.
 */
export function finishAccess(
  engine: Engine,
  f: RequestFacts,
  o: { flag?: string; code?: number; detail?: string } = {},
): void {
  if (f.logged) return;
  f.logged = true;
  if (o.flag && !f.flags.includes(o.flag)) f.flags.push(o.flag);
  if (o.detail) f.detail = o.detail;
  const c = f.conn;
  const a: AccessRecord = {
    startNs: wallNs(f.t0),
    durationNs: Math.max(0, Math.round((performance.now() - f.t0) * 1e6)),
    direction: c.direction,
    endpoint: { id: c.endpoint.id, namespace: c.endpoint.namespace, pod: c.endpoint.pod },
    source: f.ends.source,
    destination: f.ends.destination,
    protocol: f.protocol,
    method: f.method,
    path: f.target,
    authority: f.authority,
    code: o.code ?? f.code,
    verdict: f.verdict,
    flags: f.flags,
    bytesReceived: f.rx,
    bytesSent: f.tx,
  };
  if (f.detail) a.detail = f.detail;
  if (f.upstream) a.upstream = { ip: c.dst.ip, port: c.dst.port };
  if (f.origin) a.policy = f.origin;
  if (f.httpRule !== undefined) a.httpRule = f.httpRule;
  for (const h of f.headers) {
    if (h.key === 'user-agent') a.userAgent = h.value;
    else if (h.key === 'x-request-id') a.requestId = h.value;
  }
  engine.access(a);
}

/** The entry of a protocol error no parsed request carries (a bad head, a slow client, HTTP/2 frames). */
export function protocolErrorAccess(
  engine: Engine,
  ctx: ConnCtx,
  protocol: AccessRecord['protocol'],
  code: number,
  detail: string,
): void {
  const c = ctx.conn;
  const flag = flagOfDetail(detail) || 'DPE';
  engine.access({
    startNs: nowNs(),
    durationNs: 0,
    direction: c.direction,
    endpoint: { id: c.endpoint.id, namespace: c.endpoint.namespace, pod: c.endpoint.pod },
    source: ctx.ends.source,
    destination: ctx.ends.destination,
    protocol,
    method: '',
    path: '',
    authority: '',
    code,
    verdict: 'ERROR',
    flags: [flag],
    detail,
    bytesReceived: 0,
    bytesSent: 0,
  });
}
