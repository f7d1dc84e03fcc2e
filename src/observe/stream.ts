// The observer: stores flows in the ring and fans them out to followers, without ever waiting for
// one. Loss is counted at every stage and reported in-band, as Hubble does:
//   PERF_EVENT_RING_BUFFER  the kernel could not reserve room in weir_events (reader too slow)
//   OBSERVER_EVENTS_QUEUE   the agent shed events: undecodable records, or a follower's queue full
//   HUBBLE_RING_BUFFER      (Hubble: a reader overwritten in the ring; weir's readers copy, so 0)
// Kernel and decode losses are stored in the ring as `lost_events` lines, so `--last` shows them
// where they happened; a follower's own queue losses go to that follower only.
//
// Datapath events are stored raw (raw.ts: ingestRaw copies the record's bytes) and become Flow
// objects only when read, or at once when a follower is waiting for them: what nobody reads costs
// no object. Their uuid is derived from the slot's sequence number, so every read of a stored
// flow gives the same one. The node proxy's HTTP records take the same way: their compact lines
// (src/proxy/records.ts) are stored as they came (ingestL7Line) and become flows when read.
import { randomUUID } from 'node:crypto';
import type { Flow, FlowsLine, LostSource } from './flow.js';
import { DEFAULT_RING_CAPACITY } from './ring.js';
import { RawFlowRing } from './raw.js';

export const DEFAULT_QUEUE_SIZE = 1024;

/** Turns a stored raw record into its Flow (the parser and enricher, bound by the pipeline). */
export type RawFlowDecoder = (record: Buffer, uuid: string) => Flow;
/** Turns a stored compact L7 record line into its Flow (l7Flow, bound by the pipeline). */
export type L7LineDecoder = (line: string, uuid: string) => Flow;

/** Where a follower's lines go: `write` returns false when the sink is full (wait for onDrain). */
export interface FlowSink {
  write(line: FlowsLine): boolean;
  onDrain(cb: () => void): void;
  /** Whether the sink is already full when following starts (after the backlog). */
  full(): boolean;
}

export interface ReadQuery {
  filter: (flow: Flow) => boolean;
  /** Bounds for lost_events lines (flows are bounded by `filter`). */
  since?: number;
  until?: number;
  last?: number;
}

class Follower {
  readonly queue: FlowsLine[] = [];
  blocked = false;
  shed = 0;

  constructor(
    readonly sink: FlowSink,
    readonly filter: (flow: Flow) => boolean,
    readonly max: number,
    readonly onShed: (n: number) => void,
  ) {
    this.blocked = sink.full();
    sink.onDrain(() => this.flush());
  }

  offer(line: FlowsLine): void {
    if ('flow' in line && !this.filter(line.flow)) return;
    if (!this.blocked && this.queue.length === 0) {
      this.blocked = !this.sink.write(line);
      return;
    }
    if (this.queue.length >= this.max) {
      this.shed++;
      this.onShed(1);
      return;
    }
    this.queue.push(line);
  }

  flush(): void {
    this.blocked = false;
    while (!this.blocked) {
      if (this.shed > 0) {
        const n = this.shed;
        this.shed = 0;
        this.blocked = !this.sink.write({
          lost_events: { source: 'OBSERVER_EVENTS_QUEUE', num_events_lost: n },
        });
        continue;
      }
      const line = this.queue.shift();
      if (!line) return;
      this.blocked = !this.sink.write(line);
    }
  }
}

export interface ObserverOptions {
  capacity?: number;
  /** Lines a follower may have waiting before the newest are shed. */
  queueSize?: number;
}

export interface ObserverStatus {
  seenFlows: number;
  currentFlows: number;
  maxFlows: number;
  followers: number;
  queueSize: number;
  lost: Record<LostSource, number>;
}

export class FlowObserver {
  readonly ring: RawFlowRing;
  readonly queueSize: number;
  seen = 0;
  readonly lost: Record<LostSource, number> = {
    PERF_EVENT_RING_BUFFER: 0,
    OBSERVER_EVENTS_QUEUE: 0,
    HUBBLE_RING_BUFFER: 0,
  };
  readonly #followers = new Set<Follower>();
  readonly #listeners: ((flow: Flow) => void)[] = [];
  // Random per observer (like Hubble's v4 uuids), then the sequence number: 8-4-4-4-12 hex.
  readonly #uuidPrefix = randomUUID().slice(0, 24);
  #decode: RawFlowDecoder | undefined;
  #decodeL7: L7LineDecoder | undefined;

  constructor(o: ObserverOptions = {}) {
    this.ring = new RawFlowRing(o.capacity ?? DEFAULT_RING_CAPACITY);
    this.queueSize = o.queueSize ?? DEFAULT_QUEUE_SIZE;
  }

