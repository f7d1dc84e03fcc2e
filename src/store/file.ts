// The file backend of the Store: one node's state in one root-only (0600) JSON file, for exactly
// one process (the node's agent; a lock file naming its pid keeps a second one out). Every write
// transaction applies in memory at once and resolves when a flush (tmp file + fsync + rename) holds
// it; transactions made while a flush runs share the next one. Watchers see a revision only after
// it is on disk. Recent revisions are kept in memory for watches from a past revision; what the
// file held when it was opened counts as compacted (like etcd after a compaction). Leases live in
// this process (timers) and in the file (deadlines): a lease whose deadline passed while no
// process had the store open expires when it is next opened.
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { WeirError } from '../shared/errors.js';
import {
  ERR_STORE_CLOSED,
  ERR_STORE_COMPACTED,
  ERR_STORE_CORRUPT,
  ERR_STORE_IO,
  ERR_STORE_LEASE,
  ERR_STORE_LOCKED,
  ERR_STORE_VALUE,
  conflict,
} from './errors.js';
import {
  checkKey,
  isJsonObject,
  type JsonObject,
  type KeyValue,
  type Lease,
  type LeaseOptions,
  type Store,
  type StoreOp,
  type TxnResult,
  type Watch,
  type WatchBatch,
  type WatchEvent,
  type WatchOptions,
} from './types.js';

const format = 'weir-store/1';

interface Entry {
  value: JsonObject;
  createRevision: number;
  modRevision: number;
  version: number;
  lease?: string;
}

interface LeaseRecord {
  ttlSeconds: number;
  /** Epoch ms. */
  expiresAt: number;
}

interface FileData {
  format: typeof format;
  revision: number;
  nextLease: number;
  kvs: Record<string, Entry>;
  leases: Record<string, LeaseRecord>;
}

export interface FileStoreOptions {
  /** Revisions kept for watches from the past (default 10 000). */
  history?: number;
}

interface Watcher {
  prefix: string;
  next: number;
  queue: WatchBatch[];
  draining: boolean;
  closed: boolean;
  opts: WatchOptions;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class FileStore implements Store {
  readonly backend = 'file' as const;
  private readonly kvs = new Map<string, Entry>();
  private readonly leases = new Map<string, LeaseRecord>();
  private readonly leaseTimers = new Map<string, NodeJS.Timeout>();
  private readonly lostHandlers = new Map<string, ((err: Error) => void)[]>();
  private rev: number;
  private nextLease: number;
  /** Revisions up to here are gone from `history`; a watch must start after it. */
  private compacted: number;
  private readonly history: WatchBatch[] = [];
  private readonly watchers = new Set<Watcher>();
  /** Batches committed in memory and waiting for the flush that makes them durable. */
  private unflushed: WatchBatch[] = [];
  private flushing: Promise<void> | undefined;
  private flushAgain = false;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private broken: Error | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    data: FileData,
    private readonly historyLimit: number,
  ) {
    for (const [k, e] of Object.entries(data.kvs)) this.kvs.set(k, e);
    for (const [id, l] of Object.entries(data.leases)) this.leases.set(id, l);
    this.rev = data.revision;
    this.nextLease = data.nextLease;
    this.compacted = data.revision;
  }

  get lockPath(): string {
    return `${this.path}.lock`;
  }

