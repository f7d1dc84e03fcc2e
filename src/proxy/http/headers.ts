// Header handling of the HTTP engine: what is forwarded (hop-by-hop fields stripped, the policy's
// header operations applied) and what the L7 records show (credentials redacted). Headers travel as
// node's flat raw arrays ([name, value, name, value, …]) so nothing is parsed that is not needed.
import { applyHeaderOps, equalsLower, type HeaderOp } from '../../policy/l7/http-match.js';

/**
 * Fields that describe one connection, never forwarded (RFC 9110 §7.6.1, plus Expect, answered by
 * the proxy itself, and HTTP2-Settings, which belongs to an h2c upgrade the proxy does not do).
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'upgrade',
  'expect',
  'http2-settings',
]);

/** Header fields whose values never appear in records. */
const CREDENTIALS = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);
export const REDACTED = '[redacted]';
/** Records show at most this many header fields, each value cut at this length. */
const RECORD_MAX_HEADERS = 32;
const RECORD_MAX_VALUE = 256;

function lower(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.toLowerCase();
  }
  return s;
}

/** HOP_BY_HOP.has(name.toLowerCase()) without lower-casing (no string made per field). */
function isHopByHop(name: string): boolean {
  switch (name.length) {
    case 2:
      return equalsLower(name, 'te');
    case 6:
      return equalsLower(name, 'expect');
    case 7:
      return equalsLower(name, 'upgrade');
    case 10:
      return equalsLower(name, 'connection') || equalsLower(name, 'keep-alive');
    case 14:
      return equalsLower(name, 'http2-settings');
    case 16:
      return equalsLower(name, 'proxy-connection');
    case 17:
      return equalsLower(name, 'transfer-encoding');
    default:
      return false;
  }
}

/**
 * The tokens of the Connection fields (lower-case) that name fields not removed anyway, or
 * undefined when there is none (the usual `Connection: keep-alive` or `close` makes no set).
 */
function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let tokens: Set<string> | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!equalsLower(raw[i] as string, 'connection')) continue;
    const v = raw[i + 1] as string;
    if (equalsLower(v, 'keep-alive') || equalsLower(v, 'close')) continue;
    for (const t of v.split(',')) {
      const n = t.trim().toLowerCase();
      // `Connection: host` would drop the Host: the proxy never lets a client remove it that way.
      if (n !== '' && n !== 'host' && !HOP_BY_HOP.has(n)) (tokens ??= new Set()).add(n);
    }
  }
  return tokens;
}

/**
 * The request fields to forward to an HTTP/1.1 upstream: hop-by-hop fields and those the client's
 * Connection field names are removed, then the policy's header operations are applied.
 */
export function forwardRequestHeaders(raw: readonly string[], ops: readonly HeaderOp[]): string[] {
  const listed = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (isHopByHop(name) || (listed !== undefined && listed.has(lower(name)))) continue;
    out.push(name, raw[i + 1] as string);
  }
  return ops.length === 0 ? out : (applyHeaderOps(out, ops) as string[]);
}

/**
 * The request head for an HTTP/1.1 upstream: the request line and the fields of
 * forwardRequestHeaders, each `name: value\r\n` (without the blank line that ends the head).
 */
export function forwardRequestHead(
  method: string,
  url: string,
  raw: readonly string[],
  ops: readonly HeaderOp[],
): string {
  let head = `${method} ${url} HTTP/1.1\r\n`;
  if (ops.length > 0) {
    const fields = forwardRequestHeaders(raw, ops);
    for (let i = 0; i + 1 < fields.length; i += 2) head += `${fields[i]}: ${fields[i + 1]}\r\n`;
    return head;
  }
  // No header operations: the fields go straight from the parsed array into the head.
  const listed = connectionTokens(raw);
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (isHopByHop(name) || (listed !== undefined && listed.has(lower(name)))) continue;
    head += `${name}: ${raw[i + 1] as string}\r\n`;
  }
  return head;
}

