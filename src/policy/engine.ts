// The policy engine: manifests in (namespaces, endpoints, policies), per-endpoint policy-map
// entries out, plus the ipcache (IP/prefix -> identity) and the cookie -> rule table. Pure: no
// kernel calls. The agent writes the entries, `policy trace` and conformance simulation look
// them up with lookup.ts, and bpf/ reaches the same verdicts from the same entries.
import { comparePrefix, formatPrefix, hostPrefix, parsePrefix, type Prefix } from '../identity/cidr.js';
import { IdentityAllocator } from '../identity/allocator.js';
import type { LabelFilter } from '../identity/filter.js';
import { formatLabel } from '../identity/labels.js';
import { podSecurityLabels } from '../identity/pod-labels.js';
import { IDENTITY_ANY, IDENTITY_HOST, IDENTITY_WORLD } from '../identity/reserved.js';
import { WeirError } from '../shared/errors.js';
import { matchesSelector } from './api/selector.js';
import type { Policy, PortMatch, RuleRef } from './api/types.js';
import { compilePolicies, CookieJar, LOCALHOST_REF, type CompiledRule, type Section } from './compile.js';
import {
  compareEntries,
  DIR_EGRESS,
  DIR_INGRESS,
  l4Prefixes,
  makeEntry,
  PREFIX_PORT_ANY,
  PREFIX_PROTO_ANY,
  protocolNumbers,
  type Direction,
  type L4Prefix,
  type PolicyMapEntry,
} from './entry.js';
import { Universe, type NamedPort } from './universe.js';

export interface EngineNamespace {
  name: string;
  labels: Record<string, string>;
}

export interface EngineEndpoint {
  id: number;
  namespace: string;
  pod: string;
  labels: Record<string, string>;
  ips: string[];
  namedPorts: NamedPort[];
  serviceAccount?: string;
}

export interface EngineConfig {
  /** Entries one endpoint's policy map holds (Cilium's --bpf-policy-map-max). */
  policyMapMax: number;
  /** The local host may always open connections to local pods (--allow-localhost=always). */
  allowLocalhost: boolean;
  enforcementMode: 'default' | 'always' | 'never';
  labelFilter?: LabelFilter;
}

export const defaultEngineConfig: EngineConfig = {
  policyMapMax: 16384,
  allowLocalhost: true,
  enforcementMode: 'default',
};

export interface EngineInput {
  namespaces: EngineNamespace[];
  endpoints: EngineEndpoint[];
  nodeIPs: string[];
  policies: Policy[];
  config?: Partial<EngineConfig>;
}

export interface EndpointPolicy {
  identity: number;
  labels: string[];
  ingressEnforced: boolean;
  egressEnforced: boolean;
  /** Sorted; empty with `error` set when the policy did not fit (fail closed: drop all new flows). */
  entries: PolicyMapEntry[];
  failClosed?: boolean;
  error?: { code: 'ERR_POLICY_MAP_OVERFLOW'; message: string };
}

export interface EngineOutput {
  endpoints: Map<number, EndpointPolicy>;
  ipcache: { prefix: string; identity: number }[];
  cookies: Map<number, RuleRef>;
  /** Identities this computation holds a reference on; pass as `previousHeld` next time. */
  held: number[];
}

export interface EngineOptions {
  allocator?: IdentityAllocator;
  /** `held` of the previous computation with the same allocator: released after this one. */
  previousHeld?: readonly number[];
}

