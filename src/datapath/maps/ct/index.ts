// weir_ct: connection tracking. The datapath creates and refreshes entries; user space lists them
// and garbage-collects expired ones (the datapath already ignores them, GC only frees room).
import { TypedMap, type BpfMap } from '../../../bpf/index.js';
import { addrKey, addrText } from '../../addr.js';
import { monotonicNowNs } from '../../clock.js';
import { directionOf, DIR, type Direction } from '../../direction.js';
import { CT_F_PROXY, CtEntry, CtEntryFlag, CtKey, CtState } from './layout.js';

export type CtRawKey = ReturnType<typeof CtKey.decode>;
export type CtRawEntry = ReturnType<typeof CtEntry.decode>;

export interface CtTuple {
  family: 4 | 6;
  /** The initiator. */
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: number;
  /** Whose policy admitted the connection (CT_F_*). */
  direction: Direction;
  /** Opened by the node proxy's transparent upstream socket (CT_F_PROXY in the key). */
  fromProxy?: boolean;
}

export interface CtConnection extends CtTuple {
  state: 'new' | 'established' | 'closing' | 'unknown';
  packetsFwd: bigint;
  bytesFwd: bigint;
  packetsRev: bigint;
  bytesRev: bigint;
  lifetimeNs: bigint;
  expired: boolean;
  cookie: number;
  srcIdentity: number;
  tcpFlagsFwd: number;
  tcpFlagsRev: number;
  /** Non-zero: a service connection translated at tc; replies show this frontend (weir_lb_revnat). */
  revNatIndex: number;
  /** Redirected to the node proxy's listener on this port (0: not redirected). */
  proxyPort: number;
}

const STATE_NAMES: Record<number, CtConnection['state']> = {
  [CtState.new]: 'new',
  [CtState.established]: 'established',
  [CtState.closing]: 'closing',
};

export class CtMap {
  readonly typed: TypedMap<CtRawKey, CtRawEntry>;

  constructor(map: BpfMap) {
    this.typed = new TypedMap(map, CtKey, CtEntry);
  }

  /** Every entry, expired ones included (flagged), against the monotonic clock at `nowNs`. */
  list(nowNs: bigint = monotonicNowNs()): CtConnection[] {
    return this.typed.lookupBatch().map(([k, v]) => connectionOf(k, v, nowNs));
  }

  /**
   * The tuples of the entries not expired at `nowNs`, read in place from one batch read (nothing
   * else decoded): what policy revalidation needs, cheap enough for 100 000 connections.
   */
  liveTuples(nowNs: bigint = monotonicNowNs()): CtTuple[] {
    const map = this.typed.map;
    const all = map.batchLookupRaw();
    if (!all) return this.list(nowNs).filter((c) => !c.expired);
    const ks = CtKey.size;
    const vs = map.valueBufferSize;
    const o = CtKey.offsets;
    const lifetime = CtEntry.offsets.lifetimeNs;
    const k = all.keys;
    const out: CtTuple[] = [];
    for (let i = 0; i < all.count; i++) {
      if (nowNs > all.values.readBigUInt64LE(i * vs + lifetime)) continue;
      const b = i * ks;
      const family = k[b + o.family] === 6 ? 6 : 4;
      const flags = k[b + o.flags] ?? 0;
      const addr = (at: number) =>
        family === 4
          ? `${k[at]}.${k[at + 1]}.${k[at + 2]}.${k[at + 3]}`
          : addrText(k.subarray(at, at + 16), 6);
      out.push({
        family,
        src: addr(b + o.saddr),
        dst: addr(b + o.daddr),
        sport: k.readUInt16BE(b + o.sport),
        dport: k.readUInt16BE(b + o.dport),
        proto: k[b + o.nexthdr] ?? 0,
        direction: directionOf(flags & ~CT_F_PROXY),
        ...(flags & CT_F_PROXY ? { fromProxy: true } : {}),
      });
    }
    return out;
  }

  get(t: CtTuple): CtRawEntry | undefined {
    return this.typed.lookup(rawKey(t));
  }

  /** Overwrites an entry (tests age entries by setting lifetimeNs). */
  set(t: CtTuple, e: CtRawEntry): void {
    this.typed.update(rawKey(t), e);
  }

  delete(t: CtTuple): boolean {
    return this.typed.delete(rawKey(t));
  }

  /** Deletes entries whose lifetime passed before `nowNs`; returns how many. */
  gc(nowNs: bigint = monotonicNowNs()): number {
    return this.collect(nowNs).length;
  }

