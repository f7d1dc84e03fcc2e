// L7 records on their way to the agent: a bounded queue drained into the one stream the agent
// holds open (GET /v1/records on the admin socket). The proxy never waits for the agent: with no
// stream, or a full one, the oldest waiting records stay and new ones are shed and counted; the
// next line the agent reads says how many ({"lost": n}) before the records that follow. Records
// pushed during one turn of the event loop go out together, in one write (a write per record cost
// the proxy several percent of its CPU per request: bench/l7.ts).
import { jsonNumber, jsonString } from './json.js';
import type { L7Record } from './types.js';

export const DEFAULT_RECORD_QUEUE = 4096;
/** Lines in one write at most. */
const BATCH_LINES = 256;

/** One NDJSON line of the records stream. */
export type RecordLine = { record: L7Record } | { lost: number };

const addressJson = (a: L7Record['source']): string =>
  `{"ip":${jsonString(a.ip)},"port":${jsonNumber(a.port)},"identity":${jsonNumber(a.identity)}}`;

/**
 * A record as one line of the stream (without its newline): `{"record":…}`. The HTTP engine's
 * records (two per request) are rendered field by field — the same JSON as JSON.stringify, at half
 * its cost; others (DNS, Gateway) by JSON.stringify.
 */
export function recordLine(r: L7Record): string {
  const h = r.http;
  if (
    h === undefined ||
    r.dns !== undefined ||
    r.transport !== undefined ||
    r.route !== undefined ||
    r.backend !== undefined
  )
    return JSON.stringify({ record: r } satisfies RecordLine);
  let s =
    `{"record":{"timeNs":${jsonString(r.timeNs)},"type":${jsonString(r.type)},` +
    `"direction":${jsonString(r.direction)},"endpointId":${jsonNumber(r.endpointId)},` +
    `"verdict":${jsonString(r.verdict)},"source":${addressJson(r.source)},` +
    `"destination":${addressJson(r.destination)},"http":{"method":${jsonString(h.method)},` +
    `"url":${jsonString(h.url)},"protocol":${jsonString(h.protocol)}`;
  if (h.code !== undefined) s += `,"code":${jsonNumber(h.code)}`;
  s += ',"headers":[';
  for (let i = 0; i < h.headers.length; i++) {
    const f = h.headers[i] as { key: string; value: string };
    s += `${i === 0 ? '' : ','}{"key":${jsonString(f.key)},"value":${jsonString(f.value)}}`;
  }
  s += ']}';
  if (r.latencyNs !== undefined) s += `,"latencyNs":${jsonNumber(r.latencyNs)}`;
  const p = r.policy;
  if (p !== undefined) {
    s += `,"policy":{"kind":${jsonString(p.kind)},`;
    if (p.namespace !== undefined) s += `"namespace":${jsonString(p.namespace)},`;
    s += `"name":${jsonString(p.name)},"cookie":${jsonNumber(p.cookie)}}`;
  }
  if (r.detail !== undefined) s += `,"detail":${jsonString(r.detail)}`;
  return s + '}}';
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