export function computePolicy(input: EngineInput, opts: EngineOptions = {}): EngineOutput {
  const cfg: EngineConfig = { ...defaultEngineConfig, ...input.config };
  const allocator = opts.allocator ?? new IdentityAllocator();
  const held: number[] = [];
  const nodeIPs = input.nodeIPs.map((ip) => mustHost(ip, 'node IP'));
  const u = new Universe(nodeIPs);
  const nsLabels = new Map(input.namespaces.map((n) => [n.name, n.labels]));

  // Pod identities.
  const epIdentity = new Map<number, { id: number; labels: string[] }>();
  const heldKeys = new Map<string, number>();
  const take = (labels: string[]) => {
    const key = labels.join('\n');
    const have = heldKeys.get(key);
    if (have !== undefined) return have;
    const id = allocator.allocate(labels).id;
    held.push(id);
    heldKeys.set(key, id);
    return id;
  };
  const seenIds = new Set<number>();
  for (const ep of [...input.endpoints].sort((a, b) => a.id - b.id)) {
    if (seenIds.has(ep.id))
      throw new WeirError('ERR_POLICY_ENDPOINT_DUPLICATE', `endpoint id ${ep.id} appears twice`);
    seenIds.add(ep.id);
    const labels = podSecurityLabels(
      {
        namespace: ep.namespace,
        labels: ep.labels,
        namespaceLabels: nsLabels.get(ep.namespace) ?? {},
        ...(ep.serviceAccount ? { serviceAccount: ep.serviceAccount } : {}),
      },
      cfg.labelFilter,
    )
      .map(formatLabel)
      .sort();
    const id = take(labels);
    epIdentity.set(ep.id, { id, labels });
    u.addPod(
      id,
      labels,
      ep.ips.map((ip) => mustHost(ip, `IP of ${ep.namespace}/${ep.pod}`)),
      ep.namedPorts,
    );
  }

  // CIDR identities for every prefix a policy names; /0 is reserved:world itself.
  const cidrIds: { prefix: Prefix; id: number }[] = [];
  for (const p of collectPrefixes(input.policies)) {
    if (p.len === 0) continue;
    const id = take([`cidr:${formatPrefix(p)}`, 'reserved:world']);
    cidrIds.push({ prefix: p, id });
    u.addCIDR(id, allocator.get(id)?.labels ?? [], p);
  }

  const jar = new CookieJar();
  const sections = compilePolicies(input.policies, u, jar);
  const localhostCookie = jar.cookie(LOCALHOST_REF);

  // Endpoints with the same identity and named ports get the same entries: compute once.
  const cache = new Map<string, EndpointPolicy>();
  const endpoints = new Map<number, EndpointPolicy>();
  for (const ep of input.endpoints) {
    const ident = epIdentity.get(ep.id) as { id: number; labels: string[] };
    const key = `${ident.id}|${JSON.stringify([...ep.namedPorts].sort((a, b) => a.name.localeCompare(b.name)))}`;
    let result = cache.get(key);
    if (!result) {
      result = endpointPolicy(ident, ep.namedPorts, sections, u, cfg, localhostCookie);
      cache.set(key, result);
    }
    endpoints.set(ep.id, result);
  }

  const ipcache: { prefix: Prefix; identity: number }[] = [];
  for (const ep of input.endpoints)
    for (const ip of ep.ips)
      ipcache.push({ prefix: mustHost(ip, 'pod IP'), identity: epIdentity.get(ep.id)?.id ?? 0 });
  for (const ip of nodeIPs) ipcache.push({ prefix: ip, identity: IDENTITY_HOST });
  for (const c of cidrIds) ipcache.push({ prefix: c.prefix, identity: c.id });
  ipcache.push({ prefix: { family: 4, addr: 0n, len: 0 }, identity: IDENTITY_WORLD });
  ipcache.push({ prefix: { family: 6, addr: 0n, len: 0 }, identity: IDENTITY_WORLD });
  ipcache.sort((a, b) => comparePrefix(a.prefix, b.prefix));
  const dedup = ipcache.filter(
    (e, i) => i === 0 || comparePrefix(e.prefix, (ipcache[i - 1] as typeof e).prefix) !== 0,
  );

  for (const id of opts.previousHeld ?? []) allocator.release(id);
  return {
    endpoints,
    ipcache: dedup.map((e) => ({ prefix: formatPrefix(e.prefix), identity: e.identity })),
    cookies: new Map([...jar.byCookie].sort((a, b) => a[0] - b[0])),
    held,
  };
}

function mustHost(ip: string, what: string): Prefix {
  const p = hostPrefix(ip);
  if (!p) throw new WeirError('ERR_POLICY_INPUT_INVALID', `${what} '${ip}' is not an IP address`);
  return p;
}

