// The policy engine: manifests in (namespaces, endpoints, policies), per-endpoint policy-map
// entries out, plus the ipcache (IP/prefix -> identity), the cookie -> rule table and the L7
// policy the node proxy enforces (entries of ports with HTTP rules carry the proxy's listener
// port: the datapath redirects those connections, l7.ts). Pure: no kernel calls. The agent writes
// the entries, `policy trace` and conformance simulation look them up with lookup.ts, and bpf/
// reaches the same verdicts from the same entries.
import { comparePrefix, formatPrefix, hostPrefix, parsePrefix, type Prefix } from '../identity/cidr.js';
import { IdentityAllocator } from '../identity/allocator.js';
import type { LabelFilter } from '../identity/filter.js';
import { formatLabel } from '../identity/labels.js';
import { podSecurityLabels } from '../identity/pod-labels.js';
import {
  IDENTITY_ANY,
  IDENTITY_HOST,
  IDENTITY_INIT,
  IDENTITY_REMOTE_NODE,
  IDENTITY_WORLD,
  reservedLabels,
} from '../identity/reserved.js';
import { WeirError } from '../shared/errors.js';
import { matchesSelector } from './api/selector.js';
import type { Policy, PortMatch, RuleRef } from './api/types.js';
import { compilePolicies, CookieJar, LOCALHOST_REF, type CompiledRule, type Section } from './compile.js';
import type { EndpointL7Policy, PortL7Policy } from './l7/types.js';
import { l7PortPolicies, redirectDecisions, type L7Add } from './l7.js';
import {
  compareEntries,
  directionName,
  DIR_EGRESS,
  DIR_INGRESS,
  l4Prefixes,
  makeEntry,
  PREFIX_PORT_ANY,
  PREFIX_PROTO_ANY,
  PROTO_TCP,
  PROTO_UDP,
  protocolNumbers,
  type Direction,
  type L4Prefix,
  type PolicyMapEntry,
} from './entry.js';
import { Universe, type NamedPort, type SelectorCache } from './universe.js';

export { SelectorCache } from './universe.js';

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
  /** An endpoint whose labels are not known yet (a runtime's container before its Pod): reserved:init. */
  init?: boolean;
}

export interface EngineConfig {
  /** Entries one endpoint's policy map holds (Cilium's --bpf-policy-map-max). */
  policyMapMax: number;
  /** The local host may always open connections to local pods (--allow-localhost=always). */
  allowLocalhost: boolean;
  enforcementMode: 'default' | 'always' | 'never';
  labelFilter?: LabelFilter;
  /**
   * The node proxy's listener ports, per direction of the endpoint's policy (HTTP parser). Entries
   * of a port with HTTP rules carry the one of their direction as their proxy port.
   */
  /** The proxy's listeners: HTTP ingress, HTTP egress, DNS (egress). */
  proxyPorts: { ingress: number; egress: number; dns?: number };
}

/** The first two ports of the agent's default proxy port range (Cilium's 10000-20000). */
export const defaultProxyPorts = { ingress: 10000, egress: 10001, dns: 10002 } as const;

export const defaultEngineConfig: EngineConfig = {
  policyMapMax: 16384,
  allowLocalhost: true,
  enforcementMode: 'default',
  proxyPorts: defaultProxyPorts,
};

export interface EngineInput {
  namespaces: EngineNamespace[];
  endpoints: EngineEndpoint[];
  nodeIPs: string[];
  policies: Policy[];
  config?: Partial<EngineConfig>;
  /**
   * Names the DNS proxy learned (node-wide, unexpired) and their addresses: toFQDNs selects
   * among them. Each address gets a CIDR identity (/32, /128) in the ipcache.
   */
  fqdns?: { name: string; ips: string[] }[];
  /**
   * Pods of other nodes (a cluster): their identities (the same label sets as on their nodes,
   * so the same cluster ids) are peers policies select, and their addresses are in the ipcache.
   * They get no policy of their own here.
   */
  remoteEndpoints?: (Omit<EngineEndpoint, 'id'> & {
    /**
     * The underlay address of the pod's node (its ipcache entries carry it, in both routing modes:
     * the datapath's node id of the peer; tunnel mode also encapsulates towards it).
     */
    tunnelEndpoint?: string;
  })[];
  /** Other nodes' addresses: reserved:remote-node in the ipcache. */
  remoteNodeIPs?: string[];
  /**
   * Tunnel mode: other nodes' pod CIDRs (world, like Cilium's) and addresses inside them, with
   * the underlay address of their node: traffic to them is encapsulated towards it.
   */
  tunnelPrefixes?: { prefix: string; identity: number; tunnelEndpoint: string }[];
}

