// The service load-balancing maps (bpf/lib/lb.h), typed. The control plane (src/service) writes
// services and backends here; bpf/sock.c reads them at connect/sendmsg.
//
// Write order keeps the datapath consistent at every instant: a service's backend slots are
// written before its slot 0 (the metadata that says how many there are), slots beyond a shrunk
// count are deleted after it, and a deleted service loses slot 0 first. A backend must exist
// before a service names it (ERR_LB_BACKEND_UNKNOWN); the datapath refuses connections to a
// frontend whose chosen backend is missing, so deleting one still named is safe, not silent.
import { BpfMap, TypedMap, u16, u32 } from '../../../bpf/index.js';
import { WeirError, type ErrorCode } from '../../../shared/errors.js';
import { addrKey, addrText, type Family } from '../../addr.js';
import {
  BackendState,
  LB_MAGLEV_LUT_MAX,
  LB_SCOPE_EXT,
  LB_SCOPE_INT,
  LbAffinityKey,
  LbAffinityValue,
  LbBackend,
  LbKey,
  LbRevnat,
  LbService,
  type BackendStateName,
} from './layout.js';

export type Proto = 'tcp' | 'udp';
const PROTO_NUM: Record<Proto, number> = { tcp: 6, udp: 17 };
const protoName = (n: number): Proto => (n === 17 ? 'udp' : 'tcp');

export interface Frontend {
  address: string;
  port: number;
  proto: Proto;
  /** 'ext' (default; what socket LB looks up) or 'int' (traffic policy Local's second set). */
  scope?: 'ext' | 'int';
}

export interface ServiceMeta {
  /** 1..65535: the frontend's id in weir_lb_revnat, weir_lb_maglev and affinity entries. */
  revNatIndex: number;
  /** SVC_F_* (ServiceFlags). */
  flags?: number;
  /** sessionAffinity ClientIP timeout in seconds (slot 0 backend_id; k8s default 10800). */
  affinityTimeout?: number;
  /** How many leading backendIds are ACTIVE (default: all); the rest are terminating. */
  active?: number;
}

export interface Backend {
  address: string;
  port: number;
  proto: Proto;
  state?: BackendStateName;
}

export interface ServiceEntry {
  frontend: Required<Frontend>;
  meta: Required<ServiceMeta>;
  /** Slots 1..count in order: the first meta.active are ACTIVE. */
  backendIds: number[];
}

export interface AffinityEntry {
  /** The client's network namespace cookie (socket LB); 0 at tc. */
  clientCookie: bigint;
  /** The client's address (tc: NodePort, service traffic no socket hook translated); '' at the socket. */
  clientAddr: string;
  revNatIndex: number;
  family: Family;
  backendId: number;
  lastUsedNs: bigint;
}

type Key = ReturnType<typeof LbKey.decode>;

const fail = (code: ErrorCode, message: string, object: string, field: string) =>
  new WeirError(code, message, { location: { object, field } });

function checkInt(v: number, min: number, max: number, object: string, field: string): void {
  if (!Number.isInteger(v) || v < min || v > max)
    throw fail('ERR_LB_FIELD', `${field} ${v} is not an integer within ${min}..${max}`, object, field);
}

function frontendKey(f: Frontend, slot: number): Key {
  const object = `frontend ${f.address}:${f.port}/${f.proto}`;
  const { family, bytes } = addrKey(f.address, { object, field: 'address' });
  checkInt(f.port, 1, 0xffff, object, 'port');
  if (!(f.proto in PROTO_NUM))
    throw fail('ERR_LB_FIELD', `proto '${String(f.proto)}' is not tcp or udp`, object, 'proto');
  const scope = f.scope ?? 'ext';
  if (scope !== 'ext' && scope !== 'int')
    throw fail('ERR_LB_FIELD', `scope '${String(scope)}' is not ext or int`, object, 'scope');
  return {
    addr: bytes,
    dport: f.port,
    backendSlot: slot,
    proto: PROTO_NUM[f.proto],
    family,
    scope: scope === 'ext' ? LB_SCOPE_EXT : LB_SCOPE_INT,
  };
}

export class LbMaps {
  readonly services: TypedMap<Key, ReturnType<typeof LbService.decode>>;
  readonly backends: TypedMap<number, ReturnType<typeof LbBackend.decode>>;
  readonly revnat: TypedMap<number, ReturnType<typeof LbRevnat.decode>>;
  readonly affinity: TypedMap<
    ReturnType<typeof LbAffinityKey.decode>,
    ReturnType<typeof LbAffinityValue.decode>
  >;
  readonly #maglev: TypedMap<number, number>;

