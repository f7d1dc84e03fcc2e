// The observer: stores flows in the ring and fans them out to followers, without ever waiting for
// one. Loss is counted at every stage and reported in-band, as Hubble does:
//   PERF_EVENT_RING_BUFFER  the kernel could not reserve room in weir_events (reader too slow)
//   OBSERVER_EVENTS_QUEUE   the agent shed events: undecodable records, or a follower's queue full
//   HUBBLE_RING_BUFFER      (Hubble: a reader overwritten in the ring; weir's readers copy, so 0)
// Kernel and decode losses are stored in the ring as `lost_events` lines, so `--last` shows them
// where they happened; a follower's own queue losses go to that follower only.
import type { Flow, FlowsLine, LostSource } from './flow.js';
import { DEFAULT_RING_CAPACITY, Ring } from './ring.js';

export const DEFAULT_QUEUE_SIZE = 1024;

interface Entry {
  /** Epoch ms (for since/until of lost_events lines). */
  t: number;
  line: FlowsLine;
}

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
  readonly ring: Ring<Entry>;
  readonly queueSize: number;
  seen = 0;
  readonly lost: Record<LostSource, number> = {
    PERF_EVENT_RING_BUFFER: 0,
    OBSERVER_EVENTS_QUEUE: 0,
    HUBBLE_RING_BUFFER: 0,
  };
  readonly #followers = new Set<Follower>();
  readonly #listeners: ((flow: Flow) => void)[] = [];

  constructor(o: ObserverOptions = {}) {
    this.ring = new Ring<Entry>(o.capacity ?? DEFAULT_RING_CAPACITY);
    this.queueSize = o.queueSize ?? DEFAULT_QUEUE_SIZE;
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
    this.ring.push({ t: Date.now(), line });
    for (const f of this.#followers) f.offer(line);
  }

  /** Stored lines matching the query, oldest first. */
  read(q: ReadQuery): FlowsLine[] {
    return this.ring
      .read({
        filter: (e) =>
          'flow' in e.line
            ? q.filter(e.line.flow)
            : (q.since === undefined || e.t >= q.since) && (q.until === undefined || e.t <= q.until),
        ...(q.last !== undefined ? { last: q.last } : {}),
      })
      .map((e) => e.line);
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
