// Numeric security identities for label sets. The same sorted label set always gets the same id
// while it is in use; ids are reference counted and released when the last user goes away.
// Pod label sets get cluster ids (256..65535), CIDRs get node-local ids ((1<<24)+1 ...), reserved
// label sets keep their fixed ids (1..10). The state round-trips through JSON so an agent restart
// keeps every id stable.
import { WeirError } from '../shared/errors.js';
import { parseLabel, sortLabels, type Label } from './labels.js';
import {
  CLUSTER_IDENTITY_MAX,
  CLUSTER_IDENTITY_MIN,
  LOCAL_IDENTITY_MAX,
  LOCAL_IDENTITY_MIN,
  reservedIdentities,
  reservedLabels,
} from './reserved.js';

export interface Identity {
  id: number;
  /** Sorted "source:key=value" strings. */
  labels: string[];
}

export interface IdentityAllocatorState {
  version: 1;
  identities: { id: number; labels: string[]; refs: number }[];
  nextCluster: number;
  nextLocal: number;
}

interface Slot {
  id: number;
  labels: string[];
  refs: number;
}

const keyOf = (labels: readonly string[]) => labels.join('\n');

const reservedByKey = new Map<string, number>(
  [...reservedIdentities.keys()].map((id) => [keyOf(reservedLabels(id).sort()), id]),
);

export class IdentityAllocator {
  private readonly byKey = new Map<string, Slot>();
  private readonly byId = new Map<number, Slot>();
  private nextCluster = CLUSTER_IDENTITY_MIN;
  private nextLocal = LOCAL_IDENTITY_MIN;
  #generation = 0;
  /**
   * The cluster's id of a pod label set (labels joined by newlines), when ids are allocated
   * cluster-wide (src/cluster/identities.ts): a new slot takes it instead of the next local one.
   */
  clusterIds: ((key: string) => number | undefined) | undefined;

  /** Advances whenever an id is allocated or freed: the persisted state changes only then. */
  get generation(): number {
    return this.#generation;
  }

  /** Identity of a label set; allocates (refs 1) or adds a reference. */
  allocate(labels: readonly Label[] | readonly string[]): Identity {
    // Labels already in canonical form (what the engine passes) skip normalising: a key that
    // equals a stored one is canonical.
    if (labels.every((l) => typeof l === 'string')) {
      const direct = keyOf(labels as readonly string[]);
      const reserved = reservedByKey.get(direct);
      if (reserved !== undefined) return { id: reserved, labels: [...(labels as readonly string[])] };
      const slot = this.byKey.get(direct);
      if (slot && slot.labels.length === labels.length) {
        slot.refs++;
        return { id: slot.id, labels: slot.labels };
      }
    }
    const sorted = normalize(labels);
    const key = keyOf(sorted);
    const reserved = reservedByKey.get(key);
    if (reserved !== undefined) return { id: reserved, labels: sorted };
    let slot = this.byKey.get(key);
    if (!slot) {
      const local = sorted.some((l) => l.startsWith('cidr:'));
      const given = local ? undefined : this.clusterIds?.(key);
      const id =
        given !== undefined && !this.byId.has(given)
          ? given
          : local
            ? this.nextFree('local')
            : this.nextFree('cluster');
      slot = { id, labels: sorted, refs: 0 };
      this.byKey.set(key, slot);
      this.byId.set(slot.id, slot);
      this.#generation++;
    }
    slot.refs++;
    return { id: slot.id, labels: slot.labels };
  }

  /**
   * An independent copy (same ids, labels and references): what-if computations (`policy diff`)
   * allocate on it and leave this one as it is. Label sets already held stay canonical lookups.
   */
  clone(): IdentityAllocator {
    const c = new IdentityAllocator();
    for (const [key, slot] of this.byKey) {
      const copy = { ...slot };
      c.byKey.set(key, copy);
      c.byId.set(copy.id, copy);
    }
    c.nextCluster = this.nextCluster;
    c.nextLocal = this.nextLocal;
    c.clusterIds = this.clusterIds;
    return c;
  }

