// The flow pipeline's hot path, on raw records: a datapath event (struct flow_event, 112 bytes) is
// checked, counted and stored as bytes; it becomes a Flow object only when somebody reads it (GET
// /v1/flows, a follower, the UI). Per event: a few byte reads, a 28-word copy, a few array
// increments; no object, string or bigint.
//
//   RawFlowRing   bytes:   [ rec 0 (112 B) | rec 1 | ... | rec capacity-1 ]   one Uint8Array
//                 objects: [ undefined | {t, line} | ... ]   lines that are objects already
//                          (L7 flows, expired-connection traces, lost_events), else undefined
//                 l7:      [ undefined | "HQiF\tGET\t…" | ... ]   the node proxy's HTTP records as
//                          their compact lines came (src/proxy/records.ts), else undefined
//   The slot of sequence number s is s % capacity; the oldest is overwritten first (Hubble's ring).
//
//   RawFlowCounters  counts per label combination in Float64Arrays; the label tables are built
//   once from the catalogues (verdicts.ts, drop reasons, protocols) and folded into the Prometheus
//   counters at scrape time (flushInto).
import { hubbleDropReason } from '../datapath/drop-reasons.js';
import { EventFlag, EventType, FlowEventLayout, TraceType } from '../datapath/maps/events/layout.js';
import type { FlowsLine } from './flow.js';
import { MAX_RING_CAPACITY } from './ring.js';
import { EVENT_VERDICTS, verdictIndex } from './verdicts.js';

export const RAW_EVENT_SIZE = FlowEventLayout.size;
const RAW_WORDS = RAW_EVENT_SIZE >>> 2;

/** Byte offsets of the fields the hot path reads (struct flow_event, little-endian host). */
export const RAW = {
  type: FlowEventLayout.offsets.type,
  subtype: FlowEventLayout.offsets.subtype,
  direction: FlowEventLayout.offsets.direction,
  reason: FlowEventLayout.offsets.reason,
  family: FlowEventLayout.offsets.family,
  nexthdr: FlowEventLayout.offsets.nexthdr,
  flags: FlowEventLayout.offsets.flags,
  cookie: FlowEventLayout.offsets.cookie,
} as const;

/**
 * Whether data[off .. off+len) is a well-formed flow_event (what decodeFlowEvent would accept):
 * the size, a known type, a trace's subtype, the address family and the direction.
 */
export function isRawFlowEvent(data: Uint8Array, off: number, len: number): boolean {
  if (len < RAW_EVENT_SIZE) return false;
  const type = data[off + RAW.type] as number;
  if (type !== EventType.DROP && type !== EventType.POLICY_VERDICT && type !== EventType.TRACE) return false;
  const sub = data[off + RAW.subtype] as number;
  if (type === EventType.TRACE && sub !== TraceType.OPEN && sub !== TraceType.CLOSE) return false;
  const family = data[off + RAW.family] as number;
  if (family !== 0 && family !== 4 && family !== 6) return false;
  const dir = data[off + RAW.direction] as number;
  return dir === 1 || dir === 2;
}

interface ObjectSlot {
  /** Epoch ms when stored (since/until of lost_events lines). */
  t: number;
  line: FlowsLine;
}

/** One stored slot, as read(): a raw record (a view of its bytes) or an object line. */
export type RawSlot =
  | { seq: number; raw: Uint8Array; obj?: undefined; l7?: undefined }
  | { seq: number; raw?: undefined; obj: ObjectSlot; l7?: undefined }
  | { seq: number; raw?: undefined; obj?: undefined; l7: string };

