// Every identity the policy can name in one computation (reserved, pod, CIDR), with the
// selector -> identity-set index the engine resolves peers through. Selectors are matched
// once per distinct selector, not once per endpoint.
import { nameMatches } from './l7/dns-match.js';
import type { DnsRule } from './l7/types.js';
import {
  comparePrefix,
  lastAddress,
  parsePrefix,
  prefixContains,
  PrefixTable,
  type Prefix,
} from '../identity/cidr.js';
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

const CIDR_LABEL_PREFIX = 'cidr:';
const CIDR_WORLD_LABEL = 'reserved:world';

/** A set of identities; 'any' is the wildcard (policy key identity 0). */
export type PeerSet = 'any' | readonly number[];

/**
 * Identities indexed for selectors. CIDR identities the engine makes carry exactly the labels
 * cidr:<prefix> and reserved:world; they are indexed by prefix alone, since building a label
 * index over thousands of them would cost more than the policy computation itself.
 */
interface SelectorIndex {
  /** Other identities by parsed label: "source key=value", "* key=value" (any source). */
  byValue: Map<string, UniverseIdentity[]>;
  /** ... and by "source key", "* key". */
  byKey: Map<string, UniverseIdentity[]>;
  others: UniverseIdentity[];
  /** Plain CIDR identities, and by the key of their cidr: label. */
  cidrs: UniverseIdentity[];
  cidrByKey: Map<string, UniverseIdentity>;
}

interface CIDRIndex {
  /** Sorted by prefix, so those inside a CIDR are one contiguous run. */
  sorted: UniverseIdentity[];
  /** Host prefixes by address, per family: a /32 rule finds its identity in one probe. */
  hosts: { 4: Map<bigint, UniverseIdentity>; 6: Map<bigint, UniverseIdentity> };
}

export class Universe {
  readonly identities = new Map<number, UniverseIdentity>();
  private readonly selectorCache = new Map<string, number[]>();
  private readonly cidrCache = new Map<string, number[]>();
  private readonly prefixCache = new Map<string, Prefix | undefined>();
  private cidrIndex: CIDRIndex | undefined;
  private selectorIndex: SelectorIndex | undefined;
  private pods: UniverseIdentity[] | undefined;

  constructor(readonly nodeIPs: Prefix[]) {
    for (const id of reservedIdentities.keys())
      this.identities.set(id, makeIdentity(id, 'reserved', reservedLabels(id).sort()));
  }

  addPod(id: number, labels: string[], ips: Prefix[], namedPorts: NamedPort[]): void {
    let ident = this.identities.get(id);
    if (!ident) {
      ident = makeIdentity(id, 'pod', labels);
      this.identities.set(id, ident);
      this.changed();
    }
    ident.pods.push({ ips, namedPorts });
  }

  addCIDR(id: number, labels: string[], prefix: Prefix): void {
    if (this.identities.has(id)) return;
    this.identities.set(id, makeIdentity(id, 'cidr', labels, prefix));
    this.changed();
  }

  private changed(): void {
    this.cidrIndex = undefined;
    this.selectorIndex = undefined;
    this.pods = undefined;
    this.selectorCache.clear();
    this.cidrCache.clear();
  }

  /** A CIDR string parsed once per computation (policies repeat them, rules scan them). */
  prefix(s: string): Prefix | undefined {
    if (this.prefixCache.has(s)) return this.prefixCache.get(s);
    const p = parsePrefix(s, { allowBareIP: true });
    this.prefixCache.set(s, p);
    return p;
  }

  private cidrs(): CIDRIndex {
    if (!this.cidrIndex) {
      const sorted = [...this.identities.values()]
        .filter((i) => i.prefix)
        .sort((a, b) => comparePrefix(a.prefix as Prefix, b.prefix as Prefix));
      const hosts = { 4: new Map<bigint, UniverseIdentity>(), 6: new Map<bigint, UniverseIdentity>() };
      for (const i of sorted) {
        const p = i.prefix as Prefix;
        if (p.len === (p.family === 4 ? 32 : 128)) hosts[p.family].set(p.addr, i);
      }
      this.cidrIndex = { sorted, hosts };
    }
    return this.cidrIndex;
  }

