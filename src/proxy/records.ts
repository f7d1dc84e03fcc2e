// L7 records on their way to the agent: a bounded queue drained into the one stream the agent
// holds open (GET /v1/records on the admin socket). The proxy never waits for the agent: with no
// stream, or a full one, the oldest waiting records stay and new ones are shed and counted; the
// next line the agent reads says how many ({"lost": n}) before the records that follow. Records
// pushed during one turn of the event loop go out together, in one write (a write per record cost
// the proxy several percent of its CPU per request: bench/l7.ts).
import type { L7RuleOrigin } from '../policy/l7/types.js';
import type { L7Record } from './types.js';

/**
 * Records kept while the agent does not read them: half a second of a busy proxy's two records
 * per request at 16 000 requests/s (4096 shed records in the bench whenever the agent's event
 * loop stalled for ~0.1 s), some 3 MB of compact lines.
 */
export const DEFAULT_RECORD_QUEUE = 16384;
/** Lines in one write at most (a write that overfills the stream waits for its drain). */
const BATCH_LINES = 1024;

/** One line of the records stream, as read (parseRecordLine). */
export type RecordLine = { record: L7Record } | { lost: number };

// The compact line of an HTTP record (the HTTP engine's two per request), tab-separated:
//
//   H<type Q|S><direction i|e><verdict F|D|E>  method  protocol  code  latencyNs  timeNs  endpointId
//   srcIp  srcPort  srcIdentity  dstIp  dstPort  dstIdentity  url  policyKind  policyNamespace
//   policyName  policyCookie  detail  [headerKey  headerValue]...
//
// An absent code, latency, policy (kind), namespace or detail is an empty field. The agent counts
// the metrics from the head alone (src/observe/l7-lines.ts) and decodes the rest only when the
// flow is read. Records this cannot carry exactly (a tab or newline in a string, a lone surrogate,
// an empty namespace or detail, a non-finite number, DNS and Gateway records) are JSON lines:
// `{"record":…}` (JSON.stringify). parseRecordLine reads both.

/** First character of a compact HTTP line. */
export const COMPACT_HTTP = 'H';
/** Fields before the headers. */
export const COMPACT_FIXED_FIELDS = 19;
const TYPE_CODE = { REQUEST: 'Q', RESPONSE: 'S' } as const;
const DIRECTION_CODE = { ingress: 'i', egress: 'e' } as const;
const VERDICT_CODE = { FORWARDED: 'F', DENIED: 'D', ERROR: 'E' } as const;
const TYPE_OF: Record<string, L7Record['type']> = { Q: 'REQUEST', S: 'RESPONSE' };
const DIRECTION_OF: Record<string, L7Record['direction']> = { i: 'ingress', e: 'egress' };
const VERDICT_OF: Record<string, L7Record['verdict']> = { F: 'FORWARDED', D: 'DENIED', E: 'ERROR' };

/** What a compact line cannot hold: a newline, lone surrogates (UTF-8 would lose them). */
const NOT_COMPACT = /\n|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const int = (n: number | undefined): boolean => n === undefined || Number.isSafeInteger(n);

const HAS_BREAK = 1;
const HAS_SURROGATE = 2;

/** HAS_BREAK: `v` holds a tab or a newline; else HAS_SURROGATE if it holds a surrogate; else 0. */
function scan(v: string): number {
  let k = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 11) {
      if (c === 9 || c === 10) return HAS_BREAK;
    } else if (c >= 0xd800 && c <= 0xdfff) k = HAS_SURROGATE;
  }
  return k;
}

