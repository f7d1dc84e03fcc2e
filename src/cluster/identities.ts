// Security identities allocated cluster-wide in the Store, laid out like Cilium's kvstore
// allocator (pkg/kvstore/allocator):
//
//   weir/state/identities/v1/id/<id>               { labels }: the label set, created if absent,
//                                                  under no lease
//   weir/state/identities/v1/value/<labels>/<node> { id }: the node uses the id, under its lease
//   weir/state/identities/v1/locks/allocator       held while allocating or freeing ids (a short
//                                                  lease of its own: a dead holder frees it)
//
// Every node references the label sets it uses (its pods' and the other nodes' pods' it selects
// or sees in its ipcache); an id is freed when no node refers to it. New ids are allocated under
// the lock and written create-if-absent, so nodes allocating at once never give one id to two
// label sets nor two ids to one. Reads come from the node's watch-fed cache of weir/state/.
import { WeirError } from '../shared/errors.js';
import { CLUSTER_IDENTITY_MAX, CLUSTER_IDENTITY_MIN } from '../identity/reserved.js';
import type { Lease, Store, StoreOp } from '../store/index.js';
import type { Informer } from './informer.js';

export const identitiesPrefix = 'weir/state/identities/v1/';
const idPrefix = `${identitiesPrefix}id/`;
const valuePrefix = `${identitiesPrefix}value/`;
export const identityLockKey = `${identitiesPrefix}locks/allocator`;
export const identityIdKey = (id: number) => `${idPrefix}${id}`;
/** Cilium's encoding of a label set in a key: each label followed by ';'. */
export const encodeLabels = (labels: readonly string[]) => labels.map((l) => `${l};`).join('');
export const identityValueKey = (labels: readonly string[], node: string) =>
  `${valuePrefix}${encodeLabels(labels)}/${node}`;

/** The lock's lease (Cilium: 25 s for locks). */
const lockLeaseSeconds = 25;
const lockTimeoutMs = 30_000;

export interface ClusterIdentity {
  id: number;
  labels: string[];
}

/** The label set's key as the local allocator makes it (labels joined by newlines). */
const keyOf = (labels: readonly string[]) => labels.join('\n');

export class ClusterIdentities {
  private lockLease: Lease | undefined;
  /** Ids freed or allocated by this node, for the metrics and tests. */
  allocations = 0;
  frees = 0;

  constructor(
    private readonly store: Store,
    /** The node's cache of weir/state/ (or of identitiesPrefix). */
    private readonly cache: Informer,
    private readonly node: string,
    private readonly nodeLease: () => Lease | undefined,
  ) {}

  /** Every allocated identity, from the cache. */
  list(): ClusterIdentity[] {
    return this.cache
      .values<{ labels: string[] }>(idPrefix)
      .map((i) => ({ id: Number(i.key.slice(idPrefix.length)), labels: i.value.labels }))
      .filter((i) => Number.isInteger(i.id))
      .sort((a, b) => a.id - b.id);
  }

  private byKey(): Map<string, number> {
    return new Map(this.list().map((i) => [keyOf(i.labels), i.id]));
  }

  /** The cluster id of a label set (labels sorted, joined by newlines), if allocated. */
  lookup(): (key: string) => number | undefined {
    const m = this.byKey();
    return (key) => m.get(key);
  }

  /** This node's references: label-set key -> {labels, id}. */
  private mine(): Map<string, { key: string; labels: string[]; id: number }> {
    const out = new Map<string, { key: string; labels: string[]; id: number }>();
    const suffix = `/${this.node}`;
    const ids = new Map(this.list().map((i) => [i.id, i.labels]));
    for (const v of this.cache.values<{ id: number }>(valuePrefix)) {
      if (!v.key.endsWith(suffix)) continue;
      const labels = ids.get(v.value.id);
      if (labels) out.set(keyOf(labels), { key: v.key, labels, id: v.value.id });
    }
    return out;
  }

