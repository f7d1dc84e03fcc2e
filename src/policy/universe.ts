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

  constructor(
    readonly nodeIPs: Prefix[],
    /** Kept by the caller across computations: selector results updated by identity changes. */
    private readonly shared?: SelectorCache,
  ) {
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
      if (this.shared) {
        if (!this.selectorIndex) {
          this.shared.sync(this.identities);
          this.selectorIndex = this.shared.index;
        }
        hit = this.shared.select(key, sel);
      } else
        hit = candidates(this.index(), sel)
          .filter((i) => matchesSelector(sel, i.index))
          .map((i) => i.id)
          .sort((a, b) => a - b);
      this.selectorCache.set(key, hit);
    }
    return hit;
  }

  private index(): SelectorIndex {
    if (this.selectorIndex) return this.selectorIndex;
    const idx = emptyIndex();
    for (const i of this.identities.values()) indexAdd(idx, i);
    this.selectorIndex = idx;
    return idx;
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
  labels: readonly string[],
  prefix?: Prefix,
): UniverseIdentity {
  return new LazyIdentity(id, kind, labels as string[], prefix);
}

/**
 * Identities that can match (a superset; matchesSelector decides). Other identities: those
 * carrying the value of an In requirement or the key of an Exists one (the shortest such list),
 * else all. Plain CIDR identities: the one a requirement on its cidr: key names; none when a
 * requirement needs a label they lack; else all.
 */
function candidates(idx: SelectorIndex, sel: LabelSelector): UniverseIdentity[] {
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

function emptyIndex(): SelectorIndex {
  return { byValue: new Map(), byKey: new Map(), others: [], cidrs: [], cidrByKey: new Map() };
}

/** The key of a plain CIDR identity (labels exactly cidr:<prefix>, reserved:world), else undefined. */
function plainCidrKey(i: UniverseIdentity): string | undefined {
  const [cidr, world] = i.labels;
  return i.kind === 'cidr' &&
    i.labels.length === 2 &&
    world === CIDR_WORLD_LABEL &&
    cidr?.startsWith(CIDR_LABEL_PREFIX) &&
    !cidr.includes('=')
    ? cidr.slice(CIDR_LABEL_PREFIX.length)
    : undefined;
}

function indexAdd(idx: SelectorIndex, i: UniverseIdentity): void {
  const put = (m: Map<string, UniverseIdentity[]>, k: string) => {
    const list = m.get(k);
    if (!list) m.set(k, [i]);
    else if (list[list.length - 1] !== i) list.push(i);
  };
  const cidr = plainCidrKey(i);
  if (cidr !== undefined) {
    idx.cidrs.push(i);
    idx.cidrByKey.set(cidr, i);
    return;
  }
  idx.others.push(i);
  const keys = indexKeys(i.labels);
  for (const k of keys.byValue) put(idx.byValue, k);
  for (const k of keys.byKey) put(idx.byKey, k);
}

function indexRemove(idx: SelectorIndex, gone: ReadonlySet<UniverseIdentity>): void {
  const keep = (list: UniverseIdentity[]) => list.filter((i) => !gone.has(i));
  idx.others = keep(idx.others);
  idx.cidrs = keep(idx.cidrs);
  for (const m of [idx.byValue, idx.byKey])
    for (const [k, list] of m) {
      if (!list.some((i) => gone.has(i))) continue;
      const left = keep(list);
      if (left.length) m.set(k, left);
      else m.delete(k);
    }
  for (const [k, i] of idx.cidrByKey) if (gone.has(i)) idx.cidrByKey.delete(k);
}

/**
 * Whether `sel` can select a plain CIDR identity at all, as candidates() decides for them: every
 * In or Exists requirement (but those on world) must name its cidr: key.
 */
function cidrCandidate(sel: LabelSelector, key: string): boolean {
  for (const r of sel.requirements) {
    if (r.operator !== 'In' && r.operator !== 'Exists') continue;
    const any = r.source === 'any';
    if ((any || r.source === 'reserved') && r.key === 'world') continue;
    if (!((any || r.source === 'cidr') && r.key === key)) return false;
  }
  return true;
}

const sameLabels = (a: readonly string[], b: readonly string[]) =>
  a === b || (a.length === b.length && a.every((l, k) => l === b[k]));

/** Selector results kept at most (a policy change leaves the old selectors' behind). */
const selectorResultsMax = 8192;

/**
 * Cilium's selector cache: the selector index and each selector's identities, kept across
 * computations by their caller (the agent) and brought up to date with the identities that
 * appeared or went since the last one. One new pod of the cluster then costs a look-up per
 * identity and a match per cached selector, not a rebuilt index and a re-run of every selector.
 * The results are those a fresh computation gives (the same candidates and matches).
 */
export class SelectorCache {
  index: SelectorIndex = emptyIndex();
  private readonly members = new Map<number, UniverseIdentity>();
  private readonly results = new Map<string, { sel: LabelSelector; ids: Set<number>; sorted?: number[] }>();

  /** Makes the index hold exactly these identities (their labels; their pods do not matter). */
  sync(identities: ReadonlyMap<number, UniverseIdentity>): void {
    const added: UniverseIdentity[] = [];
    const removed = new Set<UniverseIdentity>();
    for (const [id, i] of identities) {
      const have = this.members.get(id);
      if (have && have.kind === i.kind && sameLabels(have.labels, i.labels)) continue;
      if (have) removed.add(have);
      added.push(makeIdentity(id, i.kind, i.labels, i.prefix));
    }
    for (const [id, m] of this.members) if (!identities.has(id)) removed.add(m);
    if (removed.size > 0) {
      indexRemove(this.index, removed);
      for (const m of removed) {
        this.members.delete(m.id);
        for (const r of this.results.values()) if (r.ids.delete(m.id)) r.sorted = undefined;
      }
    }
    for (const m of added) {
      this.members.set(m.id, m);
      indexAdd(this.index, m);
      const cidr = plainCidrKey(m);
      for (const r of this.results.values())
        if ((cidr === undefined || cidrCandidate(r.sel, cidr)) && matchesSelector(r.sel, m.index)) {
          r.ids.add(m.id);
          r.sorted = undefined;
        }
    }
  }

  /** The identities `sel` selects, sorted (the index is current: sync() ran). */
  select(key: string, sel: LabelSelector): number[] {
    let r = this.results.get(key);
    if (!r) {
      if (this.results.size >= selectorResultsMax) this.results.clear();
      const ids = candidates(this.index, sel)
        .filter((i) => matchesSelector(sel, i.index))
        .map((i) => i.id);
      r = { sel, ids: new Set(ids) };
      this.results.set(key, r);
    }
    r.sorted ??= [...r.ids].sort((a, b) => a - b);
    return r.sorted;
  }
}
