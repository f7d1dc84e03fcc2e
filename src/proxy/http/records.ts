// L7 records of the HTTP engine (one REQUEST when a request is judged, one RESPONSE when response
// headers are relayed or the proxy answers itself) and their access-log line.
import type { L7RuleOrigin } from '../../policy/l7/types.js';
import type { Address, L7Record, ProxiedConnection } from '../types.js';

/** The two ends of a proxied connection as records show them (identities by direction). */
export interface RecordEnds {
  source: Address & { identity: number };
  destination: Address & { identity: number };
}

export function recordEnds(conn: ProxiedConnection): RecordEnds {
  const local = conn.endpoint.identity;
  const remote = conn.remoteIdentity;
  return {
    source: { ip: conn.src.ip, port: conn.src.port, identity: conn.direction === 'ingress' ? remote : local },
    destination: {
      ip: conn.dst.ip,
      port: conn.dst.port,
      identity: conn.direction === 'ingress' ? local : remote,
    },
  };
}

// Wall clock in ns: the epoch at start plus the monotonic clock since.
const epochBaseNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** Now, ns since the epoch, as a decimal string. */
export function nowNs(): string {
  return (epochBaseNs + process.hrtime.bigint()).toString();
}

/** "http://host/path" as Hubble shows it (an absolute-form target is kept as is). */
export function recordUrl(scheme: string, host: string, target: string): string {
  if (target.startsWith('http://') || target.startsWith('https://')) return target;
  return `${scheme}://${host}${target.startsWith('/') || target === '' ? '' : '/'}${target}`;
}

/** What one request contributes to its two records. */
export interface RequestFacts {
  conn: ProxiedConnection;
  ends: RecordEnds;
  method: string;
  url: string;
  protocol: 'HTTP/1.1' | 'HTTP/2';
  headers: { key: string; value: string }[];
  /** performance.now() when the request was received. */
  t0: number;
}

export function requestRecord(
  f: RequestFacts,
  verdict: L7Record['verdict'],
  policy: L7RuleOrigin | undefined,
  detail: string | undefined,
): L7Record {
  const r: L7Record = {
    timeNs: nowNs(),
    type: 'REQUEST',
    direction: f.conn.direction,
    endpointId: f.conn.endpoint.id,
    verdict,
    source: f.ends.source,
    destination: f.ends.destination,
    http: { method: f.method, url: f.url, protocol: f.protocol, headers: f.headers },
  };
  if (policy) r.policy = policy;
  if (detail) r.detail = detail;
  return r;
}

export function responseRecord(
  f: RequestFacts,
  verdict: L7Record['verdict'],
  code: number,
  policy: L7RuleOrigin | undefined,
  detail: string | undefined,
  headers: { key: string; value: string }[] = [],
): L7Record {
  const r: L7Record = {
    timeNs: nowNs(),
    type: 'RESPONSE',
    direction: f.conn.direction,
    endpointId: f.conn.endpoint.id,
    verdict,
    source: f.ends.source,
    destination: f.ends.destination,
    http: { method: f.method, url: f.url, protocol: f.protocol, code, headers },
    latencyNs: Math.max(0, Math.round((performance.now() - f.t0) * 1e6)),
  };
  if (policy) r.policy = policy;
  if (detail) r.detail = detail;
  return r;
}

const originText = (o: L7RuleOrigin) =>
  `${o.kind === 'CiliumClusterwideNetworkPolicy' ? 'CCNP' : 'CNP'} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`;

/**
 * One access-log line per record, Envoy-like:
 * `<time> <dir> <REQUEST|RESPONSE> <verdict> "<METHOD> <url> <protocol>" <code|-> <src>(<id>) -> <dst>(<id>) <latency> <policy> <detail>`.
 */
export function formatAccessLog(r: L7Record): string {
  const ms = Number(BigInt(r.timeNs) / 1_000_000n);
  const h = r.http;
  const req = h ? `"${h.method || '-'} ${h.url || '-'} ${h.protocol}"` : '"-"';
  const lat = r.latencyNs === undefined ? '-' : `${(r.latencyNs / 1e6).toFixed(3)}ms`;
  return [
    new Date(ms).toISOString(),
    r.direction,
    r.type,
    r.verdict,
    req,
    h?.code ?? '-',
    `${r.source.ip}:${r.source.port}(${r.source.identity})`,
    '->',
    `${r.destination.ip}:${r.destination.port}(${r.destination.identity})`,
    lat,
    r.policy ? `policy="${originText(r.policy)}"` : 'policy=-',
    r.detail ? `detail=${r.detail}` : 'detail=-',
  ].join(' ');
}

/** A RESPONSE record for a connection-level failure with no parsed request (400, 408, 431, …). */
export function protocolErrorRecord(
  conn: ProxiedConnection,
  ends: RecordEnds,
  protocol: 'HTTP/1.1' | 'HTTP/2',
  code: number,
  detail: string,
): L7Record {
  return {
    timeNs: nowNs(),
    type: 'RESPONSE',
    direction: conn.direction,
    endpointId: conn.endpoint.id,
    verdict: 'ERROR',
    source: ends.source,
    destination: ends.destination,
    http: { method: '', url: '', protocol, code, headers: [] },
    detail,
  };
}