  /**
   * As gc(), but returns the deleted connections with their final counters (the flow pipeline
   * reports them as closed: the datapath sends TRACE_CLOSE only for TCP closes it sees). An entry
   * that disappeared meanwhile (LRU eviction) is left out.
   */
  collect(nowNs: bigint = monotonicNowNs()): CtConnection[] {
    return this.#sweep(nowNs, () => true).connections;
  }

  /**
   * As collect(), for the agent's periodic GC: returns how many entries went, and decodes only
   * those whose close the datapath did not see (state other than closing: they still need a close
   * trace). A table of 100 000 connections is swept while the agent's event loop waits, so nothing
   * else is decoded: lifetimes and states are read in place, the expired keys go in batch deletes.
   */
  collectUnclosed(nowNs: bigint = monotonicNowNs()): { removed: number; unclosed: CtConnection[] } {
    const r = this.#sweep(nowNs, (state) => state !== CtState.closing);
    return { removed: r.removed, unclosed: r.connections };
  }

  #sweep(
    nowNs: bigint,
    decode: (state: number) => boolean,
  ): { removed: number; connections: CtConnection[] } {
    const map = this.typed.map;
    const all = map.batchLookupRaw();
    if (!all) {
      const expired = this.typed.lookupBatch().filter(([, v]) => nowNs > v.lifetimeNs);
      const gone = expired.filter(([k]) => this.typed.delete(k));
      return {
        removed: gone.length,
        connections: gone.filter(([, v]) => decode(v.state)).map(([k, v]) => connectionOf(k, v, nowNs)),
      };
    }
    const ks = CtKey.size;
    const vs = map.valueBufferSize;
    const { lifetimeNs, state } = CtEntry.offsets;
    const expired: number[] = [];
    for (let i = 0; i < all.count; i++)
      if (nowNs > all.values.readBigUInt64LE(i * vs + lifetimeNs)) expired.push(i);
    if (expired.length === 0) return { removed: 0, connections: [] };
    const keys = Buffer.alloc(ks * expired.length);
    expired.forEach((i, j) => all.keys.copy(keys, j * ks, i * ks, (i + 1) * ks));
    // An entry that disappeared meanwhile (LRU eviction) is left out.
    const missing = new Set<number>();
    if (map.batchDeleteRaw(keys, expired.length, (j) => missing.add(j)) === undefined)
      expired.forEach((i, j) => {
        if (!map.deleteRaw(all.keys.subarray(i * ks, (i + 1) * ks))) missing.add(j);
      });
    const gone = expired.filter((_, j) => !missing.has(j));
    return {
      removed: gone.length,
      connections: gone
        .filter((i) => decode(all.values.readUInt8(i * vs + state)))
        .map((i) => connectionOf(CtKey.decode(all.keys, i * ks), CtEntry.decode(all.values, i * vs), nowNs)),
    };
  }

  /** Deletes every entry; returns how many there were. */
  flush(): number {
    const keys = [...this.typed.keys()];
    return this.typed.deleteBatch(keys);
  }
}

function connectionOf(k: CtRawKey, v: CtRawEntry, nowNs: bigint): CtConnection {
  return {
    ...tupleOf(k),
    state: STATE_NAMES[v.state] ?? 'unknown',
    packetsFwd: v.packetsFwd,
    bytesFwd: v.bytesFwd,
    packetsRev: v.packetsRev,
    bytesRev: v.bytesRev,
    lifetimeNs: v.lifetimeNs,
    expired: nowNs > v.lifetimeNs,
    cookie: v.cookie,
    srcIdentity: v.srcIdentity,
    tcpFlagsFwd: v.tcpFlagsFwd,
    tcpFlagsRev: v.tcpFlagsRev,
    revNatIndex: v.revNatIndex,
    proxyPort: v.flags & CtEntryFlag.TO_PROXY ? v.proxyPort : 0,
  };
}

function tupleOf(k: CtRawKey): CtTuple {
  return {
    family: k.family === 6 ? 6 : 4,
    src: addrText(k.saddr, k.family),
    dst: addrText(k.daddr, k.family),
    sport: k.sport,
    dport: k.dport,
    proto: k.nexthdr,
    direction: directionOf(k.flags & ~CT_F_PROXY),
    ...(k.flags & CT_F_PROXY ? { fromProxy: true } : {}),
  };
}

function rawKey(t: CtTuple): CtRawKey {
  const loc = { object: 'conntrack tuple' };
  return {
    saddr: addrKey(t.src, { ...loc, field: 'src' }).bytes,
    daddr: addrKey(t.dst, { ...loc, field: 'dst' }).bytes,
    sport: t.sport,
    dport: t.dport,
    nexthdr: t.proto,
    flags: DIR[t.direction] | (t.fromProxy ? CT_F_PROXY : 0),
    family: t.family,
  };
}