/**
 * Label sets computed before, by their inputs (namespace, service account, pod and namespace
 * labels, per label filter): a regeneration recomputes the labels of every pod of the cluster,
 * and nearly all are the same as in the last one. The arrays are frozen and shared, so the
 * selector index can keep what it derives from each (universe.ts) across computations too.
 * Bounded: emptied when it outgrows the label sets a large cluster holds.
 */
const labelMemo = new WeakMap<LabelFilter | typeof noFilter, Map<string, readonly string[]>>();
const noFilter = {};
const labelMemoMax = 65_536;

function labelsKey(
  ep: Pick<EngineEndpoint, 'namespace' | 'labels' | 'serviceAccount'>,
  namespaceLabels: Record<string, string>,
): string {
  let k = `${ep.namespace}\u0001${ep.serviceAccount ?? ''}\u0001`;
  for (const name in ep.labels) k += `${name}\u0000${ep.labels[name]}\u0000`;
  k += '\u0001';
  for (const name in namespaceLabels) k += `${name}\u0000${namespaceLabels[name]}\u0000`;
  return k;
}

/** The sorted security label strings of an endpoint (what its identity is allocated for). */
export function endpointLabels(
  ep: Pick<EngineEndpoint, 'namespace' | 'labels' | 'serviceAccount' | 'init'>,
  namespaceLabels: Record<string, string>,
  labelFilter?: LabelFilter,
): string[] {
  if (ep.init) return reservedLabels(IDENTITY_INIT);
  const f = labelFilter ?? noFilter;
  let memo = labelMemo.get(f);
  if (!memo) labelMemo.set(f, (memo = new Map()));
  const key = labelsKey(ep, namespaceLabels);
  const have = memo.get(key);
  // Frozen: a caller changing it would change every later computation's labels.
  if (have) return have as string[];
  const labels = Object.freeze(computeEndpointLabels(ep, namespaceLabels, labelFilter));
  if (memo.size >= labelMemoMax) memo.clear();
  memo.set(key, labels);
  return labels as string[];
}

function computeEndpointLabels(
  ep: Pick<EngineEndpoint, 'namespace' | 'labels' | 'serviceAccount'>,
  namespaceLabels: Record<string, string>,
  labelFilter?: LabelFilter,
): string[] {
  return podSecurityLabels(
    {
      namespace: ep.namespace,
      labels: ep.labels,
      namespaceLabels,
      ...(ep.serviceAccount ? { serviceAccount: ep.serviceAccount } : {}),
    },
    labelFilter,
  )
    .map(formatLabel)
    .sort();
}

export interface EndpointPolicy {
  identity: number;
  labels: string[];
  ingressEnforced: boolean;
  egressEnforced: boolean;
  /** Sorted; empty with `error` set when the policy did not fit (fail closed: drop all new flows). */
  entries: PolicyMapEntry[];
  failClosed?: boolean;
  /** Why it fails closed: its policy did not fit, or (a datapath view) the endpoint has no policy map. */
  error?: { code: 'ERR_POLICY_MAP_OVERFLOW' | 'ERR_DATAPATH_NO_POLICY_MAP'; message: string };
  /** The ports whose entries redirect to the proxy, with their L7 rules (absent: none). */
  l7?: { ingress: PortL7Policy[]; egress: PortL7Policy[] };
}

export interface EngineOutput {
  endpoints: Map<number, EndpointPolicy>;
  /** `tunnelEndpoint`: the underlay address of the node a remote pod's address lives on. */
  ipcache: { prefix: string; identity: number; tunnelEndpoint?: string }[];
  cookies: Map<number, RuleRef>;
  /** What the node proxy enforces: the endpoints with redirected ports, by endpoint id. */
  l7: EndpointL7Policy[];
  /** Identities this computation holds a reference on; pass as `previousHeld` next time. */
  held: number[];
}