  /**
   * @param maglevTableSize M, the entries of every Maglev table (the object's weir_lb_maglev_size)
   */
  constructor(
    maps: {
      services: BpfMap;
      backends: BpfMap;
      revnat: BpfMap;
      maglev: BpfMap;
      affinity: BpfMap;
    },
    readonly maglevTableSize: number,
  ) {
    this.services = new TypedMap(maps.services, LbKey, LbService);
    this.backends = new TypedMap(maps.backends, u32(), LbBackend);
    this.revnat = new TypedMap(maps.revnat, u16(), LbRevnat);
    this.affinity = new TypedMap(maps.affinity, LbAffinityKey, LbAffinityValue);
    this.#maglev = new TypedMap(maps.maglev, u16(), u32());
  }

  /** Adds or replaces backend `id` (1..2^32-1). */
  upsertBackend(id: number, b: Backend): void {
    const object = `backend ${id}`;
    checkInt(id, 1, 0xffffffff, object, 'id');
    const { family, bytes } = addrKey(b.address, { object, field: 'address' });
    checkInt(b.port, 1, 0xffff, object, 'port');
    if (!(b.proto in PROTO_NUM))
      throw fail('ERR_LB_FIELD', `proto '${String(b.proto)}' is not tcp or udp`, object, 'proto');
    const state = BackendState[b.state ?? 'active'];
    if (state === undefined)
      throw fail('ERR_LB_FIELD', `state '${String(b.state)}' is unknown`, object, 'state');
    this.backends.update(id, { addr: bytes, port: b.port, proto: PROTO_NUM[b.proto], family, state });
  }

  deleteBackend(id: number): boolean {
    return this.backends.delete(id);
  }

  getBackend(id: number): (Required<Backend> & { family: Family }) | undefined {
    const b = this.backends.lookup(id);
    return b && decodeBackend(b);
  }

  listBackends(): { id: number; backend: Required<Backend> & { family: Family } }[] {
    return this.backends
      .lookupBatch()
      .map(([id, b]) => ({ id, backend: decodeBackend(b) }))
      .sort((a, b) => a.id - b.id);
  }

  /**
   * Adds or replaces the service at `frontend`: backendIds fill slots 1..n (the first meta.active
   * ACTIVE, default all), and weir_lb_revnat[revNatIndex] names the frontend. Every id must be a
   * known backend of the frontend's family; nothing is written when one is not.
   */
  upsertService(frontend: Frontend, meta: ServiceMeta, backendIds: readonly number[]): void {
    const object = `service ${frontend.address}:${frontend.port}/${frontend.proto}`;
    const key0 = frontendKey(frontend, 0);
    checkInt(meta.revNatIndex, 1, 0xffff, object, 'revNatIndex');
    checkInt(backendIds.length, 0, 0xffff, object, 'backendIds.length');
    const active = meta.active ?? backendIds.length;
    checkInt(active, 0, backendIds.length, object, 'active');
    checkInt(meta.flags ?? 0, 0, 0xff, object, 'flags');
    checkInt(meta.affinityTimeout ?? 0, 0, 0xffffffff, object, 'affinityTimeout');
    backendIds.forEach((id, i) => {
      const b = this.backends.lookup(id);
      if (!b)
        throw fail('ERR_LB_BACKEND_UNKNOWN', `backend ${id} does not exist`, object, `backendIds[${i}]`);
      if (b.family !== key0.family)
        throw fail(
          'ERR_LB_BACKEND_FAMILY',
          `backend ${id} is IPv${b.family}, the frontend IPv${key0.family}`,
          object,
          `backendIds[${i}]`,
        );
    });

    const old = this.services.lookup(key0);
    backendIds.forEach((id, i) =>
      this.services.update(
        { ...key0, backendSlot: i + 1 },
        { backendId: id, count: 0, revNatIndex: 0, active: 0, flags: 0 },
      ),
    );
    this.revnat.update(meta.revNatIndex, {
      addr: key0.addr,
      port: frontend.port,
      family: key0.family,
      revNatIndex: meta.revNatIndex,
    });
    this.services.update(key0, {
      backendId: meta.affinityTimeout ?? 0,
      count: backendIds.length,
      revNatIndex: meta.revNatIndex,
      active,
      flags: meta.flags ?? 0,
    });
    for (let slot = backendIds.length + 1; slot <= (old?.count ?? 0); slot++)
      this.services.delete({ ...key0, backendSlot: slot });
    if (old && old.revNatIndex !== meta.revNatIndex) this.revnat.delete(old.revNatIndex);
  }

  /**
   * Removes the service (slot 0 first, so lookups stop at once); the rev-NAT entry goes with the
   * 'ext' scope (an 'int' scope shares its revNatIndex).
   */
  deleteService(frontend: Frontend): boolean {
    const key0 = frontendKey(frontend, 0);
    const old = this.services.lookup(key0);
    if (!old) return false;
    this.services.delete(key0);
    for (let slot = 1; slot <= old.count; slot++) this.services.delete({ ...key0, backendSlot: slot });
    if (key0.scope === LB_SCOPE_EXT) this.revnat.delete(old.revNatIndex);
    return true;
  }