  /** Opens (or creates) the store at `path`; refuses while another live process holds it. */
  static async open(path: string, opts: FileStoreOptions = {}): Promise<FileStore> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await lock(`${path}.lock`);
    let data: FileData;
    try {
      data = await read(path);
    } catch (err) {
      await rm(`${path}.lock`, { force: true });
      throw err;
    }
    const store = new FileStore(path, data, opts.history ?? 10_000);
    // Leases whose deadline passed while nobody held the store expire now; the others keep running.
    const now = Date.now();
    for (const [id, l] of store.leases) {
      if (l.expiresAt <= now) store.expire(id);
      else store.armLease(id, l.expiresAt - now);
    }
    await store.flush();
    return store;
  }

  private check(): void {
    if (this.closed) throw new WeirError(ERR_STORE_CLOSED, `store ${this.path} is closed`);
    if (this.broken)
      throw new WeirError(ERR_STORE_IO, `store ${this.path} failed to write: ${this.broken.message}`, {
        cause: this.broken,
      });
  }

  async revision(): Promise<number> {
    this.check();
    return this.rev;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.check();
    const e = this.kvs.get(key);
    return e ? toKv(key, e) : undefined;
  }

  async list(prefix: string): Promise<{ revision: number; items: KeyValue[] }> {
    this.check();
    const items: KeyValue[] = [];
    for (const [k, e] of this.kvs) if (k.startsWith(prefix)) items.push(toKv(k, e));
    items.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { revision: this.rev, items };
  }

  async put(key: string, value: JsonObject, opts: { ifRevision?: number; lease?: string } = {}) {
    const r = await this.txn([{ op: 'put', key, value, ...opts }]);
    if (!r.ok) throw conflict(key, opts.ifRevision ?? -1, this.kvs.get(key)?.modRevision ?? 0);
    return r.revision;
  }

  async delete(key: string, opts: { ifRevision?: number } = {}) {
    const existed = this.kvs.has(key);
    const r = await this.txn([{ op: 'delete', key, ...opts }]);
    if (!r.ok) throw conflict(key, opts.ifRevision ?? -1, this.kvs.get(key)?.modRevision ?? 0);
    return { revision: r.revision, deleted: existed };
  }

  async txn(ops: StoreOp[]): Promise<TxnResult> {
    this.check();
    for (const o of ops) {
      try {
        checkKey(o.key);
      } catch (err) {
        throw new WeirError(ERR_STORE_VALUE, (err as Error).message);
      }
      if (o.op === 'put' && !isJsonObject(o.value))
        throw new WeirError(ERR_STORE_VALUE, `the value of ${o.key} must be a JSON object`);
      if (o.op === 'put' && o.lease !== undefined && !this.leases.has(o.lease))
        throw new WeirError(ERR_STORE_LEASE, `lease ${o.lease} does not exist (expired or revoked)`);
    }
    for (const o of ops) {
      if (o.ifRevision === undefined) continue;
      const have = this.kvs.get(o.key)?.modRevision ?? 0;
      if (have !== o.ifRevision) return { ok: false, revision: this.rev };
    }
    const revision = this.commit(ops);
    await this.flush();
    return { ok: true, revision };
  }

  /**
   * Applies writes in memory as one revision (none if nothing changes) and queues its batch.
   * Returns the revision the store is at after them.
   */
  private commit(ops: StoreOp[]): number {
    const rev = this.rev + 1;
    const events: WatchEvent[] = [];
    for (const o of ops) {
      if (o.op === 'put') {
        const old = this.kvs.get(o.key);
        // The stored value is a copy: callers may go on changing theirs.
        const e: Entry = {
          value: structuredClone(o.value),
          createRevision: old?.createRevision ?? rev,
          modRevision: rev,
          version: (old?.version ?? 0) + 1,
          ...(o.lease !== undefined ? { lease: o.lease } : {}),
        };
        this.kvs.set(o.key, e);
        events.push({
          type: 'put',
          key: o.key,
          value: e.value,
          createRevision: e.createRevision,
          version: e.version,
        });
      } else if (this.kvs.delete(o.key)) events.push({ type: 'delete', key: o.key });
    }
    if (events.length === 0) return this.rev;
    this.rev = rev;
    const batch = { revision: rev, events };
    this.history.push(batch);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift() as WatchBatch;
      this.compacted = dropped.revision;
    }
    this.unflushed.push(batch);
    return rev;
  }

  /** Resolves once everything committed so far is on disk (group commit). */
  private flush(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (this.flushing) this.flushAgain = true;
      else this.flushing = this.runFlushes();
    });
  }

  private async runFlushes(): Promise<void> {
    do {
      this.flushAgain = false;
      const waiters = this.waiters.splice(0);
      const batches = this.unflushed.splice(0);
      try {
        if (this.broken) throw this.broken;
        await this.writeFile();
      } catch (err) {
        this.broken ??= err as Error;
        const e = new WeirError(ERR_STORE_IO, `store ${this.path}: ${(err as Error).message}`, {
          cause: err,
        });
        for (const w of waiters) w.reject(e);
        for (const w of this.watchers) this.fail(w, e);
        continue;
      }
      for (const b of batches) for (const w of this.watchers) this.deliver(w, b);
      for (const w of waiters) w.resolve();
    } while (this.flushAgain || this.waiters.length > 0);
    this.flushing = undefined;
  }

  private async writeFile(): Promise<void> {
    const data: FileData = {
      format,
      revision: this.rev,
      nextLease: this.nextLease,
      kvs: Object.fromEntries(this.kvs),
      leases: Object.fromEntries(this.leases),
    };
    const text = JSON.stringify(data);
    const tmp = `${this.path}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
  }

  async watch(prefix: string, opts: WatchOptions): Promise<Watch> {
    this.check();
    const flushed = this.rev - this.unflushed.length;
    const from = opts.fromRevision === 0 ? this.rev + 1 : opts.fromRevision;
    if (from <= this.compacted)
      throw new WeirError(
        ERR_STORE_COMPACTED,
        `revision ${from} is compacted (the store keeps revisions after ${this.compacted})`,
        { details: { fromRevision: from, compacted: this.compacted } },
      );
    const w: Watcher = { prefix, next: from, queue: [], draining: false, closed: false, opts };
    // What is on disk already comes from history; what is still being flushed follows with it.
    for (const b of this.history) if (b.revision >= from && b.revision <= flushed) this.deliver(w, b);
    w.next = Math.max(from, flushed + 1);
    this.watchers.add(w);
    return {
      close: async () => {
        w.closed = true;
        this.watchers.delete(w);
      },
    };
  }

  private deliver(w: Watcher, b: WatchBatch): void {
    if (w.closed || b.revision < w.next) return;
    w.next = b.revision + 1;
    const events = b.events.filter((e) => e.key.startsWith(w.prefix));
    if (events.length === 0) return;
    w.queue.push({ revision: b.revision, events });
    if (w.draining) return;
    w.draining = true;
    queueMicrotask(() => {
      while (!w.closed && w.queue.length > 0) {
        const next = w.queue.shift() as WatchBatch;
        try {
          w.opts.onBatch(next);
        } catch (err) {
          // A watcher's bug must not break the store or other watchers.
          process.emitWarning(`store watcher threw: ${(err as Error).message}`);
        }
      }
      w.draining = false;
    });
  }

  private fail(w: Watcher, err: Error): void {
    if (w.closed) return;
    w.closed = true;
    this.watchers.delete(w);
    queueMicrotask(() => w.opts.onError(err));
  }

  async grantLease(ttlSeconds: number, opts: LeaseOptions = {}): Promise<Lease> {
    this.check();
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1)
      throw new WeirError(ERR_STORE_VALUE, `lease TTL must be a whole number of seconds ≥ 1`);
    const id = String(this.nextLease++);
    this.leases.set(id, { ttlSeconds, expiresAt: Date.now() + ttlSeconds * 1000 });
    this.armLease(id, ttlSeconds * 1000);
    await this.flush();
    let timer: NodeJS.Timeout | undefined;
    const release = () => {
      if (timer) clearInterval(timer);
      timer = undefined;
    };
    const lease: Lease = {
      id,
      ttlSeconds,
      keepAlive: async () => {
        this.check();
        const l = this.leases.get(id);
        if (!l) throw new WeirError(ERR_STORE_LEASE, `lease ${id} expired or was revoked`);
        l.expiresAt = Date.now() + ttlSeconds * 1000;
        this.armLease(id, ttlSeconds * 1000);
      },
      revoke: async () => {
        release();
        this.lostHandlers.delete(id);
        this.check();
        this.expire(id);
        await this.flush();
      },
      onLost: (fn) => this.lostHandlers.set(id, [...(this.lostHandlers.get(id) ?? []), fn]),
      release,
    };
    if (opts.autoKeepAlive !== false) {
      timer = setInterval(
        () => void lease.keepAlive().catch(() => release()),
        Math.max(100, (ttlSeconds * 1000) / 3),
      );
      timer.unref();
    }
    return lease;
  }

  private armLease(id: string, ms: number): void {
    clearTimeout(this.leaseTimers.get(id));
    const t = setTimeout(() => {
      const l = this.leases.get(id);
      if (!l || this.closed) return;
      if (l.expiresAt > Date.now()) return this.armLease(id, l.expiresAt - Date.now());
      this.expire(id);
      const handlers = this.lostHandlers.get(id) ?? [];
      this.lostHandlers.delete(id);
      void this.flush().catch(() => undefined);
      for (const h of handlers) h(new WeirError(ERR_STORE_LEASE, `lease ${id} expired`));
    }, ms);
    t.unref();
    this.leaseTimers.set(id, t);
  }

  /** Removes the lease and deletes its keys in one revision (flushed by the caller). */
  private expire(id: string): void {
    clearTimeout(this.leaseTimers.get(id));
    this.leaseTimers.delete(id);
    this.leases.delete(id);
    const keys = [...this.kvs].filter(([, e]) => e.lease === id).map(([k]) => k);
    this.commit(keys.map((key) => ({ op: 'delete' as const, key })));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (!this.broken) await this.flush().catch(() => undefined);
    this.closed = true;
    for (const t of this.leaseTimers.values()) clearTimeout(t);
    this.leaseTimers.clear();
    for (const w of this.watchers) w.closed = true;
    this.watchers.clear();
    await rm(this.lockPath, { force: true });
  }
}

function toKv(key: string, e: Entry): KeyValue {
  return {
    key,
    value: e.value,
    createRevision: e.createRevision,
    modRevision: e.modRevision,
    version: e.version,
    ...(e.lease !== undefined ? { lease: e.lease } : {}),
  };
}

async function read(path: string): Promise<FileData> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return { format, revision: 1, nextLease: 1, kvs: {}, leases: {} };
    throw err;
  }
  try {
    const data = JSON.parse(text) as FileData;
    if (data.format !== format) throw new Error(`format '${String(data.format)}' is not ${format}`);
    if (!Number.isInteger(data.revision) || !isJsonObject(data.kvs) || !isJsonObject(data.leases))
      throw new Error('revision, kvs or leases missing');
    return data;
  } catch (err) {
    throw new WeirError(ERR_STORE_CORRUPT, `${path} is not a weir store: ${(err as Error).message}`, {
      location: { file: path },
      cause: err,
    });
  }
}

/** Takes `path` (a file naming our pid); a holder that no longer runs is taken over. */
async function lock(path: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await readFile(path, 'utf8').catch(() => ''));
      if (holder && pidAlive(holder))
        throw new WeirError(ERR_STORE_LOCKED, `the store is held by process ${holder} (${path})`, {
          location: { file: path },
        });
      if (!holder)
        await new Promise((r) => setTimeout(r, 100)); // a holder between open and write
      else await rm(path, { force: true });
    }
  }
  throw new WeirError(ERR_STORE_LOCKED, `cannot take the store lock ${path}`, { location: { file: path } });
}
