// BPF maps: BpfMap is the kernel object (an fd plus its shape); TypedMap puts key/value codecs
// on it. Ownership: BpfMap.create/fromPin/fromId return maps that own their fd (close() closes
// it); maps handed out by BpfObject.map() are borrowed and die with the object. Closing an fd
// does not delete a pinned map: only unpin() (or rm on bpffs) does.
import { closeSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { perCpuArray, perCpuSlot, type Codec } from './codec.js';
import { BpfError, ERR_BPF_CODEC, ERR_BPF_STATE, bpfErrorFrom, errnoName } from './errors.js';
import {
  BpfMapBatchOpts,
  BpfMapCreateOpts,
  BpfMapInfo,
  BpfObjGetOpts,
  cString,
  libbpf,
  stableBuffer,
} from './libbpf.js';

/** enum bpf_map_type (linux/bpf.h), the types weir uses. */
export const MapType = {
  hash: 1,
  array: 2,
  prog_array: 3,
  perf_event_array: 4,
  percpu_hash: 5,
  percpu_array: 6,
  lru_hash: 9,
  lru_percpu_hash: 10,
  lpm_trie: 11,
  array_of_maps: 12,
  hash_of_maps: 13,
  sk_storage: 24,
  ringbuf: 27,
} as const;
export type MapTypeName = keyof typeof MapType;

const BPF_F_NO_PREALLOC = 1;
/** bpf_obj_get file flag: the fd may only read the map. */
const BPF_F_RDONLY = 1 << 3;
const PERCPU_TYPES = new Set<number>([
  MapType.percpu_hash,
  MapType.percpu_array,
  MapType.lru_percpu_hash,
  21,
]);
const ARRAY_TYPES = new Set<number>([
  MapType.array,
  MapType.percpu_array,
  MapType.array_of_maps,
  MapType.prog_array,
]);
const UPDATE_FLAGS = { any: 0, noexist: 1, exist: 2 } as const;
export type UpdateFlag = keyof typeof UPDATE_FLAGS;

export interface MapCreateOptions {
  type: MapTypeName | number;
  /** At most 15 characters of [A-Za-z0-9_.]; the kernel shows it in bpftool. */
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  /** For array_of_maps/hash_of_maps: a map with the inner maps' shape (only its shape is used). */
  innerMap?: BpfMap;
}

interface MapShape {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

let possibleCpus: number | undefined;
/** Number of possible CPUs: per-CPU maps hold one value slot for each. */
export function numPossibleCpus(): number {
  if (possibleCpus === undefined) {
    const n = libbpf.num_possible_cpus();
    if (n <= 0) throw bpfErrorFrom(n, 'libbpf_num_possible_cpus');
    possibleCpus = n;
  }
  return possibleCpus;
}

export class BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  #fd: number;
  readonly #owned: boolean;
  #pinnedAt: string | undefined;

  /** Internal: use create/fromPin/fromId, or BpfObject.map(). */
  constructor(fd: number, shape: MapShape, owned: boolean) {
    this.#fd = fd;
    this.name = shape.name;
    this.type = shape.type;
    this.keySize = shape.keySize;
    this.valueSize = shape.valueSize;
    this.maxEntries = shape.maxEntries;
    this.flags = shape.flags;
    this.#owned = owned;
  }

  static create(opts: MapCreateOptions): BpfMap {
    const type = typeof opts.type === 'number' ? opts.type : MapType[opts.type];
    if (type === undefined)
      throw new BpfError(ERR_BPF_CODEC, `map '${opts.name}': unknown map type '${opts.type}'`);
    if (!/^[A-Za-z0-9_.]{0,15}$/.test(opts.name)) {
      throw new BpfError(ERR_BPF_CODEC, `map name '${opts.name}': at most 15 characters of [A-Za-z0-9_.]`);
    }
    let flags = opts.flags ?? 0;
    // The kernel refuses an LPM trie without this flag; there is no other valid choice.
    if (type === MapType.lpm_trie) flags |= BPF_F_NO_PREALLOC;
    const o = BpfMapCreateOpts.alloc();
    BpfMapCreateOpts.u32(o, 'map_flags', flags);
    if (opts.innerMap) BpfMapCreateOpts.u32(o, 'inner_map_fd', opts.innerMap.fd);
    const fd = libbpf.map_create(type, opts.name, opts.keySize, opts.valueSize, opts.maxEntries, o);
    if (fd < 0) throw bpfErrorFrom(fd, `bpf_map_create '${opts.name}'`, { location: { object: opts.name } });
    return new BpfMap(
      fd,
      {
        name: opts.name,
        type,
        keySize: opts.keySize,
        valueSize: opts.valueSize,
        maxEntries: opts.maxEntries,
        flags,
      },
      true,
    );
  }

  /**
   * Opens a pinned map; the returned map owns a new fd (the pin stays). `readOnly`: the fd allows
   * lookups only (BPF_F_RDONLY), for processes that must never write the map.
   */
  static fromPin(path: string, opts: { readOnly?: boolean } = {}): BpfMap {
    let fd: number;
    if (opts.readOnly) {
      const o = BpfObjGetOpts.alloc();
      BpfObjGetOpts.u32(o, 'file_flags', BPF_F_RDONLY);
      fd = libbpf.obj_get_opts(path, o);
    } else fd = libbpf.obj_get(path);
    if (fd < 0) throw bpfErrorFrom(fd, `bpf_obj_get ${path}`, { location: { file: path } });
    return BpfMap.#fromFd(fd, path);
  }

  /** Opens a map by kernel id (e.g. an inner map id read from a map-in-map). */
  static fromId(id: number): BpfMap {
    const fd = libbpf.map_get_fd_by_id(id);
    if (fd < 0) throw bpfErrorFrom(fd, `bpf_map_get_fd_by_id ${id}`);
    return BpfMap.#fromFd(fd, `map id ${id}`);
  }

  static #fromFd(fd: number, what: string): BpfMap {
    try {
      const info = mapInfo(fd, what);
      return new BpfMap(fd, info, true);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  get fd(): number {
    if (this.#fd < 0) throw new BpfError(ERR_BPF_STATE, `map '${this.name}' is closed`);
    return this.#fd;
  }

  /** The kernel's id for this map (stable while the map exists, shown by bpftool). */
  get id(): number {
    return mapInfo(this.fd, this.name).id;
  }

  get isPerCpu(): boolean {
    return PERCPU_TYPES.has(this.type);
  }

  get isArray(): boolean {
    return ARRAY_TYPES.has(this.type);
  }

  /** Bytes the kernel reads/writes per value: one 8-byte-aligned slot per CPU for per-CPU maps. */
  get valueBufferSize(): number {
    return this.isPerCpu ? perCpuSlot(this.valueSize) * numPossibleCpus() : this.valueSize;
  }

  /** Pins the map at `path` on bpffs, creating parent folders. */
  pin(path: string): void {
    mkdirSync(dirname(path), { recursive: true });
    const r = libbpf.obj_pin(this.fd, path);
    if (r < 0) throw bpfErrorFrom(r, `pin map '${this.name}' at ${path}`, { location: { file: path } });
    this.#pinnedAt = path;
  }

  /** Removes the pin made by pin() (or at `path`); ENOENT is fine. */
  unpin(path?: string): void {
    const p = path ?? this.#pinnedAt;
    if (!p) return;
    try {
      unlinkSync(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (p === this.#pinnedAt) this.#pinnedAt = undefined;
  }

  /** Closes an owned fd; for a map borrowed from a BpfObject this only marks it unusable. */
  close(): void {
    if (this.#fd >= 0 && this.#owned) closeSync(this.#fd);
    this.#fd = -1;
  }

  // ---- raw element operations on Buffers of exactly keySize / valueBufferSize bytes

  lookupRaw(key: Buffer): Buffer | undefined {
    const value = Buffer.alloc(this.valueBufferSize);
    const r = libbpf.map_lookup_elem(this.fd, key, value);
    if (r === 0) return value;
    if (errnoName(r) === 'ENOENT') return undefined;
    throw this.#err(r, 'lookup');
  }

  updateRaw(key: Buffer, value: Buffer, flag: UpdateFlag = 'any'): void {
    const r = libbpf.map_update_elem(this.fd, key, value, UPDATE_FLAGS[flag]);
    if (r < 0) throw this.#err(r, 'update');
  }

  deleteRaw(key: Buffer): boolean {
    const r = libbpf.map_delete_elem(this.fd, key);
    if (r === 0) return true;
    if (errnoName(r) === 'ENOENT') return false;
    throw this.#err(r, 'delete');
  }

  /**
   * Every key, collected before returning so that callers may delete while they walk. When a key
   * disappears under get_next_key, the kernel restarts from the first key: seen keys are skipped
   * and the walk is bounded, so concurrent deletes cannot make it loop.
   */
  rawKeys(): Buffer[] {
    const seen = new Set<string>();
    const keys: Buffer[] = [];
    let prev: Buffer | null = null;
    const bound = 4 * this.maxEntries + 16;
    for (let i = 0; i < bound; i++) {
      const next = Buffer.alloc(this.keySize);
      const r = libbpf.map_get_next_key(this.fd, prev, next);
      if (r < 0) {
        if (errnoName(r) === 'ENOENT') break;
        throw this.#err(r, 'get_next_key');
      }
      const hex = next.toString('hex');
      if (!seen.has(hex)) {
        seen.add(hex);
        keys.push(next);
      }
      prev = next;
    }
    return keys;
  }

  /** Internal: one map error, named. */
  #err(ret: number, op: string): BpfError {
    return bpfErrorFrom(ret, `map '${this.name}' ${op}`, {
      elementOp: true,
      location: { object: this.name },
    });
  }

  /** Internal: batch syscalls; undefined when the kernel has no batch support for this map. */
  batchLookupRaw(): { keys: Buffer; values: Buffer; count: number } | undefined {
    const ks = this.keySize;
    const vs = this.valueBufferSize;
    let chunk = Math.min(Math.max(this.maxEntries, 1), 1024);
    const keyParts: Buffer[] = [];
    const valueParts: Buffer[] = [];
    let total = 0;
    const token = stableBuffer(Math.max(ks, 8));
    const opts = BpfMapBatchOpts.alloc();
    let inBatch: Buffer | null = null;
    for (;;) {
      const keys = Buffer.alloc(ks * chunk);
      const values = Buffer.alloc(vs * chunk);
      const count: [number] = [chunk];
      const out = stableBuffer(token.length);
      const r = libbpf.map_lookup_batch(this.fd, inBatch, out, keys, values, count, opts);
      const name = r < 0 ? errnoName(r) : '';
      if (r < 0 && name === 'ENOSPC' && count[0] === 0) {
        // A hash bucket holds more elements than fit: ask again with room for more.
        chunk *= 2;
        continue;
      }
      if (r < 0 && name !== 'ENOENT') {
        if (total === 0 && (name === 'EINVAL' || name === 'ENOTSUPP' || name === 'EOPNOTSUPP'))
          return undefined;
        throw this.#err(r, 'lookup_batch');
      }
      keyParts.push(keys.subarray(0, ks * count[0]));
      valueParts.push(values.subarray(0, vs * count[0]));
      total += count[0];
      if (name === 'ENOENT') break;
      inBatch = out;
    }
    return { keys: Buffer.concat(keyParts), values: Buffer.concat(valueParts), count: total };
  }

  batchUpdateRaw(keys: Buffer, values: Buffer, count: number, flag: UpdateFlag): boolean {
    const opts = BpfMapBatchOpts.alloc();
    BpfMapBatchOpts.u64(opts, 'elem_flags', BigInt(UPDATE_FLAGS[flag]));
    const c: [number] = [count];
    const r = libbpf.map_update_batch(this.fd, keys, values, c, opts);
    if (r === 0) return true;
    const name = errnoName(r);
    // Nothing was written yet: the caller may fall back to single updates.
    if (c[0] === 0 && (name === 'EINVAL' || name === 'ENOTSUPP' || name === 'EOPNOTSUPP')) return false;
    throw this.#err(r, `update_batch (after ${c[0]} of ${count})`);
  }

  /**
   * Deletes keys in batches; returns how many existed, or undefined when unsupported. `missing`
   * hears the index of each key that did not exist.
   */
  batchDeleteRaw(keys: Buffer, count: number, missing?: (index: number) => void): number | undefined {
    const ks = this.keySize;
    let deleted = 0;
    for (let i = 0; i < count;) {
      const c: [number] = [count - i];
      const r = libbpf.map_delete_batch(this.fd, keys.subarray(i * ks), c, BpfMapBatchOpts.alloc());
      deleted += c[0];
      if (r === 0) break;
      const name = errnoName(r);
      if (i === 0 && c[0] === 0 && (name === 'EINVAL' || name === 'ENOTSUPP' || name === 'EOPNOTSUPP')) {
        return undefined;
      }
      // The kernel stops at the first missing key: skip it and go on.
      if (name !== 'ENOENT') throw this.#err(r, 'delete_batch');
      missing?.(i + c[0]);
      i += c[0] + 1;
    }
    return deleted;
  }
}

function mapInfo(fd: number, what: string): MapShape & { id: number } {
  const info = BpfMapInfo.zeroed();
  const len: [number] = [BpfMapInfo.size];
  const r = libbpf.obj_get_info_by_fd(fd, info, len);
  if (r < 0) throw bpfErrorFrom(r, `bpf_obj_get_info_by_fd (${what})`);
  return {
    id: BpfMapInfo.u32(info, 'id'),
    name: cString(info, BpfMapInfo.off('name'), 16),
    type: BpfMapInfo.u32(info, 'type'),
    keySize: BpfMapInfo.u32(info, 'key_size'),
    valueSize: BpfMapInfo.u32(info, 'value_size'),
    maxEntries: BpfMapInfo.u32(info, 'max_entries'),
    flags: BpfMapInfo.u32(info, 'map_flags'),
  };
}

/**
 * A BpfMap with codecs. Key and value codec sizes are checked against the map when the TypedMap
 * is built. For per-CPU maps wrap the value codec in perCpu(): values are then arrays with one
 * entry per possible CPU. For map-in-map outer maps use u32(): update() takes the inner map's fd,
 * lookup() returns the inner map's id (open it with BpfMap.fromId).
 */
export class TypedMap<K, V> {
  constructor(
    readonly map: BpfMap,
    readonly key: Codec<K>,
    readonly value: Codec<V>,
  ) {
    if (key.size !== map.keySize) {
      throw new BpfError(
        ERR_BPF_CODEC,
        `map '${map.name}': key codec is ${key.size} bytes, map key is ${map.keySize}`,
        {
          location: { object: map.name, field: 'key' },
        },
      );
    }
    if (value.size !== map.valueBufferSize) {
      const hint = map.isPerCpu ? ' (per-CPU map: wrap the value codec in perCpu())' : '';
      throw new BpfError(
        ERR_BPF_CODEC,
        `map '${map.name}': value codec is ${value.size} bytes, map value is ${map.valueBufferSize}${hint}`,
        { location: { object: map.name, field: 'value' } },
      );
    }
  }

  lookup(k: K): V | undefined {
    const raw = this.map.lookupRaw(this.#k(k));
    return raw === undefined ? undefined : this.value.decode(raw, 0);
  }

  /** 'noexist' fails with ERR_BPF_KEY_EXIST, 'exist' with ERR_BPF_KEY_NOT_EXIST. */
  update(k: K, v: V, flag: UpdateFlag = 'any'): void {
    this.map.updateRaw(this.#k(k), this.#v(v), flag);
  }

  /** True when the key existed. */
  delete(k: K): boolean {
    return this.map.deleteRaw(this.#k(k));
  }

  *keys(): Generator<K> {
    for (const kb of this.map.rawKeys()) yield this.key.decode(kb, 0);
  }

  /** Entries deleted while iterating are skipped. */
  *entries(): Generator<[K, V]> {
    for (const kb of this.map.rawKeys()) {
      const vb = this.map.lookupRaw(kb);
      if (vb !== undefined) yield [this.key.decode(kb, 0), this.value.decode(vb, 0)];
    }
  }

  /** All entries, with BPF_MAP_LOOKUP_BATCH where the kernel supports it for this map type. */
  lookupBatch(): [K, V][] {
    const res = this.map.batchLookupRaw();
    if (!res) return [...this.entries()];
    const out: [K, V][] = [];
    for (let i = 0; i < res.count; i++) {
      out.push([
        this.key.decode(res.keys, i * this.key.size),
        this.value.decode(res.values, i * this.value.size),
      ]);
    }
    return out;
  }

  updateBatch(entries: Iterable<[K, V]>, flag: UpdateFlag = 'any'): void {
    const list = [...entries];
    if (list.length === 0) return;
    const keys = Buffer.alloc(this.key.size * list.length);
    const values = Buffer.alloc(this.value.size * list.length);
    list.forEach(([k, v], i) => {
      this.key.encode(k, keys, i * this.key.size);
      this.value.encode(v, values, i * this.value.size);
    });
    if (this.map.batchUpdateRaw(keys, values, list.length, flag)) return;
    for (const [k, v] of list) this.update(k, v, flag);
  }

  /** Returns how many of the keys existed. */
  deleteBatch(keys: Iterable<K>): number {
    const list = [...keys];
    if (list.length === 0) return 0;
    const buf = Buffer.alloc(this.key.size * list.length);
    list.forEach((k, i) => this.key.encode(k, buf, i * this.key.size));
    const n = this.map.batchDeleteRaw(buf, list.length);
    if (n !== undefined) return n;
    return list.filter((k) => this.delete(k)).length;
  }

  /** Empties the map; array maps (whose elements cannot be deleted) are zeroed instead. */
  clear(): void {
    const keys = this.map.rawKeys();
    if (this.map.isArray) {
      const zero = Buffer.alloc(this.map.valueBufferSize);
      for (const k of keys) this.map.updateRaw(k, zero);
      return;
    }
    for (const k of keys) this.map.deleteRaw(k);
  }

  #k(k: K): Buffer {
    const buf = Buffer.alloc(this.key.size);
    this.key.encode(k, buf, 0);
    return buf;
  }

  #v(v: V): Buffer {
    const buf = Buffer.alloc(this.value.size);
    this.value.encode(v, buf, 0);
    return buf;
  }
}

/** The value codec of a per-CPU map: an array with one `of` per possible CPU. */
export function perCpu<T>(of: Codec<T>): Codec<T[]> {
  return perCpuArray(of, numPossibleCpus());
}
