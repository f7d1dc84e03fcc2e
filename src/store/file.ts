// The file backend of the Store: one node's state in root-only (0600) files, for exactly one
// process (the node's agent; a lock file naming its pid keeps a second one out). The state is a
// JSON snapshot (<path>) plus a write-ahead log (<path>.log, one JSON line per change: the keys and
// leases it changed). Every write transaction applies in memory at once and resolves when its log
// line is on disk (append + fsync); transactions made while a flush runs share the next one, so a
// write costs the size of the change, not of the store. When the log grows past its bound it is
// folded into a new snapshot (tmp file + fsync + rename), and so at every open. Watchers see a
// revision only after it is on disk. Recent revisions are kept in memory for watches from a past
// revision; what the store held when it was opened counts as compacted (like etcd after a
// compaction). Leases live in this process (timers) and in the files (deadlines): a lease whose
// deadline passed while no process had the store open expires when it is next opened.
import { mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { WeirError } from '../shared/errors.js';
import { processRuns } from '../shared/proc.js';
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
  /** The last log record the snapshot holds (records up to it are skipped when replaying). */
  seq?: number;
  kvs: Record<string, Entry>;
  leases: Record<string, LeaseRecord>;
}

/** One log line: what a change left (null = removed), with the counters after it. */
interface LogRecord {
  s: number;
  r: number;
  nl: number;
  kv?: Record<string, Entry | null>;
  ls?: Record<string, LeaseRecord | null>;
}

/** The log is folded into the snapshot once it is this large. */
const logLimitBytes = 4 << 20;

export interface FileStoreOptions {
  /** Revisions kept for watches from the past (default 10 000). */
  history?: number;
  /** Log size that triggers a new snapshot (default 4 MiB). */
  logLimitBytes?: number;
}

interface Watcher {
  prefix: string;
  next: number;
  queue: WatchBatch[];
  draining: boolean;
  closed: boolean;
  opts: WatchOptions;
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
  /** Log records not yet appended, and the sequence number of the last one made. */
  private pendingLog: string[] = [];
  private seq: number;
  private log: FileHandle | undefined;
  private logBytes = 0;

  private constructor(
    readonly path: string,
    data: FileData,
    private readonly historyLimit: number,
    private readonly logLimit: number,
  ) {
    for (const [k, e] of Object.entries(data.kvs)) this.kvs.set(k, e);
    for (const [id, l] of Object.entries(data.leases)) this.leases.set(id, l);
    this.rev = data.revision;
    this.nextLease = data.nextLease;
    this.seq = data.seq ?? 0;
    this.compacted = data.revision;
  }

  get logPath(): string {
    return `${this.path}.log`;
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
      replay(data, await readFile(`${path}.log`, 'utf8').catch(() => ''), `${path}.log`);
    } catch (err) {
      await rm(`${path}.lock`, { force: true });
      throw err;
    }
    const store = new FileStore(path, data, opts.history ?? 10_000, opts.logLimitBytes ?? logLimitBytes);
    // Leases whose deadline passed while nobody held the store expire now; the others keep running.
    const now = Date.now();
    for (const [id, l] of store.leases) {
      if (l.expiresAt <= now) store.expire(id);
      else store.armLease(id, l.expiresAt - now);
    }
    // Start from a snapshot holding everything and an empty log.
    await store.snapshot();
    store.log = await open(store.logPath, 'a', 0o600);
    await store.log.truncate(0);
    await store.log.sync();
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
    const changed: Record<string, Entry | null> = {};
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
        changed[o.key] = e;
        events.push({
          type: 'put',
          key: o.key,
          value: e.value,
          createRevision: e.createRevision,
          version: e.version,
        });
      } else if (this.kvs.delete(o.key)) {
        changed[o.key] = null;
        events.push({ type: 'delete', key: o.key });
      }
    }
    if (events.length === 0) return this.rev;
    this.rev = rev;
    this.record({ kv: changed });
    const batch = { revision: rev, events };
    this.history.push(batch);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift() as WatchBatch;
      this.compacted = dropped.revision;
    }
    this.unflushed.push(batch);
    return rev;
  }

  /** Queues the log line of a change (written by the next flush). */
  private record(change: Pick<LogRecord, 'kv' | 'ls'>): void {
    const rec: LogRecord = { s: ++this.seq, r: this.rev, nl: this.nextLease, ...change };
    this.pendingLog.push(JSON.stringify(rec) + '\n');
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
        await this.appendLog();
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

  /** Appends the queued log lines and syncs; folds the log into a snapshot when it is large. */
  private async appendLog(): Promise<void> {
    if (this.pendingLog.length === 0 || !this.log) return;
    const text = this.pendingLog.splice(0).join('');
    await this.log.write(text);
    await this.log.datasync();
    this.logBytes += Buffer.byteLength(text);
    if (this.logBytes < this.logLimit) return;
    // The snapshot holds every record made so far (also those still queued: replay skips them).
    await this.snapshot();
    await this.log.truncate(0);
    await this.log.sync();
    this.logBytes = 0;
  }

  /** Writes the whole state as the snapshot (tmp file, fsync, rename). */
  private async snapshot(): Promise<void> {
    const data: FileData = {
      format,
      revision: this.rev,
      nextLease: this.nextLease,
      seq: this.seq,
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
    const rec = { ttlSeconds, expiresAt: Date.now() + ttlSeconds * 1000 };
    this.leases.set(id, rec);
    this.record({ ls: { [id]: rec } });
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
        // The new deadline matters after a restart only: written with the next flush.
        this.record({ ls: { [id]: { ...l } } });
        void this.flush().catch(() => undefined);
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
    if (this.leases.delete(id)) this.record({ ls: { [id]: null } });
    const keys = [...this.kvs].filter(([, e]) => e.lease === id).map(([k]) => k);
    this.commit(keys.map((key) => ({ op: 'delete' as const, key })));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (!this.broken) await this.flush().catch(() => undefined);
    this.closed = true;
    await this.log?.close().catch(() => undefined);
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

/**
 * Applies the log's records newer than the snapshot to it. A last line without its newline was
 * being written when the process died (never acknowledged): it is left out.
 */
function replay(data: FileData, text: string, file: string): void {
  const lines = text.split('\n');
  lines.pop(); // '' after the last newline, or a torn last line
  for (const [i, line] of lines.entries()) {
    let rec: LogRecord;
    try {
      rec = JSON.parse(line) as LogRecord;
    } catch (err) {
      throw new WeirError(ERR_STORE_CORRUPT, `${file}: line ${i + 1} is not a log record`, {
        location: { file },
        cause: err,
      });
    }
    if (rec.s <= (data.seq ?? 0)) continue;
    for (const [k, e] of Object.entries(rec.kv ?? {})) {
      if (e) data.kvs[k] = e;
      else delete data.kvs[k];
    }
    for (const [id, l] of Object.entries(rec.ls ?? {})) {
      if (l) data.leases[id] = l;
      else delete data.leases[id];
    }
    data.revision = rec.r;
    data.nextLease = rec.nl;
    data.seq = rec.s;
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
      if (holder && processRuns(holder))
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
