// The Store: weir's one place for state that outlives a process — what users applied (desired
// state), what agents report, and node-local bookkeeping. A key-value store with etcd's semantics,
// so the one-node file backend and the etcd backend of a cluster are interchangeable:
//
// - one global revision, advanced by every write transaction (several keys written together share
//   one revision); each key carries the revision that created it, the one that last changed it,
//   and its version (writes since creation);
// - conditional writes: create-if-absent (ifRevision 0) and compare-on-revision (ifRevision n);
// - watches of a key prefix from a revision, delivering every change in revision order, one batch
//   per revision, so a watcher that stops at revision r resumes exactly from r + 1;
// - leases: keys written under a lease are deleted when it expires (no keep-alive within its TTL)
//   or is revoked.
//
// Values are JSON objects.

/** A JSON object (what a value must be). */
export type JsonObject = { [key: string]: unknown };

export interface KeyValue<T extends JsonObject = JsonObject> {
  key: string;
  value: T;
  createRevision: number;
  modRevision: number;
  /** Writes since the key was (last) created: 1 after the create. */
  version: number;
  /** The lease the key was written under. */
  lease?: string;
}

/** One write of a transaction. `ifRevision`: 0 = the key must be absent; n = its modRevision must be n. */
export type StoreOp =
  | { op: 'put'; key: string; value: JsonObject; ifRevision?: number; lease?: string }
  | { op: 'delete'; key: string; ifRevision?: number };

export interface TxnResult {
  /** false: a condition did not hold and nothing was written. */
  ok: boolean;
  /** The store's revision after the transaction (unchanged when nothing was written). */
  revision: number;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** The new value (put). */
  value?: JsonObject;
  /** Put: the key's modRevision (= the batch's revision); createRevision and version as stored. */
  createRevision?: number;
  version?: number;
}

/** The changes of one revision under the watched prefix, in the order they were made. */
export interface WatchBatch {
  revision: number;
  events: WatchEvent[];
}

export interface WatchOptions {
  /** The first revision to deliver; 0 = only changes after the current revision. */
  fromRevision: number;
  onBatch: (batch: WatchBatch) => void;
  /** The watch ended on its own (compacted history, lost connection for good); no batch follows. */
  onError: (err: Error) => void;
}

export interface Watch {
  close(): Promise<void>;
}

export interface Lease {
  readonly id: string;
  readonly ttlSeconds: number;
  /** Renews the TTL once. */
  keepAlive(): Promise<void>;
  /** Deletes the lease and every key written under it (one revision). */
  revoke(): Promise<void>;
  /** Called once if the lease expired or was revoked by someone else (its keys are gone). */
  onLost(fn: (err: Error) => void): void;
  /** Stops renewing it (the lease lives on until its TTL runs out). */
  release(): void;
}

export interface LeaseOptions {
  /** Renew it every third of its TTL until released or revoked (default true). */
  autoKeepAlive?: boolean;
}

export interface Store {
  /** 'file' (one node, this process only) or 'etcd' (a cluster). */
  readonly backend: 'file' | 'etcd';
  /** The current revision. */
  revision(): Promise<number>;
  get(key: string): Promise<KeyValue | undefined>;
  /** Every key starting with `prefix`, sorted by key, and the revision they were read at. */
  list(prefix: string): Promise<{ revision: number; items: KeyValue[] }>;
  /** Writes one key; a condition that does not hold throws ERR_STORE_CONFLICT. Returns the revision. */
  put(key: string, value: JsonObject, opts?: { ifRevision?: number; lease?: string }): Promise<number>;
  /** Deletes one key; a condition that does not hold throws ERR_STORE_CONFLICT. */
  delete(key: string, opts?: { ifRevision?: number }): Promise<{ revision: number; deleted: boolean }>;
  /** Several writes, all or nothing, in one revision. */
  txn(ops: StoreOp[]): Promise<TxnResult>;
  watch(prefix: string, opts: WatchOptions): Promise<Watch>;
  grantLease(ttlSeconds: number, opts?: LeaseOptions): Promise<Lease>;
  close(): Promise<void>;
}

/** Keys are printable, slash-separated paths (no empty segment). */
export function checkKey(key: string): void {
  if (!/^[\x21-\x7e]+$/.test(key) || key.startsWith('/') || key.includes('//'))
    throw new TypeError(`invalid store key '${key}'`);
}

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
