// L7 records on their way to the agent: a bounded queue drained into the one stream the agent
// holds open (GET /v1/records on the admin socket). The proxy never waits for the agent: with no
// stream, or a full one, the oldest waiting records stay and new ones are shed and counted; the
// next line the agent reads says how many ({"lost": n}) before the records that follow.
import type { L7Record } from './types.js';

export const DEFAULT_RECORD_QUEUE = 4096;

/** One NDJSON line of the records stream. */
export type RecordLine = { record: L7Record } | { lost: number };

export interface RecordSink {
  /** false: the sink is full, wait for drain. */
  write(line: string): boolean;
  once(event: 'drain', cb: () => void): unknown;
}

export class RecordQueue {
  readonly #queue: L7Record[] = [];
  #sink: RecordSink | undefined;
  #blocked = false;
  #unreported = 0;
  /** Records handed to the agent / shed since start. */
  sent = 0;
  lost = 0;

  constructor(readonly max = DEFAULT_RECORD_QUEUE) {}

  get waiting(): number {
    return this.#queue.length;
  }

  push(r: L7Record): void {
    if (this.#queue.length >= this.max) {
      this.lost++;
      this.#unreported++;
      return;
    }
    this.#queue.push(r);
    this.#flush();
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
      let line: RecordLine;
      if (this.#unreported > 0) {
        line = { lost: this.#unreported };
        this.#unreported = 0;
      } else {
        const r = this.#queue.shift();
        if (!r) return;
        line = { record: r };
        this.sent++;
      }
      if (!sink.write(JSON.stringify(line) + '\n')) {
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