export interface EngineOptions {
  allocator?: IdentityAllocator;
  /** `held` of the previous computation with the same allocator: released after this one. */
  previousHeld?: readonly number[];
  /**
   * Selector results kept across computations (the caller keeps it, like the allocator): each
   * computation brings it up to date with the identities that changed. The output is the same.
   */
  selectorCache?: SelectorCache;
}

export function computePolicy(input: EngineInput, opts: EngineOptions = {}): EngineOutput {
  const cfg: EngineConfig = { ...defaultEngineConfig, ...input.config };
  const allocator = opts.allocator ?? new IdentityAllocator();
  const held: number[] = [];
  const nodeIPs = input.nodeIPs.map((ip) => mustHost(ip, 'node IP'));
  const u = new Universe(nodeIPs, opts.selectorCache);
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
  const epIPs = new Map<number, Prefix[]>();
  for (const ep of [...input.endpoints].sort((a, b) => a.id - b.id)) {
    if (seenIds.has(ep.id))
      throw new WeirError('ERR_POLICY_ENDPOINT_DUPLICATE', `endpoint id ${ep.id} appears twice`);
    seenIds.add(ep.id);
    const labels = endpointLabels(ep, nsLabels.get(ep.namespace) ?? {}, cfg.labelFilter);
    const id = take(labels);
    epIdentity.set(ep.id, { id, labels });
    const ips = ep.ips.map((ip) => mustHost(ip, `IP of ${ep.namespace}/${ep.pod}`));
    epIPs.set(ep.id, ips);
    u.addPod(id, labels, ips, ep.namedPorts);
  }

  // Pods of other nodes: peers with their cluster identities.
  const remoteIPs: { prefix: Prefix; identity: number; tunnelEndpoint?: string }[] = [];
  for (const ep of input.remoteEndpoints ?? []) {
    const labels = endpointLabels(ep, nsLabels.get(ep.namespace) ?? {}, cfg.labelFilter);
    const id = take(labels);
    const ips = ep.ips.map((ip) => mustHost(ip, `IP of ${ep.namespace}/${ep.pod}`));
    for (const ip of ips)
      remoteIPs.push({
        prefix: ip,
        identity: id,
        ...(ep.tunnelEndpoint ? { tunnelEndpoint: ep.tunnelEndpoint } : {}),
      });
    u.addPod(id, labels, ips, ep.namedPorts);
  }

  // CIDR identities for every prefix a policy names; /0 is reserved:world itself. Distinct
  // prefixes never share a label set with each other or with a pod, so no need for `take`.
  const cidrIds: { prefix: Prefix; text: string; id: number }[] = [];
  u.fqdns = input.fqdns ?? [];
  for (const { prefix, text } of collectPrefixes(input.policies, u, input.fqdns ?? [])) {
    if (prefix.len === 0) continue;
    const ident = allocator.allocate([`cidr:${text}`, 'reserved:world']);
    held.push(ident.id);
    cidrIds.push({ prefix, text, id: ident.id });
    u.addCIDR(ident.id, ident.labels, prefix);
  }

  const jar = new CookieJar();
  const sections = compilePolicies(input.policies, u, jar);
  const localhostCookie = jar.cookie(LOCALHOST_REF);

  // Entries depend only on which sections select an endpoint (and, for named ports, its own
  // ports), not on its identity: endpoints selected alike share one computation.
  const selectedBy = new Map<number, Section[]>();
  const cache = new Map<string, Omit<EndpointPolicy, 'identity' | 'labels'>>();
  const endpoints = new Map<number, EndpointPolicy>();
  for (const ep of input.endpoints) {
    const ident = epIdentity.get(ep.id) as { id: number; labels: string[] };
    let mine = selectedBy.get(ident.id);
    if (!mine) {
      const index = u.identities.get(ident.id)?.index;
      mine = index ? sections.filter((s) => matchesSelector(s.subject, index)) : [];
      selectedBy.set(ident.id, mine);
    }
    const ports = [...ep.namedPorts].sort((a, b) => a.name.localeCompare(b.name) || a.port - b.port);
    const key = `${mine.map((s) => sections.indexOf(s)).join(',')}|${JSON.stringify(ports)}`;
    let result = cache.get(key);
    if (!result) {
      result = endpointPolicy(mine, ep.namedPorts, u, cfg, localhostCookie);
      cache.set(key, result);
    }
    endpoints.set(ep.id, { identity: ident.id, labels: ident.labels, ...result });
  }

  const ipcache: { prefix: Prefix; text?: string; identity: number; tunnelEndpoint?: string }[] = [];
  for (const ep of input.endpoints) {
    const id = epIdentity.get(ep.id)?.id ?? 0;
    for (const ip of epIPs.get(ep.id) ?? []) ipcache.push({ prefix: ip, identity: id });
  }
  for (const ip of nodeIPs) ipcache.push({ prefix: ip, identity: IDENTITY_HOST });
  ipcache.push(...remoteIPs);
  // Tunnel prefixes first: a remote node's own address inside its pod CIDR keeps its tunnel
  // endpoint and takes the remote-node identity below (the first of equal prefixes stays).
  for (const t of input.tunnelPrefixes ?? []) {
    const prefix = parsePrefix(t.prefix, { allowBareIP: true });
    if (prefix) ipcache.push({ prefix, identity: t.identity, tunnelEndpoint: t.tunnelEndpoint });
  }
  for (const ip of input.remoteNodeIPs ?? [])
    ipcache.push({ prefix: mustHost(ip, 'remote node IP'), identity: IDENTITY_REMOTE_NODE });
  for (const c of cidrIds) ipcache.push({ prefix: c.prefix, text: c.text, identity: c.id });
  ipcache.push({ prefix: { family: 4, addr: 0n, len: 0 }, identity: IDENTITY_WORLD });
  ipcache.push({ prefix: { family: 6, addr: 0n, len: 0 }, identity: IDENTITY_WORLD });
  ipcache.sort((a, b) => comparePrefix(a.prefix, b.prefix));
  const dedup = ipcache.filter(
    (e, i) => i === 0 || comparePrefix(e.prefix, (ipcache[i - 1] as typeof e).prefix) !== 0,
  );

  const l7: EndpointL7Policy[] = [];
  for (const ep of [...input.endpoints].sort((a, b) => a.id - b.id)) {
    const pol = endpoints.get(ep.id);
    if (!pol?.l7 || pol.failClosed) continue;
    l7.push({
      endpointId: ep.id,
      namespace: ep.namespace,
      pod: ep.pod,
      identity: pol.identity,
      ips: [...ep.ips],
      ingress: pol.l7.ingress,
      egress: pol.l7.egress,
    });
  }

  for (const id of opts.previousHeld ?? []) allocator.release(id);
  return {
    endpoints,
    l7,
    ipcache: dedup.map((e) => ({
      prefix: e.text ?? formatPrefix(e.prefix),
      identity: e.identity,
      ...(e.tunnelEndpoint ? { tunnelEndpoint: e.tunnelEndpoint } : {}),
    })),
    cookies: new Map([...jar.byCookie].sort((a, b) => a[0] - b[0])),
    held,
  };
}

