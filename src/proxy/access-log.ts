// The node proxy's access log: one JSON line per finished request (pino's format), with Envoy's access-log
// fields, in the lab's log directory (root-only: directory 0700, files 0600). Size-bounded: when the
// file passes `maxBytes` it is renamed to `<file>.1` (older ones shift to .2 … .`keep`, the oldest
// is removed) and a new file is started, so the log never holds more than (keep + 1) × maxBytes.
// Writes are asynchronous (sonic-boom); the proxy never waits for the disk, and a failed write is
// counted, never fatal.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino } from 'pino';
import { privateDirSync, privateFileMode } from '../shared/private-fs.js';
import { IsoClock, jsonNumber, jsonString } from './json.js';
import type { AccessRecord } from './types.js';
import type { L7RuleOrigin } from '../policy/l7/types.js';

export const DEFAULT_ACCESS_LOG_MAX_BYTES = 16 << 20;
export const DEFAULT_ACCESS_LOG_KEEP = 2;

export interface AccessLogOptions {
  path: string;
  /** Bytes after which the file is rotated. */
  maxBytes?: number;
  /** Rotated files kept (<path>.1 … <path>.keep). */
  keep?: number;
  /** Synchronous writes (tests). */
  sync?: boolean;
}

/** One line of the access log (JSON keys; Envoy's names where Envoy has the field). */
export interface AccessLine {
  /** (Each line starts with pino's "level":"info" and "time": when it was written, the request's end.) */
  start_time: string;
  direction: string;
  /** The local endpoint whose policy sent the request through the proxy. */
  endpoint: string;
  method: string;
  path: string;
  authority: string;
  protocol: string;
  response_code: number;
  /** Comma-joined Envoy flags, '-' for none. */
  response_flags: string;
  response_code_details: string;
  bytes_received: number;
  bytes_sent: number;
  duration_ms: number;
  upstream_host: string;
  downstream_remote_address: string;
  source_identity: number;
  destination_identity: number;
  verdict: string;
  /** The policy that allowed or denied it ("CiliumNetworkPolicy app/web"), '-' for none. */
  policy: string;
  /** Allowed by an HTTP rule: "toPorts[].rules.http[<n>]" of that policy's rule. */
  http_rule?: number;
  user_agent?: string;
  request_id?: string;
}

const policyText = (o: L7RuleOrigin | undefined) =>
  o ? `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}` : '-';

const addr = (a: { ip: string; port: number }) =>
  a.ip.includes(':') ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;

const startClock = new IsoClock();
const nowClock = new IsoClock();

/** 7 to 21 decimal digits (a char scan: cheaper than a regex on every line). */
function isDecimalNs(s: string): boolean {
  if (s.length < 7 || s.length > 21) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * A string as JSON text, as jsonString (json.ts) writes it, with a char scan instead of its regex:
 * the fields of a line are short, and the scan costs a fraction of a regex call each.
 */
function str(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return jsonString(s);
  }
  return `"${s}"`;
}

/**
 * Math.round(ns / 1000) / 1000 as JSON text, exactly as JSON.stringify writes it (the shortest
 * decimal that reads back as the same double: the whole ms and up to three digits), without the
 * double-to-text conversion (a visible cost on every line).
 */
function durationMs(ns: number): string {
  const us = Math.round(ns / 1000);
  if (!(us >= 0 && us < 1e12) || !Number.isInteger(us)) return jsonNumber(us / 1000);
  const ms = Math.floor(us / 1000);
  let frac = us - ms * 1000;
  if (frac === 0) return String(ms);
  let digits = 3;
  while (frac % 10 === 0) {
    frac /= 10;
    digits--;
  }
  const f = String(frac);
  return `${ms}.${f.length < digits ? '0'.repeat(digits - f.length) + f : f}`;
}

/** RFC 3339 with milliseconds from ns since the epoch. */
function isoOf(ns: string): string {
  // Decimal ns: the milliseconds are all digits but the last six (exact, without BigInt).
  if (isDecimalNs(ns)) return startClock.iso(Number(ns.slice(0, -6)));
  try {
    return new Date(Number(BigInt(ns) / 1_000_000n)).toISOString();
  } catch {
    return new Date().toISOString();
  }
}

export function accessLine(a: AccessRecord): AccessLine {
  const line: AccessLine = {
    start_time: isoOf(a.startNs),
    direction: a.direction,
    endpoint: `${a.endpoint.namespace}/${a.endpoint.pod}`,
    method: a.method || '-',
    path: a.path || '-',
    authority: a.authority || '-',
    protocol: a.protocol,
    response_code: a.code,
    response_flags: a.flags.length > 0 ? a.flags.join(',') : '-',
    response_code_details: a.detail ?? '-',
    bytes_received: a.bytesReceived,
    bytes_sent: a.bytesSent,
    duration_ms: Math.round(a.durationNs / 1000) / 1000,
    upstream_host: a.upstream ? addr(a.upstream) : '-',
    downstream_remote_address: addr(a.source),
    source_identity: a.source.identity,
    destination_identity: a.destination.identity,
    verdict: a.verdict,
    policy: policyText(a.policy),
  };
  if (a.httpRule !== undefined) line.http_rule = a.httpRule;
  if (a.userAgent !== undefined) line.user_agent = a.userAgent;
  if (a.requestId !== undefined) line.request_id = a.requestId;
  return line;
}