/** The compact line of `r`, or undefined when it needs JSON. */
function compactLine(r: L7Record): string | undefined {
  const h = r.http;
  if (
    h === undefined ||
    r.dns !== undefined ||
    r.transport !== undefined ||
    r.route !== undefined ||
    r.backend !== undefined
  )
    return undefined;
  const t = TYPE_CODE[r.type];
  const d = DIRECTION_CODE[r.direction];
  const v = VERDICT_CODE[r.verdict];
  const p = r.policy;
  const src = r.source;
  const dst = r.destination;
  if (
    t === undefined ||
    d === undefined ||
    v === undefined ||
    !int(h.code) ||
    !int(r.latencyNs) ||
    !int(r.endpointId) ||
    !int(src.port) ||
    !int(src.identity) ||
    !int(dst.port) ||
    !int(dst.identity) ||
    r.detail === '' ||
    (p !== undefined && (!p.kind || p.namespace === '' || !int(p.cookie)))
  )
    return undefined;
  let s =
    `H${t}${d}${v}\t${h.method}\t${h.protocol}\t${h.code ?? ''}\t${r.latencyNs ?? ''}\t${r.timeNs}\t` +
    `${r.endpointId}\t${src.ip}\t${src.port}\t${src.identity}\t${dst.ip}\t${dst.port}\t${dst.identity}\t` +
    `${h.url}\t` +
    (p !== undefined ? `${p.kind}\t${p.namespace ?? ''}\t${p.name}\t${p.cookie}\t` : '\t\t\t\t') +
    (r.detail ?? '');
  const headers = h.headers;
  for (let i = 0; i < headers.length; i++) {
    const f = headers[i] as { key: string; value: string };
    s += `\t${f.key}\t${f.value}`;
  }
  // A tab inside a field would shift the fields after it, a newline would end the line, a lone
  // surrogate would not survive UTF-8: such a record goes as JSON. The string fields are scanned
  // each (short, flat strings; a scan of the joined line made V8 flatten it first, and an indexOf
  // per tab plus a regex over every line were ~6% of the proxy's CPU per request:
  // bench/micro/http-proxy); a field with surrogates sends the whole line to the exact test.
  let k = scan(h.method) | scan(h.protocol) | scan(r.timeNs) | scan(src.ip) | scan(dst.ip) | scan(h.url);
  if (p !== undefined) k |= scan(p.kind) | scan(p.namespace ?? '') | scan(p.name);
  if (r.detail !== undefined) k |= scan(r.detail);
  for (let i = 0; i < headers.length; i++) {
    const f = headers[i] as { key: string; value: string };
    k |= scan(f.key) | scan(f.value);
  }
  if (k === 0) return s;
  if (k & HAS_BREAK) return undefined;
  let tabs = 0;
  for (let at = s.indexOf('\t'); at >= 0; at = s.indexOf('\t', at + 1)) tabs++;
  if (tabs !== COMPACT_FIXED_FIELDS - 1 + 2 * headers.length || NOT_COMPACT.test(s)) return undefined;
  return s;
}

/**
 * A record as one line of the stream (without its newline): the compact line of an HTTP record,
 * else `{"record":…}` (JSON.stringify).
 */
export function recordLine(r: L7Record): string {
  return compactLine(r) ?? JSON.stringify({ record: r } satisfies RecordLine);
}

