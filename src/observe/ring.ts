// The flow store: the last `capacity` flows, oldest overwritten first (Hubble's ring, default 4095).
//
//   slots:  [ f8 | f9 | f3 | f4 | f5 | f6 | f7 ]      capacity 7, written 10 flows
//                       ^ next write (oldest, f3, goes first)
//
// A write is one slot assignment. Reads walk from the oldest slot to the newest; `last` N takes the
// newest N of those that pass the predicate.

export const DEFAULT_RING_CAPACITY = 4095;
export const MAX_RING_CAPACITY = 65535;

export interface ReadOptions<T> {
  /** Only items this predicate accepts. */
  filter?: (item: T) => boolean;
  /** Only the newest `last` matches (after filtering). */
  last?: number;
}

export class Ring<T> {
  readonly #slots: (T | undefined)[];
  #next = 0;
  /** Items ever written. */
  written = 0;

  constructor(readonly capacity: number = DEFAULT_RING_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_RING_CAPACITY)
      throw new RangeError(`ring capacity ${capacity} is not within 1..${MAX_RING_CAPACITY}`);
    this.#slots = new Array<T | undefined>(capacity);
  }

  push(item: T): void {
    this.#slots[this.#next] = item;
    this.#next = (this.#next + 1) % this.capacity;
    this.written++;
  }

  get size(): number {
    return Math.min(this.written, this.capacity);
  }

  /** Matching items, oldest first. */
  read(o: ReadOptions<T> = {}): T[] {
    const out: T[] = [];
    const n = this.size;
    const start = this.written > this.capacity ? this.#next : 0;
    const want = o.last ?? Infinity;
    // Newest first so `last` stops early, then reversed.
    for (let i = n - 1; i >= 0 && out.length < want; i--) {
      const item = this.#slots[(start + i) % this.capacity] as T;
      if (!o.filter || o.filter(item)) out.push(item);
    }
    return out.reverse();
  }
}