  /** How stored raw records become flows (set before ingestRaw). */
  setDecoder(decode: RawFlowDecoder): void {
    this.#decode = decode;
  }

  /** How stored compact L7 record lines become flows (set before ingestL7Line). */
  setL7Decoder(decode: L7LineDecoder): void {
    this.#decodeL7 = decode;
  }

  #decodeLine(line: string, seq: number): Flow {
    if (!this.#decodeL7) throw new Error('FlowObserver: L7 record lines stored without a decoder');
    return this.#decodeL7(line, this.#uuid(seq));
  }

  /**
   * Stores a compact L7 record line (checked and counted by the caller: agent/l7-lines.ts) as it
   * is; it is decoded only when read, or at once when a follower is waiting. Listeners (onFlow)
   * are not called.
   */
  ingestL7Line(line: string): void {
    this.seen++;
    const seq = this.ring.pushL7(line);
    if (this.#followers.size === 0) return;
    let out: FlowsLine;
    try {
      out = { flow: this.#decodeLine(line, seq) };
    } catch {
      return; // stored; a decoding failure only keeps it from the followers
    }
    for (const f of this.#followers) f.offer(out);
  }

  #uuid(seq: number): string {
    return this.#uuidPrefix + seq.toString(16).padStart(12, '0');
  }

  #decodeRaw(raw: Uint8Array, seq: number): Flow {
    if (!this.#decode) throw new Error('FlowObserver: raw records stored without a decoder');
    return this.#decode(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), this.#uuid(seq));
  }

  /**
   * Stores a well-formed datapath record (raw.ts isRawFlowEvent) from data[off]: its bytes are
   * copied, nothing else is made unless a follower is waiting. Listeners (onFlow) are not called:
   * raw records are counted by RawFlowCounters.
   */
  ingestRaw(data: Uint8Array, off: number): void {
    this.seen++;
    const seq = this.ring.pushRaw(data, off);
    if (this.#followers.size === 0) return;
    let line: FlowsLine;
    try {
      line = { flow: this.#decodeRaw(this.ring.record(seq), seq) };
    } catch {
      return; // stored; an enrichment failure only keeps it from the followers
    }
    for (const f of this.#followers) f.offer(line);
  }

  /** Called for every flow (metrics). */
  onFlow(fn: (flow: Flow) => void): void {
    this.#listeners.push(fn);
  }

  ingest(flow: Flow): void {
    this.seen++;
    this.#store({ flow });
    for (const fn of this.#listeners) fn(flow);
  }

  /** Events lost before they became flows (kernel ring full, undecodable). */
  recordLost(source: LostSource, n: number): void {
    if (n <= 0) return;
    this.lost[source] += n;
    this.#store({ lost_events: { source, num_events_lost: n } });
  }

  #store(line: FlowsLine): void {
    this.ring.pushLine(line, Date.now());
    for (const f of this.#followers) f.offer(line);
  }

  /** Stored lines matching the query, oldest first (raw records are decoded here). */
  read(q: ReadQuery): FlowsLine[] {
    const out: FlowsLine[] = [];
    const want = q.last ?? Infinity;
    this.ring.visitNewestFirst((s) => {
      if (s.raw) {
        let flow: Flow;
        try {
          flow = this.#decodeRaw(s.raw, s.seq);
        } catch {
          return true; // checked when stored; an enrichment failure leaves this one out
        }
        if (q.filter(flow)) out.push({ flow });
      } else if (s.l7 !== undefined) {
        let flow: Flow;
        try {
          flow = this.#decodeLine(s.l7, s.seq);
        } catch {
          return true; // checked when stored; a decoding failure leaves this one out
        }
        if (q.filter(flow)) out.push({ flow });
      } else {
        const { t, line } = s.obj;
        const keep =
          'flow' in line
            ? q.filter(line.flow)
            : (q.since === undefined || t >= q.since) && (q.until === undefined || t <= q.until);
        if (keep) out.push(line);
      }
      return out.length < want;
    });
    return out.reverse();
  }

  /** Sends every new matching line to `sink` until the returned function is called. */
  follow(sink: FlowSink, filter: (flow: Flow) => boolean): () => void {
    const f = new Follower(sink, filter, this.queueSize, (n) => {
      this.lost.OBSERVER_EVENTS_QUEUE += n;
    });
    this.#followers.add(f);
    return () => this.#followers.delete(f);
  }

  status(): ObserverStatus {
    return {
      seenFlows: this.seen,
      currentFlows: this.ring.size,
      maxFlows: this.ring.capacity,
      followers: this.#followers.size,
      queueSize: this.queueSize,
      lost: { ...this.lost },
    };
  }
}
