// After a policy change, tracked connections that the new policy no longer allows are removed from
// conntrack, so their next packet is judged as a new connection (and dropped). Connections that
// stay allowed are untouched. Without this, a flow admitted by an old policy would keep the fast
// path until its entry expires — and a reused UDP 5-tuple would inherit an old allow.
import type { CtTuple } from '../datapath/maps/ct/index.js';
import { lookupIpcache, type IpcacheEntry } from '../identity/cidr.js';
import { DIR_EGRESS, DIR_INGRESS, type PolicyMapEntry } from '../policy/entry.js';
import { lookup } from '../policy/lookup.js';

export interface EndpointEntries {
  /** The endpoint's policy-map entries; empty when it fails closed. */
  entries: readonly PolicyMapEntry[];
}

/** Entries by identity (0 = any), so one verdict scans only two short lists. */
function byIdentity(entries: readonly PolicyMapEntry[]): Map<number, PolicyMapEntry[]> {
  const m = new Map<number, PolicyMapEntry[]>();
  for (const e of entries) {
    const list = m.get(e.identity);
    if (list) list.push(e);
    else m.set(e.identity, [e]);
  }
  return m;
}

/**
 * The tracked connections whose admitting side (the endpoint whose policy created the entry) no
 * longer allows them. `endpointsByIP` maps every endpoint address to its entries.
 */
export function connectionsToRevoke(
  connections: readonly CtTuple[],
  endpointsByIP: ReadonlyMap<string, EndpointEntries>,
  ipcache: readonly IpcacheEntry[],
): CtTuple[] {
  // lookupIpcache indexes the ipcache on first use: nothing is built when nothing is tracked.
  const identityCache = new Map<string, number>();
  const identityOf = (ip: string) => {
    let id = identityCache.get(ip);
    if (id === undefined) {
      id = lookupIpcache(ipcache, ip)?.identity ?? 2; // no match: world
      identityCache.set(ip, id);
    }
    return id;
  };
  const indexes = new Map<EndpointEntries, Map<number, PolicyMapEntry[]>>();
  const revoke: CtTuple[] = [];
  for (const c of connections) {
    const egress = c.direction === 'egress';
    const ep = endpointsByIP.get(egress ? c.src : c.dst);
    if (!ep) continue; // not ours (or already gone): it ages out
    let index = indexes.get(ep);
    if (!index) indexes.set(ep, (index = byIdentity(ep.entries)));
    const peer = identityOf(egress ? c.dst : c.src);
    const candidates = [...(index.get(peer) ?? []), ...(peer === 0 ? [] : (index.get(0) ?? []))];
    const port = c.proto === 6 || c.proto === 17 || c.proto === 132 ? c.dport : 0;
    const verdict = lookup(candidates, peer, egress ? DIR_EGRESS : DIR_INGRESS, c.proto, port);
    if (verdict.verdict !== 'allow') revoke.push(c);
  }
  return revoke;
}
