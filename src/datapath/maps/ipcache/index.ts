// weir_ipcache: prefix -> security identity (longest prefix wins; no match = world).
import { TypedMap, type BpfMap } from '../../../bpf/index.js';
import { addrText, parsePrefix } from '../../addr.js';
import { IPCACHE_STATIC_PREFIX, IpcacheKey, IpcacheValue } from './layout.js';

export interface IpcacheEntry {
  /** Canonical prefix, e.g. '10.0.1.0/24' or 'fd00::5/128'. */
  prefix: string;
  identity: number;
}

export class IpcacheMap {
  readonly typed: TypedMap<ReturnType<typeof IpcacheKey.decode>, ReturnType<typeof IpcacheValue.decode>>;

  constructor(map: BpfMap) {
    this.typed = new TypedMap(map, IpcacheKey, IpcacheValue);
  }

  /** Maps `prefix` (a CIDR or a bare address) to `identity`, replacing what was there. */
  upsert(prefix: string, identity: number): void {
    this.typed.update(key(prefix), { identity, flags: 0 });
  }

  /** True when the prefix was present. */
  delete(prefix: string): boolean {
    return this.typed.delete(key(prefix));
  }

  /** The identity stored for exactly this prefix (not a longest-prefix lookup). */
  get(prefix: string): number | undefined {
    return this.typed.lookup(key(prefix))?.identity;
  }

  list(): IpcacheEntry[] {
    return this.typed.lookupBatch().map(([k, v]) => ({
      prefix: `${addrText(k.addr, k.family)}/${k.prefixlen - IPCACHE_STATIC_PREFIX}`,
      identity: v.identity,
    }));
  }
}

function key(prefix: string) {
  const p = parsePrefix(prefix, { object: 'ipcache', field: 'prefix' });
  return { prefixlen: IPCACHE_STATIC_PREFIX + p.bits, family: p.family, addr: p.bytes };
}