/** The parts of pino's destination (sonic-boom) used here. */
interface Destination {
  write(s: string): boolean;
  reopen(file?: string): void;
  flushSync(): void;
  end(): void;
  on(e: 'error', cb: (err: Error) => void): unknown;
}

/**
 * One access-log line, newline included: `{"level":"info","time":<now>,…accessLine(a)}` (pino's
 * format, which the log had when pino wrote it; built here without pino's per-line machinery).
 */
export function renderAccess(a: AccessRecord): string {
  // Field by field, in accessLine's order: the same text as JSON.stringify(accessLine(a)).
  let s =
    `{"level":"info","time":"${nowClock.iso(Date.now())}","start_time":"${isoOf(a.startNs)}",` +
    `"direction":"${a.direction}",` +
    `"endpoint":${str(`${a.endpoint.namespace}/${a.endpoint.pod}`)},` +
    `"method":${str(a.method || '-')},"path":${str(a.path || '-')},` +
    `"authority":${str(a.authority || '-')},"protocol":"${a.protocol}",` +
    `"response_code":${jsonNumber(a.code)},` +
    `"response_flags":${str(a.flags.length > 0 ? a.flags.join(',') : '-')},` +
    `"response_code_details":${str(a.detail ?? '-')},` +
    `"bytes_received":${jsonNumber(a.bytesReceived)},"bytes_sent":${jsonNumber(a.bytesSent)},` +
    `"duration_ms":${durationMs(a.durationNs)},` +
    `"upstream_host":${str(a.upstream ? addr(a.upstream) : '-')},` +
    `"downstream_remote_address":${str(addr(a.source))},` +
    `"source_identity":${jsonNumber(a.source.identity)},` +
    `"destination_identity":${jsonNumber(a.destination.identity)},` +
    `"verdict":"${a.verdict}","policy":${str(policyText(a.policy))}`;
  if (a.httpRule !== undefined) s += `,"http_rule":${jsonNumber(a.httpRule)}`;
  if (a.userAgent !== undefined) s += `,"user_agent":${str(a.userAgent)}`;
  if (a.requestId !== undefined) s += `,"request_id":${str(a.requestId)}`;
  return s + '}\n';
}

export class AccessLog {
  readonly path: string;
  readonly #maxBytes: number;
  readonly #keep: number;
  readonly #dest: Destination;
  #bytes = 0;
  lines = 0;
  errors = 0;
  rotations = 0;

  constructor(o: AccessLogOptions) {
    this.path = o.path;
    this.#maxBytes = o.maxBytes ?? DEFAULT_ACCESS_LOG_MAX_BYTES;
    this.#keep = Math.max(1, o.keep ?? DEFAULT_ACCESS_LOG_KEEP);
    privateDirSync(dirname(o.path));
    const sonic = pino.destination({
      dest: o.path,
      sync: o.sync ?? false,
      mode: privateFileMode,
      append: true,
      // Lines are gathered up to 8 KiB and handed to the kernel together, at the latest 250 ms
      // after they were written: one write per line (a thread-pool job each) cost the proxy about
      // a sixth of its CPU per request under load (bench/l7.ts). Synchronous (tests): each line.
      minLength: o.sync ? 0 : 8192,
      periodicFlush: o.sync ? 0 : 250,
    }) as unknown as Destination;
    sonic.on('error', () => {
      this.errors++;
    });
    this.#dest = sonic;
  }

  /** Writes `n` lines already rendered by renderAccess (from a proxy worker: workers.ts). */
  writeLines(s: string, n: number): void {
    // Counts bytes as lines are handed over; rotates once past the bound.
    this.#bytes += Buffer.byteLength(s);
    this.lines += n;
    try {
      this.#dest.write(s);
    } catch {
      this.errors++;
    }
    if (this.#bytes >= this.#maxBytes) this.#rotate();
  }

  write(a: AccessRecord): void {
    this.writeLines(renderAccess(a), 1);
  }

  stats(): { lines: number; errors: number; rotations: number } {
    return { lines: this.lines, errors: this.errors, rotations: this.rotations };
  }

  #rotate(): void {
    try {
      // Lines written so far go to the file being rotated (the descriptor follows the rename).
      for (let i = this.#keep; i >= 1; i--) {
        const from = i === 1 ? this.path : `${this.path}.${i - 1}`;
        const to = `${this.path}.${i}`;
        if (i === this.#keep) rmSync(to, { force: true });
        if (existsSync(from)) renameSync(from, to);
      }
      this.#dest.reopen(this.path);
      this.rotations++;
    } catch {
      this.errors++;
    }
    this.#bytes = 0;
  }

  /** Writes what is buffered and closes the file. */
  close(): void {
    try {
      this.#dest.flushSync();
    } catch {
      // nothing buffered, or the file is gone
    }
    this.#dest.end();
  }
}
