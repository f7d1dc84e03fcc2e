// Flows of several nodes in one stream, in time order, as Hubble Relay merges its peers: a finished
// query (no --follow) sorts everything and keeps the newest --last; a followed one holds each flow
// for a short window so a slower node's older flows still come out before newer ones.
import type { Flow } from './flow.js';

/** RFC 3339 with nanoseconds and a fixed width (KtimeClock), so strings compare as times. */
const byTime = (a: Flow, b: Flow) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0);

/** Every node's flows in time order (stable: equal times keep their node's order); the newest `last`. */
export function mergeFlows(perNode: Flow[][], last?: number): Flow[] {
  const all = perNode.flat().sort(byTime);
  return last === undefined ? all : last === 0 ? [] : all.slice(-last);
}

/**
 * Followed flows of several nodes: each is held `windowMs` after it arrived, then emitted with every
 * held flow not newer than it, oldest first. Flows that arrive later than the window but older than
 * one already emitted come out at once (never dropped).
 */
export class FlowMerger {
  #held: { flow: Flow; at: number }[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly emit: (flow: Flow) => void,
    private readonly windowMs = 300,
    private readonly now: () => number = Date.now,
  ) {}

  push(flow: Flow): void {
    this.#held.push({ flow, at: this.now() });
    this.#schedule();
  }

  /** Emits the flows whose window passed (and older held ones). */
  drain(): void {
    const cutoff = this.now() - this.windowMs;
    const due = this.#held.filter((h) => h.at <= cutoff);
    if (due.length) {
      const newest = due.map((h) => h.flow.time).reduce((a, b) => (a > b ? a : b));
      const out = this.#held.filter((h) => h.flow.time <= newest);
      this.#held = this.#held.filter((h) => h.flow.time > newest);
      for (const h of out.sort((a, b) => byTime(a.flow, b.flow))) this.emit(h.flow);
    }
    this.#schedule();
  }

  /** Emits everything held, in time order (the end of the stream). */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const out = this.#held.sort((a, b) => byTime(a.flow, b.flow));
    this.#held = [];
    for (const h of out) this.emit(h.flow);
  }

  #schedule(): void {
    if (this.#timer || !this.#held.length) return;
    const oldest = Math.min(...this.#held.map((h) => h.at));
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.drain();
      },
      Math.max(0, oldest + this.windowMs - this.now()),
    );
  }
}
