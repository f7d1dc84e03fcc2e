// A cache of one key prefix of the Store, kept current: list once, then watch from the revision
// after the list, resuming from the last revision seen when a watch ends (and listing again if
// the store no longer has that revision). Listeners hear every change, batch by batch, in order.
import { WeirError } from '../shared/errors.js';
import {
  ERR_STORE_COMPACTED,
  type KeyValue,
  type Store,
  type Watch,
  type WatchEvent,
} from '../store/index.js';

export interface InformerChange {
  revision: number;
  events: WatchEvent[];
  /** The cache was rebuilt from a list (start, or after compaction): treat everything as changed. */
  resync: boolean;
}

export interface InformerOptions {
  /** Called with errors it recovers from (it keeps retrying). */
  onError?: (err: Error) => void;
  /** Bounds the retry delay after a failed watch or list. */
  maxBackoffMs?: number;
}

export class Informer {
  readonly items = new Map<string, KeyValue>();
  /** The revision the cache is complete up to. */
  revision = 0;
  private watch: Watch | undefined;
  private stopped = false;
  private readonly listeners = new Set<(c: InformerChange) => void>();
  private waiters: { rev: number; resolve: () => void }[] = [];
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly store: Store,
    readonly prefix: string,
    private readonly opts: InformerOptions = {},
  ) {}

  onChange(fn: (c: InformerChange) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Lists and starts watching; resolves once the cache holds the list. */
  async start(): Promise<void> {
    await this.relist();
    await this.startWatch();
  }

  private async relist(): Promise<void> {
    const { revision, items } = await this.store.list(this.prefix);
    this.items.clear();
    for (const kv of items) this.items.set(kv.key, kv);
    this.advance(revision, [], true);
  }

  private async startWatch(): Promise<void> {
    if (this.stopped) return;
    this.watch = await this.store.watch(this.prefix, {
      fromRevision: this.revision + 1,
      onBatch: (b) => {
        for (const e of b.events) {
          if (e.type === 'put')
            this.items.set(e.key, {
              key: e.key,
              value: e.value ?? {},
              createRevision: e.createRevision ?? b.revision,
              modRevision: b.revision,
              version: e.version ?? 1,
            });
          else this.items.delete(e.key);
        }
        this.advance(b.revision, b.events, false);
      },
      onError: (err) => this.recover(err),
    });
  }

  private recover(err: Error): void {
    if (this.stopped) return;
    this.watch = undefined;
    this.opts.onError?.(err);
    const compacted = err instanceof WeirError && err.code === ERR_STORE_COMPACTED;
    let delay = 100;
    const attempt = () => {
      this.retryTimer = undefined;
      if (this.stopped) return;
      void (async () => {
        try {
          if (compacted) await this.relist();
          await this.startWatch();
        } catch (e) {
          this.opts.onError?.(e as Error);
          delay = Math.min(delay * 2, this.opts.maxBackoffMs ?? 5000);
          this.retryTimer = setTimeout(attempt, delay);
        }
      })();
    };
    this.retryTimer = setTimeout(attempt, delay);
  }

  private advance(revision: number, events: WatchEvent[], resync: boolean): void {
    this.revision = Math.max(this.revision, revision);
    for (const fn of this.listeners) fn({ revision, events, resync });
    const ready = this.waiters.filter((w) => w.rev <= this.revision);
    this.waiters = this.waiters.filter((w) => w.rev > this.revision);
    for (const w of ready) w.resolve();
  }

  /**
   * Resolves once the cache is complete up to `revision` (a writer waits for its own write before
   * it reads again). Changes outside the prefix do not advance the cache: callers wait for
   * revisions they know touched it.
   */
  waitRevision(revision: number, timeoutMs = 30_000): Promise<void> {
    if (revision <= this.revision) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(
          new WeirError(
            'ERR_STORE_WATCH_BEHIND',
            `the watch of ${this.prefix} did not reach revision ${revision} within ${timeoutMs} ms (at ${this.revision})`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push({ rev: revision, resolve: done });
    });
  }

  /** The cached values whose keys start with `prefix` (a sub-prefix of the informer's). */
  values<T>(prefix = this.prefix): { key: string; value: T; modRevision: number }[] {
    const out: { key: string; value: T; modRevision: number }[] = [];
    for (const kv of this.items.values())
      if (kv.key.startsWith(prefix))
        out.push({ key: kv.key, value: kv.value as T, modRevision: kv.modRevision });
    return out;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.watch?.close();
    this.watch = undefined;
  }
}