function collectPrefixes(policies: readonly Policy[]): Prefix[] {
  const out = new Map<string, Prefix>();
  const add = (s: string) => {
    const p = parsePrefix(s, { allowBareIP: true });
    if (p) out.set(formatPrefix(p), p);
  };
  for (const p of policies) {
    if (p.kind === 'NetworkPolicy') {
      for (const r of [...p.ingress, ...p.egress])
        for (const peer of r.peers ?? [])
          if (peer.ipBlock) [peer.ipBlock.cidr, ...peer.ipBlock.except].forEach(add);
    } else {
      for (const rule of p.rules)
        for (const r of [...rule.ingress, ...rule.ingressDeny, ...rule.egress, ...rule.egressDeny])
          for (const m of r.cidrs ?? []) [m.cidr, ...m.except].forEach(add);
    }
  }
  return [...out.values()].sort(comparePrefix);
}

function endpointPolicy(
  ident: { id: number; labels: string[] },
  namedPorts: readonly NamedPort[],
  sections: readonly Section[],
  u: Universe,
  cfg: EngineConfig,
  localhostCookie: number,
): EndpointPolicy {
  const index = u.identities.get(ident.id)?.index;
  const mine = index ? sections.filter((s) => matchesSelector(s.subject, index)) : [];
  const entries: PolicyMapEntry[] = [];
  const enforced = { [DIR_INGRESS]: false, [DIR_EGRESS]: false };
  for (const dir of [DIR_INGRESS, DIR_EGRESS] as const) {
    const here = mine.filter((s) => s.direction === dir);
    enforced[dir] =
      cfg.enforcementMode === 'always' || (cfg.enforcementMode === 'default' && here.some((s) => s.isolates));
    if (!enforced[dir]) {
      entries.push(
        makeEntry(IDENTITY_ANY, dir, { protocol: 0, port: 0, prefixLen: PREFIX_PROTO_ANY }, false, 0),
      );
      continue;
    }
    const raw = new Map<string, { e: PolicyMapEntry; order: number }>();
    const add = (identity: number, l4: L4Prefix, rule: { deny: boolean; cookie: number; order: number }) => {
      const key = `${identity}/${l4.protocol}/${l4.port}/${l4.prefixLen}`;
      const have = raw.get(key);
      // Same key twice: deny beats allow, then the first rule in the sorted order names it.
      if (have && (have.e.deny > rule.deny || (have.e.deny === rule.deny && have.order <= rule.order)))
        return;
      raw.set(key, { e: makeEntry(identity, dir, l4, rule.deny, rule.cookie), order: rule.order });
    };
    for (const s of here) for (const r of s.rules) addRule(r, dir, namedPorts, u, add);
    if (dir === DIR_INGRESS && cfg.allowLocalhost)
      add(
        IDENTITY_HOST,
        { protocol: 0, port: 0, prefixLen: PREFIX_PROTO_ANY },
        { deny: false, cookie: localhostCookie, order: Infinity },
      );
    entries.push(...resolvePrecedence([...raw.values()].map((v) => v.e)));
  }
  entries.sort(compareEntries);
  const base = {
    identity: ident.id,
    labels: ident.labels,
    ingressEnforced: enforced[DIR_INGRESS],
    egressEnforced: enforced[DIR_EGRESS],
  };
  if (entries.length > cfg.policyMapMax)
    return {
      ...base,
      entries: [],
      failClosed: true,
      error: {
        code: 'ERR_POLICY_MAP_OVERFLOW',
        message: `policy needs ${entries.length} entries but the policy map holds ${cfg.policyMapMax}; all new connections of this endpoint are dropped`,
      },
    };
  return { ...base, entries };
}

type AddFn = (identity: number, l4: L4Prefix, rule: { deny: boolean; cookie: number; order: number }) => void;