/**
 * The response fields to relay to an HTTP/1.1 client from an upstream's raw header buffers:
 * hop-by-hop fields are removed (node frames the body again). `keepUpgrade` keeps Connection and
 * Upgrade for a 101 answer.
 */
export function relayResponseHeaders(
  raw: readonly Buffer[] | readonly string[],
  keepUpgrade = false,
): string[] {
  const strs: string[] = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i] as Buffer | string;
    strs[i] = typeof v === 'string' ? v : v.toString('latin1');
  }
  const listed = keepUpgrade ? undefined : connectionTokens(strs);
  const out: string[] = [];
  for (let i = 0; i + 1 < strs.length; i += 2) {
    const name = strs[i] as string;
    if (keepUpgrade && (equalsLower(name, 'connection') || equalsLower(name, 'upgrade'))) {
      out.push(name, strs[i + 1] as string);
      continue;
    }
    if (isHopByHop(name) || (listed !== undefined && listed.has(lower(name)))) continue;
    out.push(name, strs[i + 1] as string);
  }
  return out;
}

/** Response fields an L7 record shows (lower-case names). */
function isResponseRecordField(name: string): boolean {
  switch (name.length) {
    case 11:
      return equalsLower(name, 'grpc-status');
    case 12:
      return equalsLower(name, 'content-type');
    case 14:
      return equalsLower(name, 'content-length');
    default:
      return false;
  }
}

/** What relayResponseHead found while rendering (one object, reused: read it before the next call). */
export interface RelayedHead {
  /** The relayed fields, each `name: value\r\n`. */
  fields: string;
  /** A Content-Length field is among them. */
  hasLength: boolean;
  /** Content-Type, Content-Length and grpc-status, as the RESPONSE record shows them. */
  record: { key: string; value: string }[];
}

const relayed: RelayedHead = { fields: '', hasLength: false, record: [] };

/**
 * relayResponseHeaders rendered straight into head text in one pass over the parsed fields, with
 * what the response's framing and record need (no intermediate arrays).
 */
export function relayResponseHead(raw: readonly string[], keepUpgrade: boolean): RelayedHead {
  const listed = keepUpgrade ? undefined : connectionTokens(raw);
  let fields = '';
  let hasLength = false;
  const record: { key: string; value: string }[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (keepUpgrade && (equalsLower(name, 'connection') || equalsLower(name, 'upgrade'))) {
      fields += `${name}: ${value}\r\n`;
      continue;
    }
    if (isHopByHop(name) || (listed !== undefined && listed.has(lower(name)))) continue;
    fields += `${name}: ${value}\r\n`;
    if (isResponseRecordField(name)) {
      const key = lower(name);
      if (key === 'content-length') hasLength = true;
      record.push({ key, value });
    }
  }
  relayed.fields = fields;
  relayed.hasLength = hasLength;
  relayed.record = record;
  return relayed;
}

/** The first value of field `lowerName` in a flat raw array, or undefined. */
export function rawHeader(raw: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) if (equalsLower(raw[i] as string, lowerName)) return raw[i + 1];
  return undefined;
}

/** Request fields for an L7 record: pseudo-headers left out, credentials redacted, bounded. */
export function recordHeaders(raw: readonly string[]): { key: string; value: string }[] {
  const out: { key: string; value: string }[] = [];
  for (let i = 0; i + 1 < raw.length && out.length < RECORD_MAX_HEADERS; i += 2) {
    const key = lower(raw[i] as string);
    if (key.charCodeAt(0) === 58 /* ':' */) continue;
    let value = raw[i + 1] as string;
    if (CREDENTIALS.has(key)) value = REDACTED;
    else if (value.length > RECORD_MAX_VALUE) value = value.slice(0, RECORD_MAX_VALUE);
    out.push({ key, value });
  }
  return out;
}