export class RawFlowRing {
  readonly bytes: Uint8Array;
  readonly #words: Int32Array;
  readonly #objects: (ObjectSlot | undefined)[];
  readonly #l7: (string | undefined)[];
  #srcData: Uint8Array | undefined;
  #srcWords: Int32Array | undefined;
  /** Slots ever written (the next sequence number). */
  written = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_RING_CAPACITY)
      throw new RangeError(`ring capacity ${capacity} is not within 1..${MAX_RING_CAPACITY}`);
    this.bytes = new Uint8Array(capacity * RAW_EVENT_SIZE);
    this.#words = new Int32Array(this.bytes.buffer);
    this.#objects = new Array<ObjectSlot | undefined>(capacity).fill(undefined);
    this.#l7 = new Array<string | undefined>(capacity).fill(undefined);
  }

  get size(): number {
    return Math.min(this.written, this.capacity);
  }

  /** Stores a record's bytes; returns its sequence number. */
  pushRaw(data: Uint8Array, off: number): number {
    const seq = this.written++;
    const slot = seq % this.capacity;
    this.#objects[slot] = undefined;
    this.#l7[slot] = undefined;
    const dst = this.#words;
    let d = slot * RAW_WORDS;
    if ((off & 3) === 0 && (data.byteOffset & 3) === 0) {
      // Word copy through a view cached per source buffer (the ring's mapping: one view for good).
      if (data !== this.#srcData) {
        this.#srcData = data;
        this.#srcWords = new Int32Array(data.buffer, data.byteOffset, data.byteLength >>> 2);
      }
      const src = this.#srcWords as Int32Array;
      for (let s = off >>> 2, end = s + RAW_WORDS; s < end; s++, d++) dst[d] = src[s] as number;
    } else {
      this.bytes.set(data.subarray(off, off + RAW_EVENT_SIZE), slot * RAW_EVENT_SIZE);
    }
    return seq;
  }

  /** Stores a line that is an object already; returns its sequence number. */
  pushLine(line: FlowsLine, t: number): number {
    const seq = this.written++;
    this.#objects[seq % this.capacity] = { t, line };
    this.#l7[seq % this.capacity] = undefined;
    return seq;
  }

  /** Stores a compact L7 record line (as received); returns its sequence number. */
  pushL7(line: string): number {
    const seq = this.written++;
    const slot = seq % this.capacity;
    this.#objects[slot] = undefined;
    this.#l7[slot] = line;
    return seq;
  }

  /** The compact L7 line of slot `seq`, if it holds one. */
  l7(seq: number): string | undefined {
    return this.#l7[seq % this.capacity];
  }

  /** The bytes of the raw record `seq` (a view, valid until that slot is written again). */
  record(seq: number): Uint8Array {
    const at = (seq % this.capacity) * RAW_EVENT_SIZE;
    return this.bytes.subarray(at, at + RAW_EVENT_SIZE);
  }

  /**
   * Visits stored slots newest first until `visit` returns false. A raw slot's bytes are a view
   * valid until the next push.
   */
  visitNewestFirst(visit: (slot: RawSlot) => boolean): void {
    const n = this.size;
    for (let i = 0; i < n; i++) {
      const seq = this.written - 1 - i;
      const slot = seq % this.capacity;
      const obj = this.#objects[slot];
      const l7 = this.#l7[slot];
      const go = obj
        ? visit({ seq, obj })
        : l7 !== undefined
          ? visit({ seq, l7 })
          : visit({ seq, raw: this.record(seq) });
      if (!go) return;
    }
  }
}

/** Hubble's flow type label of each EVENT_* (and of L7 flows). */
export const HUBBLE_TYPE = {
  drop: 'Drop',
  'policy-verdict': 'PolicyVerdict',
  trace: 'Trace',
  l7: 'L7',
} as const;
const TYPE_LABEL: Record<number, string> = {
  [EventType.DROP]: HUBBLE_TYPE.drop,
  [EventType.POLICY_VERDICT]: HUBBLE_TYPE['policy-verdict'],
  [EventType.TRACE]: HUBBLE_TYPE.trace,
};
const SUBTYPE_LABEL = ['', 'open', 'close'] as const; // by TRACE_* (0: not a trace)

/** Protocol labels of hubble_drop_total, by IPPROTO_* (else 'unknown'), as Flow.l4 names them. */
export const PROTOCOL_LABELS = ['unknown', 'TCP', 'UDP', 'SCTP', 'ICMPv4', 'ICMPv6'] as const;
const PROTO_INDEX = new Uint8Array(256);
PROTO_INDEX[6] = 1;
PROTO_INDEX[17] = 2;
PROTO_INDEX[132] = 3;
PROTO_INDEX[1] = 4;
PROTO_INDEX[58] = 5;

const MATCH_LABELS = ['policy', 'all', 'none'] as const;
const DIRECTION_LABELS = ['ingress', 'egress'] as const;

/** A Prometheus counter as far as flushing needs it (prom-client's Counter fits). */
export interface CounterSink<L extends string> {
  inc(labels: Partial<Record<L, string | number>>, value: number): void;
}

