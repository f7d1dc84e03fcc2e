// The agent's hot path for the node proxy's HTTP records: each compact line (src/proxy/records.ts)
// is checked and counted from its head — type, direction, verdict, method, protocol, status and
// latency — and stored as it came (FlowObserver.ingestL7Line); it becomes a Flow (l7Flow) only
// when read or followed. Per record: a few character reads, one Map lookup of the head (the
// label set: method, protocol, status, direction, verdict), a latency parsed digit by digit,
// array increments; the label objects are made once per label set, and the counts are folded
// into the Prometheus metrics at scrape time (flushInto), as RawFlowCounters does for the
// datapath's records.
//
//   "HSeF\tGET\tHTTP/1.1\t200\t1830000\t…"   head key "SeF\tGET\tHTTP/1.1\t200" -> LabelSet
import type { Counter, Histogram } from 'prom-client';
import { COMPACT_FIXED_FIELDS, COMPACT_HTTP } from '../proxy/records.js';
import { HTTP_DURATION_BUCKETS } from './metrics.js';

const BUCKETS_S = HTTP_DURATION_BUCKETS;

const VERDICT_LABEL: Record<string, string> = { F: 'FORWARDED', D: 'DROPPED', E: 'ERROR' };
const H = COMPACT_HTTP.charCodeAt(0);
const TAB = 9;

/** The counts of one label set since start (flushed: what the Prometheus metrics have). */
class LabelSet {
  count = 0;
  flushed = 0;
  /** Responses: per bucket (non-cumulative, the last one +Inf), sum of seconds. */
  readonly buckets: Float64Array | undefined;
  readonly flushedBuckets: Float64Array | undefined;
  sumNs = 0;
  flushedSumNs = 0;
  readonly verdict: string;
  readonly request: Record<'method' | 'protocol' | 'reporter', string> | undefined;
  readonly response: Record<'method' | 'protocol' | 'status' | 'reporter', string> | undefined;
  readonly duration: Record<'method' | 'reporter', string> | undefined;

  constructor(key: string) {
    // key: <type><direction><verdict>\t<method>\t<protocol>\t<code>
    const [head = '', method = '', protocol = '', code = ''] = key.split('\t');
    const reporter = head[1] === 'e' ? 'client' : 'server';
    this.verdict = VERDICT_LABEL[head[2] ?? ''] ?? 'ERROR';
    if (head[0] === 'Q') this.request = { method, protocol, reporter };
    else {
      this.response = { method, protocol, status: code === '' ? '0' : code, reporter };
      this.duration = { method, reporter };
      this.buckets = new Float64Array(BUCKETS_S.length + 1);
      this.flushedBuckets = new Float64Array(BUCKETS_S.length + 1);
    }
  }
}

/** The part of a prom-client histogram's state a label set's counts are added to. */
interface HistogramEntry {
  labels: object;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

export interface L7Metrics {
  flowsProcessed: Counter<'type' | 'subtype' | 'verdict'>;
  httpRequests: Counter<'method' | 'protocol' | 'reporter'>;
  httpResponses: Counter<'method' | 'protocol' | 'status' | 'reporter'>;
  httpDuration: Histogram<'method' | 'reporter'>;
}

export class L7LineCounters {
  readonly #sets = new Map<string, LabelSet>();

  /**
   * Counts the compact HTTP record line `line` (without its newline); false (nothing counted)
   * when the line is not one.
   */
  count(line: string): boolean {
    if (line.charCodeAt(0) !== H || line.length < 6 || line.charCodeAt(4) !== TAB) return false;
    // method, protocol, code: the head key ends at the 4th tab; the latency follows.
    let end = 4;
    for (let i = 0; i < 3; i++) {
      end = line.indexOf('\t', end + 1);
      if (end < 0) return false;
    }
    const latEnd = line.indexOf('\t', end + 1);
    if (latEnd < 0) return false;
    // The remaining fixed fields (the headers come in pairs after them).
    let tabs = 5;
    for (let at = line.indexOf('\t', latEnd + 1); at >= 0; at = line.indexOf('\t', at + 1)) tabs++;
    if (tabs < COMPACT_FIXED_FIELDS - 1 || (tabs - (COMPACT_FIXED_FIELDS - 1)) % 2 !== 0) return false;
    const key = line.slice(1, end);
    let set = this.#sets.get(key);
    if (set === undefined) {
      const t = line.charCodeAt(1);
      const d = line.charCodeAt(2);
      const v = line.charCodeAt(3);
      if ((t !== 81 && t !== 83) || (d !== 105 && d !== 101) || (v !== 70 && v !== 68 && v !== 69))
        return false; // Q S, i e, F D E
      set = new LabelSet(key);
      this.#sets.set(key, set);
    }
    set.count++;
    const buckets = set.buckets;
    if (buckets !== undefined) {
      let ns = 0;
      for (let i = end + 1; i < latEnd; i++) {
        const c = line.charCodeAt(i) - 48;
        if (c < 0 || c > 9) {
          ns = Number(line.slice(end + 1, latEnd)) || 0;
          break;
        }
        ns = ns * 10 + c;
      }
      set.sumNs += ns;
      const seconds = ns / 1e9;
      let b = 0;
      while (b < BUCKETS_S.length && seconds > (BUCKETS_S[b] as number)) b++;
      buckets[b]! += 1;
    }
    return true;
  }

  /** Adds what was counted since the last flush to the Prometheus metrics. */
  flushInto(m: L7Metrics): void {
    const entries = m.httpDuration as unknown as { hashMap: Record<string, HistogramEntry> };
    for (const set of this.#sets.values()) {
      const d = set.count - set.flushed;
      if (d === 0) continue;
      set.flushed = set.count;
      m.flowsProcessed.inc({ type: 'L7', subtype: '', verdict: set.verdict }, d);
      if (set.request) m.httpRequests.inc(set.request, d);
      if (set.response && set.duration && set.buckets && set.flushedBuckets) {
        m.httpResponses.inc(set.response, d);
        // prom-client has no "add these bucket counts": its entry for the label set (made by
        // zero() when missing; observe() of JSON lines' flows adds to the same) is found by its
        // label values and added to as observe() does.
        const { method, reporter } = set.duration;
        const find = () =>
          Object.values(entries.hashMap).find(
            (x) =>
              (x.labels as Record<string, string>).method === method &&
              (x.labels as Record<string, string>).reporter === reporter,
          );
        let e = find();
        if (!e) {
          m.httpDuration.zero(set.duration);
          e = find();
        }
        if (!e) throw new Error('hubble_http_request_duration_seconds: no entry for a label set');
        e.count += d;
        e.sum += (set.sumNs - set.flushedSumNs) / 1e9;
        set.flushedSumNs = set.sumNs;
        for (let b = 0; b < BUCKETS_S.length; b++) {
          const n = (set.buckets[b] as number) - (set.flushedBuckets[b] as number);
          if (n !== 0)
            e.bucketValues[BUCKETS_S[b] as number] = (e.bucketValues[BUCKETS_S[b] as number] ?? 0) + n;
        }
        set.flushedBuckets.set(set.buckets);
      }
    }
  }
}
