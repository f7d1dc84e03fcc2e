// The etcd backend of the Store (a cluster: every node's agent reads and writes one etcd), through
// the etcd3 client (gRPC). Values are JSON text; revisions, conditions, watches and leases are
// etcd's own. Writes of one txn are one etcd transaction: etcd limits a transaction to
// --max-txn-ops operations (128 by default; the etcd weir runs allows more).
import {
  BrokenCircuitError,
  ConsecutiveBreaker,
  ExponentialBackoff,
  circuitBreaker,
  handleWhen,
  retry,
} from 'cockatiel';
import { Etcd3, isRecoverableError, type IKeyValue, type IRequestOp, type IWatchResponse } from 'etcd3';
import { WeirError } from '../shared/errors.js';
import {
  ERR_STORE_CLOSED,
  ERR_STORE_COMPACTED,
  ERR_STORE_LEASE,
  ERR_STORE_UNREACHABLE,
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

export interface EtcdStoreOptions {
  /** Client URLs, e.g. ['http://127.0.0.1:2379']. */
  endpoints: string[];
  /** Per request (default 10 s). */
  timeoutMs?: number;
  /** connect(): how long etcd may take to answer the first request, retries included (default: unbounded). */
  connectTimeoutMs?: number;
}

const text = (b: Buffer | undefined) => (b ? b.toString('utf8') : '');
const num = (s: string | number | undefined) => Number(s ?? 0);

function toKv(kv: IKeyValue): KeyValue {
  return {
    key: text(kv.key),
    value: parseValue(text(kv.key), kv.value),
    createRevision: num(kv.create_revision),
    modRevision: num(kv.mod_revision),
    version: num(kv.version),
    ...(num(kv.lease) !== 0 ? { lease: String(kv.lease) } : {}),
  };
}

function parseValue(key: string, b: Buffer | undefined): JsonObject {
  try {
    const v: unknown = JSON.parse(text(b));
    if (isJsonObject(v)) return v;
  } catch {
    // below
  }
  throw new WeirError(ERR_STORE_VALUE, `etcd key ${key} does not hold a JSON object`);
}

export class EtcdStore implements Store {
  readonly backend = 'etcd' as const;
  private readonly client: Etcd3;
  private closed = false;
  private readonly timeoutMs: number;

  private constructor(readonly opts: EtcdStoreOptions) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: this.timeoutMs,
      // Streams (watches, lease keep-alives) run for as long as they are needed.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + this.timeoutMs }),
      faultHandling: {
        // etcd3's default breaker stays open 5 s after three failures, so the first calls after
        // etcd came back failed at once: probe again after 500 ms instead, and let a call that
        // meets an open breaker or a failed connection try again with back-off (bounded).
        host: () =>
          circuitBreaker(handleWhen(isRecoverableError), {
            halfOpenAfter: 500,
            breaker: new ConsecutiveBreaker(3),
          }),
        global: retry(
          handleWhen((e) => isRecoverableError(e) || e instanceof BrokenCircuitError),
          { maxAttempts: 6, backoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) },
        ),
      },
    });
  }

  /** Connects and checks that etcd answers. */
  static async connect(opts: EtcdStoreOptions): Promise<EtcdStore> {
    const s = new EtcdStore(opts);
    const limit = opts.connectTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await (limit === undefined
        ? s.revision()
        : Promise.race([
            s.revision(),
            new Promise<never>((_, reject) => {
              timer = setTimeout(
                () =>
                  reject(
                    new WeirError(
                      ERR_STORE_UNREACHABLE,
                      `etcd ${opts.endpoints.join(',')} did not answer within ${limit} ms`,
                    ),
                  ),
                limit,
              );
            }),
          ]));
    } catch (err) {
      await s.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return s;
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new WeirError(ERR_STORE_CLOSED, 'the etcd store is closed');
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WeirError) throw err;
      const e = err as Error;
      if (/lease not found/i.test(e.message))
        throw new WeirError(ERR_STORE_LEASE, `${what}: lease expired or revoked`, { cause: err });
      throw new WeirError(
        ERR_STORE_UNREACHABLE,
        `etcd ${this.opts.endpoints.join(',')}: ${what}: ${e.message}`,
        { cause: err },
      );
    }
  }

  async revision(): Promise<number> {
    const r = await this.call('revision', () => this.client.get('weir/').exec());
    return num(r.header.revision);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const r = await this.call(`get ${key}`, () => this.client.get(key).exec());
    const kv = r.kvs[0];
    return kv ? toKv(kv) : undefined;
  }

  async list(prefix: string): Promise<{ revision: number; items: KeyValue[] }> {
    const r = await this.call(`list ${prefix}`, () =>
      this.client.getAll().prefix(prefix).sort('Key', 'Ascend').exec(),
    );
    return { revision: num(r.header.revision), items: r.kvs.map(toKv) };
  }

  async put(key: string, value: JsonObject, opts: { ifRevision?: number; lease?: string } = {}) {
    const r = await this.txn([{ op: 'put', key, value, ...opts }]);
    if (!r.ok) throw conflict(key, opts.ifRevision ?? -1, (await this.get(key))?.modRevision ?? 0);
    return r.revision;
  }

  async delete(key: string, opts: { ifRevision?: number } = {}) {
    if (opts.ifRevision === undefined) {
      const r = await this.call(`delete ${key}`, () => this.client.delete().key(key).exec());
      return { revision: num(r.header.revision), deleted: num(r.deleted) > 0 };
    }
    const r = await this.txn([{ op: 'delete', key, ifRevision: opts.ifRevision }]);
    if (!r.ok) throw conflict(key, opts.ifRevision, (await this.get(key))?.modRevision ?? 0);
    return { revision: r.revision, deleted: opts.ifRevision !== 0 };
  }

  async txn(ops: StoreOp[]): Promise<TxnResult> {
    for (const o of ops) {
      try {
        checkKey(o.key);
      } catch (err) {
        throw new WeirError(ERR_STORE_VALUE, (err as Error).message);
      }
      if (o.op === 'put' && !isJsonObject(o.value))
        throw new WeirError(ERR_STORE_VALUE, `the value of ${o.key} must be a JSON object`);
    }
    const compare = ops
      .filter((o) => o.ifRevision !== undefined)
      .map((o) =>
        o.ifRevision === 0
          ? {
              key: Buffer.from(o.key),
              target: 'Create' as const,
              result: 'Equal' as const,
              create_revision: 0,
            }
          : {
              key: Buffer.from(o.key),
              target: 'Mod' as const,
              result: 'Equal' as const,
              mod_revision: o.ifRevision,
            },
      );
    const success: IRequestOp[] = ops.map((o) =>
      o.op === 'put'
        ? {
            request_put: {
              key: Buffer.from(o.key),
              value: Buffer.from(JSON.stringify(o.value)),
              ...(o.lease !== undefined ? { lease: o.lease } : {}),
            },
          }
        : { request_delete_range: { key: Buffer.from(o.key) } },
    );
    const r = await this.call('txn', () =>
      this.client.kv.txn({ compare, success, failure: [] }, { deadline: Date.now() + this.timeoutMs }),
    );
    return { ok: r.succeeded, revision: num(r.header.revision) };
  }

  async watch(prefix: string, opts: WatchOptions): Promise<Watch> {
    let b = this.client.watch().prefix(prefix);
    if (opts.fromRevision > 0) b = b.startRevision(String(opts.fromRevision));
    const watcher = await this.call(`watch ${prefix}`, () => b.create());
    let ended = false;
    let next = opts.fromRevision;
    const end = (err: Error) => {
      if (ended) return;
      ended = true;
      void watcher.cancel().catch(() => undefined);
      opts.onError(err);
    };
    watcher.on('data', (res: IWatchResponse) => {
      if (ended) return;
      if (num(res.compact_revision) > 0)
        return end(
          new WeirError(
            ERR_STORE_COMPACTED,
            `revision ${opts.fromRevision} is compacted (etcd keeps revisions from ${res.compact_revision})`,
          ),
        );
      // One response may span several revisions: one batch each, in order.
      let batch: WatchBatch | undefined;
      for (const e of res.events) {
        const rev = num(e.kv.mod_revision);
        // The client re-sends the watch from the last revision it saw after a reconnect.
        if (rev < next) continue;
        if (!batch || batch.revision !== rev) {
          if (batch) opts.onBatch(batch);
          batch = { revision: rev, events: [] };
        }
        const key = text(e.kv.key);
        const ev: WatchEvent =
          e.type === 'Put'
            ? {
                type: 'put',
                key,
                value: parseValue(key, e.kv.value),
                createRevision: num(e.kv.create_revision),
                version: num(e.kv.version),
              }
            : { type: 'delete', key };
        batch.events.push(ev);
      }
      if (batch) {
        next = batch.revision + 1;
        opts.onBatch(batch);
      }
    });
    watcher.on('error', (err: Error) =>
      end(
        /compact/i.test(err.message)
          ? new WeirError(ERR_STORE_COMPACTED, `watch of ${prefix}: ${err.message}`, { cause: err })
          : new WeirError(ERR_STORE_UNREACHABLE, `watch of ${prefix}: ${err.message}`, { cause: err }),
      ),
    );
    return {
      close: async () => {
        ended = true;
        await watcher.cancel().catch(() => undefined);
      },
    };
  }

  async grantLease(ttlSeconds: number, opts: LeaseOptions = {}): Promise<Lease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1)
      throw new WeirError(ERR_STORE_VALUE, `lease TTL must be a whole number of seconds ≥ 1`);
    const lease = this.client.lease(ttlSeconds, { autoKeepAlive: opts.autoKeepAlive !== false });
    const id = await this.call('lease grant', () => lease.grant());
    let revoking = false;
    return {
      id: String(id),
      ttlSeconds,
      keepAlive: async () => {
        await this.call(`lease ${id} keep-alive`, () => lease.keepaliveOnce());
      },
      revoke: async () => {
        revoking = true;
        await this.call(`lease ${id} revoke`, () => lease.revoke());
      },
      onLost: (fn) =>
        lease.on('lost', (err) => {
          if (!revoking) fn(new WeirError(ERR_STORE_LEASE, `lease ${id} lost: ${err.message}`));
        }),
      release: () => lease.release(),
    };
  }

  /**
   * Removes every key under `prefix` and the leases they were written under (revoked: keys of
   * other prefixes under those leases go too, which weir never writes). What `weir lab down` does
   * to an etcd it does not run. Returns what it removed.
   */
  async purge(prefix: string): Promise<{ keys: number; leases: number }> {
    checkKey(prefix);
    const r = await this.call(`list ${prefix}`, () => this.client.getAll().prefix(prefix).exec());
    const leases = [...new Set(r.kvs.map((kv) => String(kv.lease)).filter((l) => l !== '0'))];
    for (const id of leases)
      await this.call(`lease ${id} revoke`, () =>
        this.client.leaseClient.leaseRevoke({ ID: id }).catch((err: Error) => {
          // Expired meanwhile: its keys are gone already.
          if (!/lease not found/i.test(err.message)) throw err;
        }),
      );
    await this.call(`delete ${prefix}`, () => this.client.delete().prefix(prefix).exec());
    return { keys: r.kvs.length, leases: leases.length };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }
}