/** A compact HTTP line back into its record; throws on a malformed line. */
export function parseCompactLine(line: string): L7Record {
  const f = line.split('\t');
  const head = f[0] as string;
  const type = TYPE_OF[head[1] ?? ''];
  const direction = DIRECTION_OF[head[2] ?? ''];
  const verdict = VERDICT_OF[head[3] ?? ''];
  if (
    head.length !== 4 ||
    head[0] !== COMPACT_HTTP ||
    !type ||
    !direction ||
    !verdict ||
    f.length < COMPACT_FIXED_FIELDS ||
    (f.length - COMPACT_FIXED_FIELDS) % 2 !== 0
  )
    throw new Error(`not a compact L7 record line: ${line.slice(0, 80)}`);
  const num = (i: number): number => {
    const n = Number(f[i]);
    if (f[i] === '' || !Number.isSafeInteger(n))
      throw new Error(`L7 record line: field ${i} is not a number`);
    return n;
  };
  const headers: { key: string; value: string }[] = [];
  for (let i = COMPACT_FIXED_FIELDS; i < f.length; i += 2)
    headers.push({ key: f[i] as string, value: f[i + 1] as string });
  const r: L7Record = {
    timeNs: f[5] as string,
    type,
    direction,
    endpointId: num(6),
    verdict,
    source: { ip: f[7] as string, port: num(8), identity: num(9) },
    destination: { ip: f[10] as string, port: num(11), identity: num(12) },
    http: { method: f[1] as string, url: f[13] as string, protocol: f[2] as string, headers },
  };
  if (f[3] !== '') (r.http as { code?: number }).code = num(3);
  if (f[4] !== '') r.latencyNs = num(4);
  if (f[14] !== '')
    r.policy = {
      kind: f[14] as L7RuleOrigin['kind'],
      ...(f[15] !== '' ? { namespace: f[15] as string } : {}),
      name: f[16] as string,
      cookie: num(17),
    } as L7RuleOrigin;
  if (f[18] !== '') r.detail = f[18] as string;
  return r;
}

/** A line of the stream (without its newline), compact or JSON; throws on a malformed line. */
export function parseRecordLine(line: string): RecordLine {
  if (line.charCodeAt(0) === 72 /* H */) return { record: parseCompactLine(line) };
  return JSON.parse(line) as RecordLine;
}

export interface RecordSink {
  /** false: the sink is full, wait for drain. */
  write(line: string): boolean;
  once(event: 'drain', cb: () => void): unknown;
}

export class RecordQueue {
  /** Chunks waiting: whole lines, each ending in a newline, and how many lines each holds. */
  readonly #chunks: string[] = [];
  readonly #lines: number[] = [];
  #waiting = 0;
  #sink: RecordSink | undefined;
  #blocked = false;
  #scheduled = false;
  #unreported = 0;
  /** Records handed to the agent / shed since start. */
  sent = 0;
  lost = 0;

  constructor(readonly max = DEFAULT_RECORD_QUEUE) {}

  get waiting(): number {
    return this.#waiting;
  }

  push(r: L7Record): void {
    if (this.#waiting >= this.max) {
      this.lost++;
      this.#unreported++;
      return;
    }
    this.pushLines(recordLine(r) + '\n', 1);
  }

  /**
   * `n` records already rendered by recordLine, each followed by a newline (from a proxy worker:
   * workers.ts). All are kept, or, beyond the bound, all shed.
   */
  pushLines(text: string, n: number): void {
    if (n <= 0) return;
    if (this.#waiting + n > this.max) {
      this.lost += n;
      this.#unreported += n;
      return;
    }
    this.#chunks.push(text);
    this.#lines.push(n);
    this.#waiting += n;
    if (this.#scheduled || !this.#sink || this.#blocked) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  /** Sends everything waiting, then every new record, to `sink` (replacing an earlier one). */
  attach(sink: RecordSink): () => void {
    this.#sink = sink;
    this.#blocked = false;
    this.#flush();
    return () => {
      if (this.#sink === sink) this.#sink = undefined;
    };
  }

  #flush(): void {
    const sink = this.#sink;
    while (sink && !this.#blocked) {
      let batch = '';
      let lines = 0;
      if (this.#unreported > 0) {
        batch = JSON.stringify({ lost: this.#unreported } satisfies RecordLine) + '\n';
        this.#unreported = 0;
        lines++;
      }
      while (lines < BATCH_LINES && this.#chunks.length > 0) {
        const n = this.#lines.shift() as number;
        batch += this.#chunks.shift() as string;
        this.#waiting -= n;
        this.sent += n;
        lines += n;
      }
      if (lines === 0) return;
      if (!sink.write(batch)) {
        this.#blocked = true;
        sink.once('drain', () => {
          if (this.#sink !== sink) return;
          this.#blocked = false;
          this.#flush();
        });
      }
    }
  }
}