function mustHost(ip: string, what: string): Prefix {
  const p = hostPrefix(ip);
  if (!p) throw new WeirError('ERR_POLICY_INPUT_INVALID', `${what} '${ip}' is not an IP address`);
  return p;
}

/** Every prefix the policies name, once, sorted; `text` is its canonical form. */
function collectPrefixes(
  policies: readonly Policy[],
  u: Universe,
  fqdns: readonly { ips: readonly string[] }[],
): { prefix: Prefix; text: string }[] {
  const out = new Map<string, { prefix: Prefix; text: string }>();
  const add = (s: string) => {
    const prefix = u.prefix(s);
    if (!prefix) return;
    const text = formatPrefix(prefix);
    if (!out.has(text)) out.set(text, { prefix, text });
  };
  // Learned addresses only matter to a policy with toFQDNs.
  const selecting = policies.some(
    (p) => p.kind !== 'NetworkPolicy' && p.rules.some((r) => r.egress.some((e) => e.fqdns)),
  );
  if (selecting)
    for (const f of fqdns) for (const ip of f.ips) add(ip.includes(':') ? `${ip}/128` : `${ip}/32`);
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
  return [...out.values()].sort((a, b) => comparePrefix(a.prefix, b.prefix));
}

function endpointPolicy(
  mine: readonly Section[],
  namedPorts: readonly NamedPort[],
  u: Universe,
  cfg: EngineConfig,
  localhostCookie: number,
): Omit<EndpointPolicy, 'identity' | 'labels'> {
  const entries: PolicyMapEntry[] = [];
  const enforced = { [DIR_INGRESS]: false, [DIR_EGRESS]: false };
  const l7 = { ingress: [] as PortL7Policy[], egress: [] as PortL7Policy[] };
  for (const dir of [DIR_INGRESS, DIR_EGRESS] as const) {
    const here = mine.filter((s) => s.direction === dir);
    enforced[dir] =
      cfg.enforcementMode === 'always' || (cfg.enforcementMode === 'default' && here.some((s) => s.isolates));
    const proxyPort = dir === DIR_INGRESS ? cfg.proxyPorts.ingress : cfg.proxyPorts.egress;
    const hasL7 = here.some((s) =>
      s.rules.some((r) => r.ports !== 'any' && r.ports.some((p) => p.http || p.dns)),
    );
    const dnsPort = cfg.proxyPorts.dns ?? defaultProxyPorts.dns;
    if (!enforced[dir] && !hasL7) {
      entries.push(
        makeEntry(IDENTITY_ANY, dir, { protocol: 0, port: 0, prefixLen: PREFIX_PROTO_ANY }, false, 0),
      );
      continue;
    }
    // identity -> L4 key -> entry, with the order of the rule that wrote it.
    const raw = new Map<number, Map<number, PolicyMapEntry>>();
    const orders = new Map<PolicyMapEntry, number>();
    // Every allow added, for the proxy's rule sets (only kept when the direction has L7 rules).
    const adds: L7Add[] = [];
    const add: AddFn = (identity, l4, rule, l7) => {
      let space = raw.get(identity);
      if (!space) raw.set(identity, (space = new Map()));
      const key = l4Num(l4.protocol, l4.port, l4.prefixLen);
      const have = space.get(key);
      const http = l7?.http;
      // DNS rules redirect the port's UDP and TCP lookups to the DNS proxy's listener.
      const dns = l7?.dns && (l4.protocol === PROTO_TCP || l4.protocol === PROTO_UDP) ? l7.dns : undefined;
      const port = http ? proxyPort : dns ? dnsPort : 0;
      if (hasL7 && !rule.deny)
        adds.push({ identity, l4, rule, ...(http ? { http } : {}), ...(dns ? { dns } : {}) });
      // Same key twice: deny beats allow; between allows an L4-only one beats an L7 one (the port
      // is unfiltered for that peer); then the first rule in the sorted order names it.
      // Two allows of one key: authentication required by either is required (Cilium's merge).
      const auth = !rule.deny && (rule.auth || (have && !have.deny && have.auth));
      if (have) {
        const order = orders.get(have) ?? 0;
        const keep = () => {
          if (!auth || have.auth) return;
          const c = withAuth(have);
          orders.set(c, order);
          space.set(key, c);
        };
        if (have.deny !== rule.deny) {
          if (have.deny) return;
        } else if (!rule.deny && have.proxyPort !== port) {
          if (have.proxyPort === 0) return keep();
        } else if (order <= rule.order) return keep();
      }
      const made = {
        ...makeEntry(identity, dir, l4, rule.deny, rule.cookie),
        proxyPort: rule.deny ? 0 : port,
      };
      const e = auth ? withAuth(made) : made;
      orders.set(e, rule.order);
      space.set(key, e);
    };
    // Not enforced, but with L7 rules: everything is allowed (the base entry), the L7 rules'
    // ports of their peers go through the proxy; deny rules stay ignored as without L7.
    const base = enforced[dir]
      ? undefined
      : makeEntry(IDENTITY_ANY, dir, { protocol: 0, port: 0, prefixLen: PREFIX_PROTO_ANY }, false, 0);
    for (const s of here)
      for (const r of s.rules) if (enforced[dir] || !r.deny) addRule(r, dir, namedPorts, u, add);
    if (dir === DIR_INGRESS && cfg.allowLocalhost && enforced[dir])
      add(
        IDENTITY_HOST,
        { protocol: 0, port: 0, prefixLen: PREFIX_PROTO_ANY },
        { deny: false, cookie: localhostCookie, order: Infinity },
      );
    if (base) {
      let space = raw.get(IDENTITY_ANY);
      if (!space) raw.set(IDENTITY_ANY, (space = new Map()));
      if (!space.has(l4Num(0, 0, PREFIX_PROTO_ANY))) space.set(l4Num(0, 0, PREFIX_PROTO_ANY), base);
    }
    if (hasL7) redirectDecisions(raw, (a) => a === base, l4Num);
    const resolved = resolveSpaces(raw);
    entries.push(...resolved);
    if (hasL7)
      l7[directionName(dir)] = [
        ...l7PortPolicies(resolved, adds, proxyPort, 'http'),
        ...l7PortPolicies(resolved, adds, dnsPort, 'dns'),
      ];
  }
  entries.sort(compareEntries);
  const base = {
    ingressEnforced: enforced[DIR_INGRESS],
    egressEnforced: enforced[DIR_EGRESS],
    ...(l7.ingress.length + l7.egress.length > 0 ? { l7 } : {}),
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

/** The entry with the auth flag (a copy: entries are shared). */
const withAuth = (e: PolicyMapEntry): PolicyMapEntry => ({ ...e, auth: true });
function withoutAuth(e: PolicyMapEntry): PolicyMapEntry {
  const { auth: _, ...rest } = e;
  return rest;
}
/** Two allows with the same effect: the same proxy port and authentication. */
const sameAllow = (a: PolicyMapEntry, b: PolicyMapEntry) =>
  a.proxyPort === b.proxyPort && !a.auth === !b.auth;

/**
 * Authentication is inherited by more specific allows (Cilium's mapstate propagates a covering
 * entry's auth type to entries without one of their own): an allow inside an allow of the same
 * identity, or of identity 0, that requires authentication requires it too, else the LPM lookup
 * would pick the more specific entry and skip the authentication the broader rule asks for.
 */
function inheritAuth(spaces: Map<number, Space>, any: Space | undefined): void {
  const needs = (a: PolicyMapEntry) => !a.deny && a.auth === true;
  if (![...spaces.values()].some((s) => [...s.byKey.values()].some(needs))) return;
  for (const [id, s] of spaces)
    for (const [k, e] of [...s.byKey].sort((a, b) => a[1].prefixLen - b[1].prefixLen)) {
      if (e.deny || e.auth) continue;
      const up = nearest(s, e, true, (a) => !a.deny);
      const z = id !== IDENTITY_ANY && any ? nearest(any, e, false, (a) => !a.deny) : undefined;
      if ((up && needs(up)) || (z && needs(z))) s.byKey.set(k, withAuth(e));
    }
}

type AddFn = (
  identity: number,
  l4: L4Prefix,
  rule: { deny: boolean; auth?: boolean; cookie: number; order: number; ref?: RuleRef },
  l7?: Pick<PortMatch, 'http' | 'dns'>,
) => void;

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
      for (const id of peers) for (const l4 of l4s) add(id, l4, r, pm);
      continue;
    }
    // Named ports are resolved against the destination pod: ourselves at ingress, the peer at egress.
    const resolve = (named: readonly NamedPort[]) =>
      named.filter((n) => n.name === pm.port && (pm.protocol === 'ANY' || n.protocol === pm.protocol));
    if (dir === DIR_INGRESS) {
      for (const n of resolve(ownPorts))
        for (const l4 of l4Prefixes(protocolNumbers[n.protocol] ?? 0, n.port))
          for (const id of peers) add(id, l4, r, pm);
      continue;
    }
    const targets = r.peers === 'any' ? u.podIdentities().map((i) => i.id) : peers;
    for (const id of targets)
      for (const pod of u.identities.get(id)?.pods ?? [])
        for (const n of resolve(pod.namedPorts))
          for (const l4 of l4Prefixes(protocolNumbers[n.protocol] ?? 0, n.port)) add(id, l4, r, pm);
  }
}

