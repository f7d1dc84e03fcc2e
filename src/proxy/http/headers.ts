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

/** The tokens of the Connection fields (lower-case), or undefined when there is none. */
function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let tokens: Set<string> | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!equalsLower(raw[i] as string, 'connection')) continue;
    for (const t of (raw[i + 1] as string).split(',')) {
      const n = t.trim().toLowerCase();
      // `Connection: host` would drop the Host: the proxy never lets a client remove it that way.
      if (n !== '' && n !== 'host') (tokens ??= new Set()).add(n);
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
    const n = lower(name);
    if (HOP_BY_HOP.has(n) || listed?.has(n)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return ops.length === 0 ? out : (applyHeaderOps(out, ops) as string[]);
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
    const n = lower(name);
    if (keepUpgrade && (n === 'connection' || n === 'upgrade')) {
      out.push(name, strs[i + 1] as string);
      continue;
    }
    if (HOP_BY_HOP.has(n) || listed?.has(n)) continue;
    out.push(name, strs[i + 1] as string);
  }
  return out;
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