class Table<L extends string> {
  readonly counts: Float64Array;
  readonly #flushed: Float64Array;
  constructor(readonly labels: readonly Record<L, string>[]) {
    this.counts = new Float64Array(labels.length);
    this.#flushed = new Float64Array(labels.length);
  }
  flushInto(c: CounterSink<L>): void {
    for (let i = 0; i < this.counts.length; i++) {
      const d = (this.counts[i] as number) - (this.#flushed[i] as number);
      if (d === 0) continue;
      c.inc(this.labels[i] as Record<L, string>, d);
      this.#flushed[i] = this.counts[i] as number;
    }
  }
}

const V = EVENT_VERDICTS.length;

/**
 * The flow metrics (hubble_flows_processed_total, hubble_drop_total, weir_policy_verdict_total)
 * counted from raw records, with the labels countFlow gives the same event as a Flow.
 * `ruleKnown(cookie)`: whether a policy rule stands behind a cookie (match "policy").
 */
export class RawFlowCounters {
  // type (1..3) x subtype (0..2) x verdict
  readonly flows = new Table<'type' | 'subtype' | 'verdict'>(
    [1, 2, 3].flatMap((t) =>
      SUBTYPE_LABEL.flatMap((subtype) =>
        EVENT_VERDICTS.map((v) => ({ type: TYPE_LABEL[t] as string, subtype, verdict: v.verdict })),
      ),
    ),
  );
  // drop reason (0..255) x protocol
  readonly drops = new Table<'reason' | 'protocol'>(
    Array.from({ length: 256 }, (_, r) => hubbleDropReason(r)).flatMap((reason) =>
      PROTOCOL_LABELS.map((protocol) => ({ reason, protocol })),
    ),
  );
  // traffic direction x verdict x match
  readonly verdicts = new Table<'direction' | 'action' | 'match'>(
    DIRECTION_LABELS.flatMap((direction) =>
      EVENT_VERDICTS.flatMap((v) => MATCH_LABELS.map((match) => ({ direction, action: v.action, match }))),
    ),
  );
  readonly #flowCounts = this.flows.counts;
  readonly #dropCounts = this.drops.counts;
  readonly #verdictCounts = this.verdicts.counts;

  constructor(readonly ruleKnown: (cookie: number) => boolean) {}

  /** Counts one well-formed record (isRawFlowEvent) at data[off]. */
  count(data: Uint8Array, off: number): void {
    const type = data[off + RAW.type] as number;
    const reason = data[off + RAW.reason] as number;
    const flags = data[off + RAW.flags] as number;
    const v = verdictIndex(type, reason, flags);
    const sub = type === EventType.TRACE ? (data[off + RAW.subtype] as number) : 0;
    this.#flowCounts[((type - 1) * 3 + sub) * V + v]! += 1;
    if (type === EventType.DROP) {
      this.#dropCounts[
        reason * PROTOCOL_LABELS.length + (PROTO_INDEX[data[off + RAW.nexthdr] as number] as number)
      ]! += 1;
    } else if (type === EventType.POLICY_VERDICT) {
      // Hubble's traffic direction is the connection's: a reply travels against it.
      const packetEgress = data[off + RAW.direction] === 2;
      const connEgress = packetEgress !== ((flags & EventFlag.REPLY) !== 0) ? 1 : 0;
      const cookie =
        (data[off + RAW.cookie] as number) |
        ((data[off + RAW.cookie + 1] as number) << 8) |
        ((data[off + RAW.cookie + 2] as number) << 16) |
        ((data[off + RAW.cookie + 3] as number) << 24);
      const match = cookie !== 0 && this.ruleKnown(cookie >>> 0) ? 0 : EVENT_VERDICTS[v]?.denied ? 2 : 1;
      this.#verdictCounts[(connEgress * V + v) * MATCH_LABELS.length + match]! += 1;
    }
  }

  /** Adds what was counted since the last flush to the Prometheus counters. */
  flushInto(
    flows: CounterSink<'type' | 'subtype' | 'verdict'>,
    drops: CounterSink<'reason' | 'protocol'>,
    verdicts: CounterSink<'direction' | 'action' | 'match'>,
  ): void {
    this.flows.flushInto(flows);
    this.drops.flushInto(drops);
    this.verdicts.flushInto(verdicts);
  }
}
