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

// Wall clock in ns as decimal text without BigInt (a BigInt and its text per record were a visible
// share of the proxy's CPU per request): performance.timeOrigin (wall ms when the clock started)
// plus performance.now(), in whole ms and ns within the ms, each exact in a double.
const originMs = Math.floor(performance.timeOrigin);
const originNs = Math.min(999_999, Math.round((performance.timeOrigin - originMs) * 1e6));
let lastMs = -1;
let lastMsText = '';
/** 000 … 999. */
const DIGITS3: readonly string[] = Array.from({ length: 1000 }, (_, i) => String(1000 + i).slice(1));

/** A performance.now() value as wall-clock ns since the epoch, decimal. */
export function wallNs(t: number): string {
  const whole = Math.floor(t);
  let ns = originNs + Math.round((t - whole) * 1e6);
  let ms = originMs + whole;
  while (ns >= 1e6) {
    ns -= 1e6;
    ms++;
  }
  // The ms part is the same for many records in a row: its text is kept.
  if (ms !== lastMs) {
    lastMs = ms;
    lastMsText = String(ms);
  }
  // The ns within the ms as six digits from two table entries (no number-to-text per record).
  const hi = Math.floor(ns / 1000);
  return lastMsText + ((DIGITS3[hi] as string) + (DIGITS3[ns - hi * 1000] as string));
}

/** Now, ns since the epoch, as a decimal string. */
export function nowNs(): string {
  return wallNs(performance.now());
}

/** "http://host/path" as Hubble shows it (an absolute-form target is kept as is). */
export function recordUrl(scheme: string, host: string, target: string): string {
  if (target.startsWith('http://') || target.startsWith('https://')) return target;
  return `${scheme}://${host}${target.startsWith('/') || target === '' ? '' : '/'}${target}`;
}

/** What one request contributes to its two records and its access-log entry. */
export interface RequestFacts {
  conn: ProxiedConnection;
  ends: RecordEnds;
  method: string;
  url: string;
  protocol: 'HTTP/1.1' | 'HTTP/2';
  headers: { key: string; value: string }[];
  /** performance.now() when the request was received. */
  t0: number;
  // For the access log (access.ts): what happened to the request, filled in as it goes.
  /** The request target and Host / :authority as sent. */
  target: string;
  authority: string;
  /** The last record's verdict, status (0: none yet), rule and detail. */
  verdict: L7Record['verdict'];
  code: number;
  origin: L7RuleOrigin | undefined;
  httpRule: number | undefined;
  detail: string | undefined;
  flags: string[];
  /** Request body bytes received, response body bytes sent. */
  rx: number;
  tx: number;
  /** Sent to the upstream. */
  upstream: boolean;
  /** Its access-log entry is written. */
  logged: boolean;
}

/** The facts of a request just parsed. */
export function requestFacts(
  conn: ProxiedConnection,
  ends: RecordEnds,
  r: {
    method: string;
    scheme: string;
    target: string;
    authority: string;
    protocol: RequestFacts['protocol'];
    headers: { key: string; value: string }[];
  },
): RequestFacts {
  return {
    conn,
    ends,
    method: r.method,
    url: recordUrl(r.scheme, r.authority, r.target),
    protocol: r.protocol,
    headers: r.headers,
    t0: performance.now(),
    target: r.target,
    authority: r.authority,
    verdict: 'FORWARDED',
    code: 0,
    origin: undefined,
    httpRule: undefined,
    detail: undefined,
    flags: [],
    rx: 0,
    tx: 0,
    upstream: false,
    logged: false,
  };
}

export function requestRecord(
  f: RequestFacts,
  verdict: L7Record['verdict'],
  policy: L7RuleOrigin | undefined,
  detail: string | undefined,
  httpRule?: number,
): L7Record {
  f.verdict = verdict;
  f.origin = policy;
  f.detail = detail;
  f.httpRule = httpRule;
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
  f.verdict = verdict;
  f.code = code;
  if (policy) f.origin = policy;
  if (detail) f.detail = detail;
  const now = performance.now();
  const r: L7Record = {
    timeNs: wallNs(now),
    type: 'RESPONSE',
    direction: f.conn.direction,
    endpointId: f.conn.endpoint.id,
    verdict,
    source: f.ends.source,
    destination: f.ends.destination,
    http: { method: f.method, url: f.url, protocol: f.protocol, code, headers },
    latencyNs: Math.max(0, Math.round((now - f.t0) * 1e6)),
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