  /**
   * Makes the node's references exactly `used` (sorted label sets): allocates ids for label sets
   * that have none, references new ones under the node's lease, drops references no longer
   * used and frees the ids nobody refers to any more. Nothing is written when nothing changed.
   *
   * Only referencing ids that exist (the common case: another node's new pod) takes no lock: one
   * transaction writes the references and puts each id key again unchanged, on condition that
   * its revision is the one in the cache. A free (under the lock) is conditioned on the id key's
   * revision too, so a reference and the free of its id never both succeed: the loser tries
   * again, under the lock.
   */
  async sync(
    used: readonly (readonly string[])[],
    /** The id this node holds a label set under: taken again when free (a lost lease's ids). */
    preferred?: (labels: readonly string[]) => number | undefined,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (await this.trySync(used, attempt > 1, preferred)) return;
      if (attempt >= 5)
        throw new WeirError(
          'ERR_IDENTITY_CONFLICT',
          'the identities kept changing while this node referenced or freed them (5 attempts)',
        );
    }
  }

  /** One attempt of sync(); false when a condition failed (nothing was written). */
  private async trySync(
    used: readonly (readonly string[])[],
    lockedOnly: boolean,
    preferred: ((labels: readonly string[]) => number | undefined) | undefined,
  ): Promise<boolean> {
    const want = new Map(used.map((l) => [keyOf(l), [...l]]));
    const have = this.mine();
    const known = this.byKey();
    const missing = [...want].filter(([k]) => !known.has(k));
    const add = [...want].filter(([k]) => !have.has(k));
    const drop = [...have].filter(([k]) => !want.has(k));
    if (missing.length === 0 && add.length === 0 && drop.length === 0) return true;
    const lease = this.nodeLease();
    const reference = (labels: string[], id: number): StoreOp => ({
      op: 'put',
      key: identityValueKey(labels, this.node),
      value: { id },
      ...(lease ? { lease: lease.id } : {}),
    });
    if (!lockedOnly && missing.length === 0 && drop.length === 0) {
      const ops: StoreOp[] = [];
      for (const [k, labels] of add) {
        const id = known.get(k) as number;
        const idKv = this.cache.items.get(identityIdKey(id));
        if (!idKv) return false;
        ops.push(reference(labels, id), {
          op: 'put',
          key: identityIdKey(id),
          value: idKv.value,
          ifRevision: idKv.modRevision,
        });
      }
      const res = await this.store.txn(ops);
      if (!res.ok) return false;
      await this.cache.waitRevision(res.revision);
      return true;
    }
    let ok = true;
    await this.locked(async () => {
      const ids = this.byKey();
      const taken = new Set(ids.values());
      const ops: StoreOp[] = [];
      let next = Math.max(CLUSTER_IDENTITY_MIN - 1, ...taken) + 1;
      // Missing as the cache holds them under the lock (an id may have been freed since).
      for (const [k, labels] of want) {
        if (ids.has(k)) continue;
        const mine = preferred?.(labels);
        if (
          mine !== undefined &&
          mine >= CLUSTER_IDENTITY_MIN &&
          mine <= CLUSTER_IDENTITY_MAX &&
          !taken.has(mine)
        ) {
          taken.add(mine);
          ids.set(k, mine);
          ops.push({ op: 'put', key: identityIdKey(mine), value: { labels }, ifRevision: 0 });
          continue;
        }
        next = this.nextFree(next, taken);
        taken.add(next);
        ids.set(k, next);
        ops.push({ op: 'put', key: identityIdKey(next), value: { labels }, ifRevision: 0 });
        next++;
      }
      const allocated = ops.length;
      for (const [k, labels] of add) ops.push(reference(labels, ids.get(k) as number));
      for (const [, r] of drop) ops.push({ op: 'delete', key: r.key });
      // Ids whose last reference this drops: freed in the same transaction, if no reference
      // taken without the lock touched them since the cache saw them.
      const refs = this.cache.values<{ id: number }>(valuePrefix);
      let freed = 0;
      for (const [, r] of drop) {
        const others = refs.some((v) => v.value.id === r.id && v.key !== r.key);
        const idKv = this.cache.items.get(identityIdKey(r.id));
        if (!others && idKv) {
          ops.push({ op: 'delete', key: identityIdKey(r.id), ifRevision: idKv.modRevision });
          freed++;
        }
      }
      if (ops.length === 0) return;
      const res = await this.store.txn(ops);
      if (!res.ok) {
        ok = false;
        return;
      }
      this.allocations += allocated;
      this.frees += freed;
      await this.cache.waitRevision(res.revision);
    });
    return ok;
  }

  /** Frees the ids nobody refers to (after nodes went away with their leases). */
  async collect(): Promise<number> {
    const refs = new Set(this.cache.values<{ id: number }>(valuePrefix).map((v) => v.value.id));
    const orphans = this.list().filter((i) => !refs.has(i.id));
    if (orphans.length === 0) return 0;
    let n = 0;
    await this.locked(async () => {
      const live = new Set(this.cache.values<{ id: number }>(valuePrefix).map((v) => v.value.id));
      // Conditioned on the id keys' revisions: a reference taken without the lock meanwhile
      // keeps its id (nothing is freed this time; the next collect sees it).
      const ops: StoreOp[] = this.list()
        .filter((i) => !live.has(i.id))
        .map((i) => ({
          op: 'delete' as const,
          key: identityIdKey(i.id),
          ifRevision: this.cache.items.get(identityIdKey(i.id))?.modRevision ?? 0,
        }));
      if (ops.length === 0) return;
      const res = await this.store.txn(ops);
      if (!res.ok) return;
      n = ops.length;
      this.frees += n;
      await this.cache.waitRevision(res.revision);
    });
    return n;
  }

  private nextFree(from: number, taken: ReadonlySet<number>): number {
    let id = from;
    for (let tries = 0; tries <= CLUSTER_IDENTITY_MAX - CLUSTER_IDENTITY_MIN; tries++, id++) {
      if (id > CLUSTER_IDENTITY_MAX) id = CLUSTER_IDENTITY_MIN;
      if (!taken.has(id)) return id;
    }
    throw new WeirError(
      'ERR_IDENTITY_EXHAUSTED',
      `no free cluster identity left (${CLUSTER_IDENTITY_MIN}..${CLUSTER_IDENTITY_MAX})`,
    );
  }

  /**
   * Runs `fn` holding the cluster's allocator lock (a key created if absent under a 25 s lease),
   * with the cache complete up to the lock's revision: every earlier holder's writes are in it.
   */
  private async locked(fn: () => Promise<void>): Promise<void> {
    const deadline = Date.now() + lockTimeoutMs;
    let delay = 5;
    for (let attempt = 1; ; attempt++) {
      if (!this.lockLease) {
        const lease = await this.store.grantLease(lockLeaseSeconds);
        // Lost (the store was away longer than its TTL): the next lock takes a new one.
        lease.onLost(() => {
          if (this.lockLease === lease) this.lockLease = undefined;
        });
        this.lockLease = lease;
      }
      let r;
      try {
        r = await this.store.txn([
          {
            op: 'put',
            key: identityLockKey,
            value: { node: this.node, at: new Date().toISOString() },
            ifRevision: 0,
            lease: this.lockLease.id,
          },
        ]);
      } catch (err) {
        // A lease the store no longer knows: once with a new one.
        if (attempt > 1) throw err;
        this.lockLease.release();
        this.lockLease = undefined;
        continue;
      }
      if (r.ok) {
        await this.cache.waitRevision(r.revision);
        break;
      }
      if (Date.now() > deadline)
        throw new WeirError(
          'ERR_IDENTITY_LOCKED',
          `the cluster's identity allocator lock (${identityLockKey}) stayed taken for ${lockTimeoutMs / 1000} s`,
        );
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 200);
    }
    try {
      await fn();
    } finally {
      await this.store.delete(identityLockKey).catch(() => undefined);
    }
  }

  /** Revokes the lock's lease (held for the next lock; it holds no key between locks). */
  async close(): Promise<void> {
    const l = this.lockLease;
    this.lockLease = undefined;
    if (!l) return;
    l.release();
    // Best effort, bounded: an unreachable etcd lets it run out on its own (25 s).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      l.revoke().catch(() => undefined),
      new Promise((r) => (timer = setTimeout(r, 2000))),
    ]);
    clearTimeout(timer);
  }
}