/** An L4 prefix as one number: protocol, port and prefix length (relative to 40). */
const l4Num = (protocol: number, port: number, prefixLen: number) =>
  protocol * 0x200000 + port * 32 + (prefixLen - PREFIX_PROTO_ANY);

/** `e` cut to a shorter prefix length (40 = any protocol, 48 = any port). */
function truncate(e: L4Prefix, len: number): number {
  if (len === PREFIX_PROTO_ANY) return l4Num(0, 0, len);
  const keep = len - PREFIX_PORT_ANY;
  return l4Num(e.protocol, keep === 0 ? 0 : e.port & ((0xffff << (16 - keep)) & 0xffff), len);
}

interface Space {
  byKey: Map<number, PolicyMapEntry>;
  /** Prefix lengths present, longest first: only these can hold an ancestor. */
  lens: number[];
}

function buildSpace(byKey: Map<number, PolicyMapEntry>): Space {
  const lens = new Set<number>();
  for (const e of byKey.values()) lens.add(e.prefixLen);
  return { byKey, lens: [...lens].sort((a, b) => b - a) };
}

/** The nearest entry of the space containing `e` (strictly, or including `e` itself). */
function nearest(
  s: Space,
  e: L4Prefix,
  strict: boolean,
  pred?: (a: PolicyMapEntry) => boolean,
): PolicyMapEntry | undefined {
  for (const len of s.lens) {
    if (len > e.prefixLen || (strict && len === e.prefixLen)) continue;
    const a = s.byKey.get(truncate(e, len));
    if (a && (!pred || pred(a))) return a;
  }
  return undefined;
}

