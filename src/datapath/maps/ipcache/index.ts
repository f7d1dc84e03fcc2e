// weir_ipcache: prefix -> security identity (longest prefix wins; no match = world), and in tunnel
// mode the node the prefix lives on (bpf/lib/overlay.h).
import { isIPv4 } from 'node:net';
import { TypedMap, type BpfMap } from '../../../bpf/index.js';
import { WeirError } from '../../../shared/errors.js';
import { addrText, parsePrefix } from '../../addr.js';
import { IPCACHE_STATIC_PREFIX, IpcacheKey, IpcacheValue } from './layout.js';

/** The tunnelEndpoint the map stores for "none" (a local prefix, or not behind a tunnel). */
const NO_ENDPOINT = '0.0.0.0';

export interface IpcacheEntry {
  /** Canonical prefix, e.g. '10.0.1.0/24' or 'fd00::5/128'. */
  prefix: string;
  identity: number;
  /** Tunnel mode: the IPv4 underlay address of the node the prefix lives on; absent: none. */
  tunnelEndpoint?: string;
}

export interface IpcacheUpsertOptions {
  /**
   * The IPv4 underlay address of the node the prefix lives on (tunnel mode): pods' traffic to it
   * is encapsulated towards that node, its VNI the sender's identity. Absent: local (or native
   * routing), the node's routing decides.
   */
  tunnelEndpoint?: string;
}

export class IpcacheMap {
  readonly typed: TypedMap<ReturnType<typeof IpcacheKey.decode>, ReturnType<typeof IpcacheValue.decode>>;

  constructor(map: BpfMap) {
    this.typed = new TypedMap(map, IpcacheKey, IpcacheValue);
  }

  /** Maps `prefix` (a CIDR or a bare address) to `identity`, replacing what was there. */
  upsert(prefix: string, identity: number, opts: IpcacheUpsertOptions = {}): void {
    const endpoint = opts.tunnelEndpoint ?? NO_ENDPOINT;
    if (!isIPv4(endpoint))
      throw new WeirError('ERR_DATAPATH_ADDRESS', `tunnel endpoint '${endpoint}' is not an IPv4 address`, {
        location: { object: `ipcache ${prefix}`, field: 'tunnelEndpoint' },
      });
    this.typed.update(key(prefix), { identity, tunnelEndpoint: endpoint });
  }

  /** True when the prefix was present. */
  delete(prefix: string): boolean {
    return this.typed.delete(key(prefix));
  }

  /** The identity stored for exactly this prefix (not a longest-prefix lookup). */
  get(prefix: string): number | undefined {
    return this.typed.lookup(key(prefix))?.identity;
  }

  /** The entry stored for exactly this prefix, tunnel endpoint included. */
  entry(prefix: string): IpcacheEntry | undefined {
    const v = this.typed.lookup(key(prefix));
    return v && entryOf(parsePrefix(prefix).text, v);
  }

  list(): IpcacheEntry[] {
    return this.typed
      .lookupBatch()
      .map(([k, v]) => entryOf(`${addrText(k.addr, k.family)}/${k.prefixlen - IPCACHE_STATIC_PREFIX}`, v));
  }
}

function entryOf(prefix: string, v: ReturnType<typeof IpcacheValue.decode>): IpcacheEntry {
  return {
    prefix,
    identity: v.identity,
    ...(v.tunnelEndpoint === NO_ENDPOINT ? {} : { tunnelEndpoint: v.tunnelEndpoint }),
  };
}

function key(prefix: string) {
  const p = parsePrefix(prefix, { object: 'ipcache', field: 'prefix' });
  return { prefixlen: IPCACHE_STATIC_PREFIX + p.bits, family: p.family, addr: p.bytes };
}