  /** CIDR identities whose prefix lies inside `outer`. */
  private cidrsInside(outer: Prefix): UniverseIdentity[] {
    const { sorted, hosts } = this.cidrs();
    if (outer.len === (outer.family === 4 ? 32 : 128)) {
      const i = hosts[outer.family].get(outer.addr);
      return i ? [i] : [];
    }
    // Binary search for the first prefix at or after outer's address, then the run inside it.
    const start = { family: outer.family, addr: outer.addr, len: 0 };
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (comparePrefix((sorted[mid] as UniverseIdentity).prefix as Prefix, start) < 0) lo = mid + 1;
      else hi = mid;
    }
    const last = lastAddress(outer);
    const out: UniverseIdentity[] = [];
    for (let i = lo; i < sorted.length; i++) {
      const p = (sorted[i] as UniverseIdentity).prefix as Prefix;
      if (p.family !== outer.family || p.addr > last) break;
      if (prefixContains(outer, p)) out.push(sorted[i] as UniverseIdentity);
    }
    return out;
  }

  podIdentities(): UniverseIdentity[] {
    this.pods ??= [...this.identities.values()].filter((i) => i.kind === 'pod');
    return this.pods;
  }

  /** Identities whose labels match the selector (pods, reserved and CIDR identities alike). */
  select(sel: LabelSelector): number[] {
    const key = selectorKey(sel);
    let hit = this.selectorCache.get(key);
    if (!hit) {
      hit = this.candidates(sel)
        .filter((i) => matchesSelector(sel, i.index))
        .map((i) => i.id)
        .sort((a, b) => a - b);
      this.selectorCache.set(key, hit);
    }
    return hit;
  }

  private index(): SelectorIndex {
    if (this.selectorIndex) return this.selectorIndex;
    const idx: SelectorIndex = {
      byValue: new Map(),
      byKey: new Map(),
      others: [],
      cidrs: [],
      cidrByKey: new Map(),
    };
    const put = (m: Map<string, UniverseIdentity[]>, k: string, i: UniverseIdentity) => {
      const list = m.get(k);
      if (!list) m.set(k, [i]);
      else if (list[list.length - 1] !== i) list.push(i);
    };
    for (const i of this.identities.values()) {
      const [cidr, world] = i.labels;
      if (
        i.kind === 'cidr' &&
        i.labels.length === 2 &&
        world === CIDR_WORLD_LABEL &&
        cidr?.startsWith(CIDR_LABEL_PREFIX) &&
        !cidr.includes('=')
      ) {
        idx.cidrs.push(i);
        idx.cidrByKey.set(cidr.slice(CIDR_LABEL_PREFIX.length), i);
        continue;
      }
      idx.others.push(i);
      const keys = indexKeys(i.labels);
      for (const k of keys.byValue) put(idx.byValue, k, i);
      for (const k of keys.byKey) put(idx.byKey, k, i);
    }
    this.selectorIndex = idx;
    return idx;
  }

  /**
   * Identities that can match (a superset; matchesSelector decides). Other identities: those
   * carrying the value of an In requirement or the key of an Exists one (the shortest such list),
   * else all. Plain CIDR identities: the one a requirement on its cidr: key names; none when a
   * requirement needs a label they lack; else all.
   */
  private candidates(sel: LabelSelector): UniverseIdentity[] {
    const idx = this.index();
    const src = (s: string) => (s === 'any' ? '*' : s);
    let others: UniverseIdentity[] = idx.others;
    let cidrs: UniverseIdentity[] = idx.cidrs;
    for (const r of sel.requirements) {
      if (r.operator !== 'In' && r.operator !== 'Exists') continue;
      let found: UniverseIdentity[];
      if (r.operator === 'In') {
        const lists = r.values.map((v) => idx.byValue.get(`${src(r.source)} ${r.key}=${v}`) ?? []);
        found = lists.length === 1 ? (lists[0] as UniverseIdentity[]) : [...new Set(lists.flat())];
      } else found = idx.byKey.get(`${src(r.source)} ${r.key}`) ?? [];
      if (found.length < others.length) others = found;
      const any = r.source === 'any';
      if ((any || r.source === 'reserved') && r.key === 'world') continue;
      const one = any || r.source === 'cidr' ? idx.cidrByKey.get(r.key) : undefined;
      cidrs = one && cidrs.includes(one) ? [one] : [];
    }
    return cidrs.length === 0 ? others : [...others, ...cidrs];
  }

  entity(e: Entity): PeerSet {
    const byLabel = (name: string) =>
      this.select({ requirements: [{ source: 'reserved', key: name, operator: 'Exists', values: [] }] });
    const cidrs = (family?: 4 | 6) =>
      this.cidrs()
        .sorted.filter((i) => !family || i.prefix?.family === family)
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
  /** Names the DNS proxy learned (normalized) and their addresses: what toFQDNs selects from. */
  fqdns: readonly { name: string; ips: readonly string[] }[] = [];

  /**
   * toFQDNs: the identities of the addresses learned for names the selector matches (their /32
   * or /128 CIDR identities; the engine creates one per learned address). Never a pod.
   */
  fqdn(sel: DnsRule): number[] {
    const ids = new Set<number>();
    for (const f of this.fqdns)
      if (nameMatches(sel, f.name))
        for (const ip of f.ips) {
          const p = this.prefix(ip.includes(':') ? `${ip}/128` : `${ip}/32`);
          if (!p) continue;
          for (const i of this.cidrsInside(p)) ids.add(i.id);
        }
    return [...ids].sort((a, b) => a - b);
  }

  cidr(m: CIDRMatch): number[] {
    const key = m.except.length === 0 ? m.cidr : `${m.cidr} - ${m.except.join(',')}`;
    let hit = this.cidrCache.get(key);
    if (!hit) {
      const outer = this.prefix(m.cidr);
      let excepts: PrefixTable<true> | undefined;
      for (const e of m.except) {
        const p = this.prefix(e);
        if (p) (excepts ??= new PrefixTable()).set(p, true);
      }
      hit = [];
      if (outer) {
        if (outer.len === 0)
          hit.push(IDENTITY_WORLD, outer.family === 4 ? IDENTITY_WORLD_IPV4 : IDENTITY_WORLD_IPV6);
        for (const i of this.cidrsInside(outer)) if (!excepts?.longest(i.prefix as Prefix)) hit.push(i.id);
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

/** An identity whose label index is built on first use (most CIDR identities never need one). */
class LazyIdentity implements UniverseIdentity {
  readonly pods: { ips: Prefix[]; namedPorts: NamedPort[] }[] = [];
  #index: LabelIndex | undefined;
  constructor(
    readonly id: number,
    readonly kind: UniverseIdentity['kind'],
    readonly labels: string[],
    readonly prefix?: Prefix,
  ) {}

  get index(): LabelIndex {
    this.#index ??= labelIndex(this.labels);
    return this.#index;
  }
}

/**
 * What the selector index derives from a label set, kept per label array across computations:
 * the engine passes the same (frozen) array for the same label set every time (engine.ts
 * endpointLabels, the allocator's slots), so a regeneration parses only new label sets.
 */
interface Derived {
  byValue: string[];
  byKey: string[];
  index?: LabelIndex;
}
const derived = new WeakMap<readonly string[], Derived>();

function derive(labels: readonly string[]): Derived {
  let d = derived.get(labels);
  if (d) return d;
  d = { byValue: [], byKey: [] };
  for (const l of labels) {
    const { source, key, value } = parseLabel(l);
    d.byValue.push(`${source} ${key}=${value}`, `* ${key}=${value}`);
    d.byKey.push(`${source} ${key}`, `* ${key}`);
  }
  // Only arrays nobody changes may be remembered (a changed one would keep stale keys).
  if (Object.isFrozen(labels)) derived.set(labels, d);
  return d;
}

const indexKeys = (labels: readonly string[]): Derived => derive(labels);

function labelIndex(labels: readonly string[]): LabelIndex {
  const d = derive(labels);
  d.index ??= new LabelIndex(labels.map((l) => parseLabel(l)));
  return d.index;
}

function makeIdentity(
  id: number,
  kind: UniverseIdentity['kind'],
  labels: string[],
  prefix?: Prefix,
): UniverseIdentity {
  return new LazyIdentity(id, kind, labels, prefix);
}