/**
 * Makes longest-prefix lookups give deny precedence, then drops entries that cannot change a
 * verdict (Cilium's mapstate does the same):
 *  1. an allow inside a deny of the same identity key becomes a deny (else LPM would pick it);
 *  2. an entry whose nearest containing entry of the same key has the same verdict is redundant
 *     (a verdict is deny, or allow with a proxy port);
 *  3. an entry of identity X is redundant when identity 0 has a containing deny (any deny wins),
 *     or when it is an allow and the entry a lookup would find without it (X's containing one,
 *     or identity 0's containing one if that is longer) allows with the same proxy port.
 * Entries passed in are of one endpoint and one direction.
 */
export function resolvePrecedence(entries: PolicyMapEntry[]): PolicyMapEntry[] {
  const raw = new Map<number, Map<number, PolicyMapEntry>>();
  for (const e of entries) {
    let space = raw.get(e.identity);
    if (!space) raw.set(e.identity, (space = new Map()));
    space.set(l4Num(e.protocol, e.port, e.prefixLen), e);
  }
  return resolveSpaces(raw);
}

/** resolvePrecedence over entries already grouped by identity and keyed by l4Num. */
function resolveSpaces(raw: Map<number, Map<number, PolicyMapEntry>>): PolicyMapEntry[] {
  const spaces = new Map<number, Space>();
  for (const [id, byKey] of raw) {
    // One entry (a peer on one port, the common case): nothing inside it to resolve.
    if (byKey.size === 1) {
      spaces.set(id, { byKey, lens: [(byKey.values().next().value as PolicyMapEntry).prefixLen] });
      continue;
    }
    const s = buildSpace(byKey);
    if (s.lens.length > 1 && [...byKey.values()].some((e) => e.deny))
      for (const [k, e] of s.byKey) {
        if (e.deny) continue;
        const deny = nearest(s, e, true, (a) => a.deny);
        if (deny) s.byKey.set(k, { ...withoutAuth(e), deny: true, cookie: deny.cookie, proxyPort: 0 });
      }
    spaces.set(id, s);
  }
  const any = spaces.get(IDENTITY_ANY);
  inheritAuth(spaces, any);
  const out: PolicyMapEntry[] = [];
  for (const [id, s] of spaces)
    for (const e of s.byKey.values()) {
      const up = s.lens.length > 1 ? nearest(s, e, true) : undefined;
      if (id === IDENTITY_ANY || !any) {
        if (up && up.deny === e.deny && (e.deny || sameAllow(up, e))) continue;
        out.push(e);
        continue;
      }
      if (e.deny) {
        if (up?.deny || nearest(any, e, false, (a) => a.deny)) continue;
        out.push(e);
        continue;
      }
      if (nearest(any, e, false, (a) => a.deny)) continue;
      // Without e, the lookup of a key at e's level returns `up` from this identity and `z` from
      // identity 0, and the longer wins (a tie goes to this identity): e is redundant when that
      // winner allows with the same proxy port.
      const z = nearest(any, e, false);
      const d = up && (!z || up.prefixLen >= z.prefixLen) ? up : z;
      if (d && !d.deny && sameAllow(d, e)) continue;
      out.push(e);
    }
  return out;
}