  /**
   * Moves every pod label set whose cluster id (clusterIds) differs from the id it holds here to
   * the cluster's id (when no other slot holds it): after the cluster gave the label set another id
   * while this node was cut off (its references gone with its lease), the node follows the cluster
   * rather than judging and sending with an id the other nodes no longer know. Returns the moves
   * (old id -> new id): references held under an old id are now the new id's.
   */
  adoptClusterIds(): Map<number, number> {
    const moved = new Map<number, number>();
    const ids = this.clusterIds;
    if (!ids) return moved;
    for (const [key, slot] of this.byKey) {
      if (slot.id < CLUSTER_IDENTITY_MIN || slot.id > CLUSTER_IDENTITY_MAX) continue;
      const given = ids(key);
      if (given === undefined || given === slot.id || this.byId.has(given)) continue;
      moved.set(slot.id, given);
      this.byId.delete(slot.id);
      slot.id = given;
      this.byId.set(given, slot);
    }
    if (moved.size) this.#generation++;
    return moved;
  }

  /** Identity already allocated for a label set, without taking a reference. */
  find(labels: readonly Label[] | readonly string[]): Identity | undefined {
    const sorted = normalize(labels);
    const reserved = reservedByKey.get(keyOf(sorted));
    if (reserved !== undefined) return { id: reserved, labels: sorted };
    const slot = this.byKey.get(keyOf(sorted));
    return slot && { id: slot.id, labels: slot.labels };
  }

  get(id: number): Identity | undefined {
    if (reservedIdentities.has(id)) return { id, labels: reservedLabels(id).sort() };
    const slot = this.byId.get(id);
    return slot && { id: slot.id, labels: slot.labels };
  }

  /** Drops one reference; the id is freed when none are left. Reserved ids are never freed. */
  release(id: number): void {
    if (reservedIdentities.has(id)) return;
    const slot = this.byId.get(id);
    if (!slot) throw new WeirError('ERR_IDENTITY_UNKNOWN', `identity ${id} is not allocated`);
    if (--slot.refs > 0) return;
    this.byId.delete(id);
    this.byKey.delete(keyOf(slot.labels));
    this.#generation++;
  }

  refs(id: number): number {
    return this.byId.get(id)?.refs ?? 0;
  }

  /** Every allocated (non-reserved) identity, by id. */
  list(): Identity[] {
    return [...this.byId.values()].sort((a, b) => a.id - b.id).map((s) => ({ id: s.id, labels: s.labels }));
  }

  toJSON(): IdentityAllocatorState {
    return {
      version: 1,
      identities: [...this.byId.values()]
        .sort((a, b) => a.id - b.id)
        .map((s) => ({ id: s.id, labels: [...s.labels], refs: s.refs })),
      nextCluster: this.nextCluster,
      nextLocal: this.nextLocal,
    };
  }

  static fromJSON(state: IdentityAllocatorState): IdentityAllocator {
    if (state?.version !== 1 || !Array.isArray(state.identities))
      throw new WeirError('ERR_IDENTITY_STATE', 'identity allocator state has an unknown format');
    const a = new IdentityAllocator();
    for (const s of state.identities) {
      const labels = normalize(s.labels);
      const key = keyOf(labels);
      if (a.byId.has(s.id) || a.byKey.has(key))
        throw new WeirError('ERR_IDENTITY_STATE', `identity ${s.id} appears twice in the saved state`);
      const slot = { id: s.id, labels, refs: Math.max(1, s.refs) };
      a.byId.set(s.id, slot);
      a.byKey.set(key, slot);
    }
    a.nextCluster = state.nextCluster;
    a.nextLocal = state.nextLocal;
    return a;
  }

  /**
   * Ids advance rather than reuse the lowest hole, so a freed id is not handed to another label
   * set while stale datapath entries for it may still exist; they wrap when the range ends.
   */
  private nextFree(range: 'cluster' | 'local'): number {
    const [min, max] =
      range === 'cluster'
        ? [CLUSTER_IDENTITY_MIN, CLUSTER_IDENTITY_MAX]
        : [LOCAL_IDENTITY_MIN, LOCAL_IDENTITY_MAX];
    let id = range === 'cluster' ? this.nextCluster : this.nextLocal;
    for (let tries = 0; tries <= max - min; tries++) {
      if (id > max) id = min;
      if (!this.byId.has(id)) {
        if (range === 'cluster') this.nextCluster = id + 1;
        else this.nextLocal = id + 1;
        return id;
      }
      id++;
    }
    throw new WeirError('ERR_IDENTITY_EXHAUSTED', `no free ${range} identity left (${min}..${max})`);
  }
}

function normalize(labels: readonly Label[] | readonly string[]): string[] {
  const parsed = labels.map((l) => (typeof l === 'string' ? parseLabel(l) : l));
  return sortLabels(parsed);
}