  getService(frontend: Frontend): ServiceEntry | undefined {
    const key0 = frontendKey(frontend, 0);
    const meta = this.services.lookup(key0);
    if (!meta) return undefined;
    const ids: number[] = [];
    for (let slot = 1; slot <= meta.count; slot++)
      ids.push(this.services.lookup({ ...key0, backendSlot: slot })?.backendId ?? 0);
    return serviceEntry(key0, meta, ids);
  }

  listServices(): ServiceEntry[] {
    const rows = this.services.lookupBatch();
    const id = (k: Key) => `${k.addr.toString('hex')}/${k.dport}/${k.proto}/${k.family}/${k.scope}`;
    const slots = new Map<string, Map<number, number>>();
    for (const [k, v] of rows) {
      if (k.backendSlot === 0) continue;
      const m = slots.get(id(k)) ?? new Map<number, number>();
      m.set(k.backendSlot, v.backendId);
      slots.set(id(k), m);
    }
    return rows
      .filter(([k]) => k.backendSlot === 0)
      .map(([k, meta]) => {
        const m = slots.get(id(k));
        const ids = Array.from({ length: meta.count }, (_, i) => m?.get(i + 1) ?? 0);
        return serviceEntry(k, meta, ids);
      })
      .sort((a, b) => a.meta.revNatIndex - b.meta.revNatIndex);
  }

  /**
   * Installs the Maglev table of `revNatIndex`: exactly maglevTableSize backend ids (computed over
   * ACTIVE backends only). The inner map is replaced in one step, so lookups never see half a table.
   */
  setMaglevTable(revNatIndex: number, ids: readonly number[]): void {
    const object = `maglev table ${revNatIndex}`;
    checkInt(revNatIndex, 1, 0xffff, object, 'revNatIndex');
    if (ids.length !== this.maglevTableSize)
      throw fail(
        'ERR_LB_MAGLEV_SIZE',
        `${ids.length} entries, the table size is ${this.maglevTableSize}`,
        object,
        'ids',
      );
    const value = Buffer.alloc(4 * LB_MAGLEV_LUT_MAX);
    ids.forEach((id, i) => {
      checkInt(id, 1, 0xffffffff, object, `ids[${i}]`);
      value.writeUInt32LE(id, 4 * i);
    });
    const inner = BpfMap.create({
      type: 'array',
      name: `weir_mgl_${revNatIndex}`,
      keySize: 4,
      valueSize: value.length,
      maxEntries: 1,
    });
    try {
      inner.updateRaw(Buffer.alloc(4), value);
      this.#maglev.update(revNatIndex, inner.fd);
    } finally {
      // weir_lb_maglev holds the inner map now.
      inner.close();
    }
  }

  /** The Maglev table of `revNatIndex` (maglevTableSize ids), if one is installed. */
  getMaglevTable(revNatIndex: number): number[] | undefined {
    const id = this.#maglev.lookup(revNatIndex);
    if (id === undefined) return undefined;
    const inner = BpfMap.fromId(id);
    try {
      const v = inner.lookupRaw(Buffer.alloc(4));
      if (!v) return undefined;
      return Array.from({ length: this.maglevTableSize }, (_, i) => v.readUInt32LE(4 * i));
    } finally {
      inner.close();
    }
  }

  deleteMaglevTable(revNatIndex: number): boolean {
    return this.#maglev.delete(revNatIndex);
  }

  /** sessionAffinity entries remembered by the datapath (socket LB: per client netns). */
  listAffinity(): AffinityEntry[] {
    return this.affinity.lookupBatch().map(([k, v]) => ({
      clientCookie: k.clientCookie,
      clientAddr: k.clientAddr.every((b) => b === 0) ? '' : addrText(k.clientAddr, k.family),
      revNatIndex: k.revNatIndex,
      family: k.family as Family,
      backendId: v.backendId,
      lastUsedNs: v.lastUsedNs,
    }));
  }
}

function decodeBackend(b: ReturnType<typeof LbBackend.decode>): Required<Backend> & { family: Family } {
  const state = (Object.keys(BackendState) as BackendStateName[]).find((s) => BackendState[s] === b.state);
  return {
    address: addrText(b.addr, b.family),
    port: b.port,
    proto: protoName(b.proto),
    family: b.family as Family,
    state: state ?? 'maintenance',
  };
}

function serviceEntry(k: Key, meta: ReturnType<typeof LbService.decode>, ids: number[]): ServiceEntry {
  return {
    frontend: {
      address: addrText(k.addr, k.family),
      port: k.dport,
      proto: protoName(k.proto),
      scope: k.scope === LB_SCOPE_INT ? 'int' : 'ext',
    },
    meta: {
      revNatIndex: meta.revNatIndex,
      flags: meta.flags,
      affinityTimeout: meta.backendId,
      active: meta.active,
    },
    backendIds: ids,
  };
}