function addRule(
  r: CompiledRule,
  dir: Direction,
  ownPorts: readonly NamedPort[],
  u: Universe,
  add: AddFn,
): void {
  const peers = r.peers === 'any' ? [IDENTITY_ANY] : r.peers;
  if (peers.length === 0) return;
  const ports: PortMatch[] = r.ports === 'any' ? [{ protocol: 'ANY', port: 0 }] : r.ports;
  for (const pm of ports) {
    if (typeof pm.port === 'number') {
      const l4s = l4Prefixes(protocolNumbers[pm.protocol] ?? 0, pm.port, pm.endPort);
      for (const id of peers) for (const l4 of l4s) add(id, l4, r);
      continue;
    }
    // Named ports are resolved against the destination pod: ourselves at ingress, the peer at egress.
    const resolve = (named: readonly NamedPort[]) =>
      named.filter((n) => n.name === pm.port && (pm.protocol === 'ANY' || n.protocol === pm.protocol));
    if (dir === DIR_INGRESS) {
      for (const n of resolve(ownPorts))
        for (const l4 of l4Prefixes(protocolNumbers[n.protocol] ?? 0, n.port))
          for (const id of peers) add(id, l4, r);
      continue;
    }
    const targets = r.peers === 'any' ? u.podIdentities().map((i) => i.id) : peers;
    for (const id of targets)
      for (const pod of u.identities.get(id)?.pods ?? [])
        for (const n of resolve(pod.namedPorts))
          for (const l4 of l4Prefixes(protocolNumbers[n.protocol] ?? 0, n.port)) add(id, l4, r);
  }
}

/** The L4 prefixes strictly containing `e`, nearest first. */
function ancestors(e: L4Prefix): L4Prefix[] {
  const out: L4Prefix[] = [];
  for (let len = e.prefixLen - 1; len >= PREFIX_PORT_ANY; len--) {
    const keep = len - PREFIX_PORT_ANY;
    out.push({
      protocol: e.protocol,
      port: keep === 0 ? 0 : e.port & ((0xffff << (16 - keep)) & 0xffff),
      prefixLen: len,
    });
  }
  if (e.prefixLen > PREFIX_PROTO_ANY) out.push({ protocol: 0, port: 0, prefixLen: PREFIX_PROTO_ANY });
  return out;
}

const l4Key = (l: L4Prefix) => `${l.protocol}/${l.port}/${l.prefixLen}`;

/**
 * Makes longest-prefix lookups give deny precedence, then drops entries that cannot change a
 * verdict (Cilium's mapstate does the same):
 *  1. an allow inside a deny of the same identity key becomes a deny (else LPM would pick it);
 *  2. an entry whose nearest containing entry of the same key has the same verdict is redundant;
 *  3. an entry of identity X is redundant when identity 0 has a containing deny (any deny wins),
 *     or when it is an allow and identity 0 has a containing allow.
 * Entries passed in are of one endpoint and one direction.
 */
export function resolvePrecedence(entries: PolicyMapEntry[]): PolicyMapEntry[] {
  const spaces = new Map<number, Map<string, PolicyMapEntry>>();
  for (const e of entries) {
    let s = spaces.get(e.identity);
    if (!s) spaces.set(e.identity, (s = new Map()));
    s.set(l4Key(e), e);
  }
  for (const s of spaces.values())
    for (const [k, e] of s) {
      if (e.deny) continue;
      const deny = ancestors(e)
        .map((a) => s.get(l4Key(a)))
        .find((a) => a?.deny);
      if (deny) s.set(k, { ...e, deny: true, cookie: deny.cookie });
    }
  const any = spaces.get(IDENTITY_ANY);
  const out: PolicyMapEntry[] = [];
  for (const [id, s] of spaces)
    for (const e of s.values()) {
      const nearest = ancestors(e)
        .map((a) => s.get(l4Key(a)))
        .find((a) => a !== undefined);
      if (nearest && nearest.deny === e.deny) continue;
      if (id !== IDENTITY_ANY && any) {
        const covering = [e, ...ancestors(e)].map((a) => any.get(l4Key(a))).filter((a) => a !== undefined);
        if (covering.some((a) => a.deny) || (!e.deny && covering.length > 0)) continue;
      }
      out.push(e);
    }
  return out;
}
