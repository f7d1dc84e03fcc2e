// Every identity the policy can name in one computation (reserved, pod, CIDR), with the
// selector -> identity-set index the engine resolves peers through. Selectors are matched
// once per distinct selector, not once per endpoint.
import { parsePrefix, prefixContains, type Prefix } from '../identity/cidr.js';
import { LabelIndex, parseLabel } from '../identity/labels.js';
import {
  IDENTITY_HOST,
  IDENTITY_WORLD,
  IDENTITY_WORLD_IPV4,
  IDENTITY_WORLD_IPV6,
  reservedIdentities,
  reservedLabels,
} from '../identity/reserved.js';
import { matchesSelector, selectorKey } from './api/selector.js';
import type { CIDRMatch, Entity, LabelSelector } from './api/types.js';

export interface NamedPort {
  name: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

export interface UniverseIdentity {
  id: number;
  kind: 'reserved' | 'pod' | 'cidr';
  labels: string[];
  index: LabelIndex;
  /** CIDR identities: their prefix. */
  prefix?: Prefix;
  /** Pod identities: every pod's IPs and named ports. */
  pods: { ips: Prefix[]; namedPorts: NamedPort[] }[];
}

/** A set of identities; 'any' is the wildcard (policy key identity 0). */
export type PeerSet = 'any' | readonly number[];

export class Universe {
  readonly identities = new Map<number, UniverseIdentity>();
  private readonly selectorCache = new Map<string, number[]>();
  private readonly cidrCache = new Map<string, number[]>();

  constructor(readonly nodeIPs: Prefix[]) {
    for (const id of reservedIdentities.keys()) {
      const labels = reservedLabels(id).sort();
      this.identities.set(id, { id, kind: 'reserved', labels, index: index(labels), pods: [] });
    }
  }

  addPod(id: number, labels: string[], ips: Prefix[], namedPorts: NamedPort[]): void {
    let ident = this.identities.get(id);
    if (!ident) {
      ident = { id, kind: 'pod', labels, index: index(labels), pods: [] };
      this.identities.set(id, ident);
    }
    ident.pods.push({ ips, namedPorts });
  }

  addCIDR(id: number, labels: string[], prefix: Prefix): void {
    if (!this.identities.has(id))
      this.identities.set(id, { id, kind: 'cidr', labels, index: index(labels), prefix, pods: [] });
  }

  podIdentities(): UniverseIdentity[] {
    return [...this.identities.values()].filter((i) => i.kind === 'pod');
  }

  /** Identities whose labels match the selector (pods, reserved and CIDR identities alike). */
  select(sel: LabelSelector): number[] {
    const key = selectorKey(sel);
    let hit = this.selectorCache.get(key);
    if (!hit) {
      hit = [...this.identities.values()].filter((i) => matchesSelector(sel, i.index)).map((i) => i.id);
      this.selectorCache.set(key, hit);
    }
    return hit;
  }

  entity(e: Entity): PeerSet {
    const byLabel = (name: string) =>
      this.select({ requirements: [{ source: 'reserved', key: name, operator: 'Exists', values: [] }] });
    const cidrs = (family?: 4 | 6) =>
      [...this.identities.values()]
        .filter((i) => i.kind === 'cidr' && (!family || i.prefix?.family === family))
        .map((i) => i.id);
    switch (e) {
      case 'all':
        return 'any';
      case 'none':
        return [];
      case 'world':
        return [IDENTITY_WORLD, IDENTITY_WORLD_IPV4, IDENTITY_WORLD_IPV6, ...cidrs()];
      // Single-stack collapses the family worlds into reserved:world (facts 1.6).
      case 'world-ipv4':
        return [IDENTITY_WORLD, IDENTITY_WORLD_IPV4, ...cidrs(4)];
      case 'world-ipv6':
        return [IDENTITY_WORLD, IDENTITY_WORLD_IPV6, ...cidrs(6)];
      case 'cluster':
        return [
          ...[...reservedIdentities.keys()].filter(
            (id) => ![IDENTITY_WORLD, IDENTITY_WORLD_IPV4, IDENTITY_WORLD_IPV6].includes(id),
          ),
          ...this.podIdentities().map((i) => i.id),
        ];
      default:
        return byLabel(e);
    }
  }

  /**
   * Identities a Cilium CIDR rule selects: CIDR identities inside cidr and outside every except,
   * plus reserved world for a /0. Never pods or the host (their /32s win in the ipcache).
   */
  cidr(m: CIDRMatch): number[] {
    const key = `${m.cidr} - ${m.except.join(',')}`;
    let hit = this.cidrCache.get(key);
    if (!hit) {
      const outer = parsePrefix(m.cidr, { allowBareIP: true });
      const excepts = m.except.flatMap((e) => parsePrefix(e, { allowBareIP: true }) ?? []);
      hit = [];
      if (outer) {
        if (outer.len === 0)
          hit.push(IDENTITY_WORLD, outer.family === 4 ? IDENTITY_WORLD_IPV4 : IDENTITY_WORLD_IPV6);
        for (const i of this.identities.values())
          if (
            i.prefix &&
            prefixContains(outer, i.prefix) &&
            !excepts.some((e) => prefixContains(e, i.prefix as Prefix))
          )
            hit.push(i.id);
      }
      this.cidrCache.set(key, hit);
    }
    return hit;
  }

  /**
   * A NetworkPolicy ipBlock matches addresses, pod IPs included (after Service DNAT): the CIDR
   * identities as above, plus every pod identity with an IP in cidr - except, plus the host if a
   * node IP is. Pods sharing an identity share the verdict (policy keys are identities).
   */
  ipBlock(m: CIDRMatch): number[] {
    const outer = parsePrefix(m.cidr);
    const excepts = m.except.flatMap((e) => parsePrefix(e) ?? []);
    const inBlock = (ip: Prefix) =>
      !!outer && prefixContains(outer, ip) && !excepts.some((e) => prefixContains(e, ip));
    const ids = new Set(this.cidr(m));
    for (const i of this.podIdentities()) if (i.pods.some((p) => p.ips.some(inBlock))) ids.add(i.id);
    if (this.nodeIPs.some(inBlock)) ids.add(IDENTITY_HOST);
    return [...ids];
  }
}

function index(labels: string[]): LabelIndex {
  return new LabelIndex(labels.map((l) => parseLabel(l)));
}
