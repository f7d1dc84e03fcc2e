// Every HTTP probe of conformance/l7/cases whose expected result is `allowed` or `l7-denied` (the
// L3/L4 part lets it through), judged by the matcher alone. The rule sets that apply to a probe are
// derived here from the case's policies with a small model of CNP selection (endpointSelector and
// namespace scoping, from/toEndpoints label selectors, entities, CIDRs, toFQDNs names, numeric and
// named ports): the source's egress sets and the destination's ingress sets, each judged when it
// carries HTTP rules (README item 8: both ends filter). Header rewrites are checked against the
// case's `upstreamSaw`.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { conformanceDir } from '../../shared/paths.js';
import { applyHeaderOps, judgeHttp } from './http-match.js';
import type { HttpRule, L7RuleSet, PortL7Policy } from './types.js';

type Labels = Record<string, string>;
interface Selector {
  matchLabels?: Labels;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}
interface PortProtocol {
  port: string;
  protocol?: string;
}
interface CnpRule {
  fromEndpoints?: Selector[];
  toEndpoints?: Selector[];
  fromEntities?: string[];
  toEntities?: string[];
  fromCIDR?: string[];
  toCIDR?: string[];
  fromCIDRSet?: { cidr: string; except?: string[] }[];
  toCIDRSet?: { cidr: string; except?: string[] }[];
  toFQDNs?: { matchName?: string; matchPattern?: string }[];
  toPorts?: { ports?: PortProtocol[]; rules?: { http?: HttpRule[] } }[];
}
interface CnpSpec {
  endpointSelector?: Selector;
  ingress?: CnpRule[];
  egress?: CnpRule[];
}
interface Policy {
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: CnpSpec;
  specs?: CnpSpec[];
}
interface Probe {
  id: string;
  from: string;
  to: string;
  port: number;
  protocol: string;
  http?: { method: string; path: string; host?: string; headers?: Record<string, string> };
}
interface Expect {
  probe: string;
  result: string;
  upstreamSaw?: { headers?: Record<string, string> };
}
interface Case {
  id: string;
  labelChanges?: { pods?: Record<string, Labels> };
  policies: Policy[];
  probes: Probe[];
  expect: Expect[];
}
interface Topology {
  namespaces: { name: string; labels: Labels }[];
  pods: {
    namespace: string;
    name: string;
    labels: Labels;
    containers: { port: number; portName?: string }[];
  }[];
  externals: { name: string; ip: string; dnsNames: string[] }[];
}

const l7Dir = join(conformanceDir, 'l7');
const topology = JSON.parse(readFileSync(join(l7Dir, 'topology.json'), 'utf8')) as Topology;
const cases = readdirSync(join(l7Dir, 'cases'))
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => JSON.parse(readFileSync(join(l7Dir, 'cases', f), 'utf8')) as Case);

type Peer =
  | { kind: 'pod'; ns: string; name: string; labels: Labels; ports: Map<string, number> }
  | { kind: 'external'; ip: string; dnsNames: string[] };

function peerOf(c: Case, ref: string): Peer {
  const [ns, name] = ref.split('/') as [string, string];
  if (ns === 'world') {
    const e = topology.externals.find((x) => x.name === ref);
    assert.ok(e, `case ${c.id}: unknown external ${ref}`);
    return { kind: 'external', ip: e.ip, dnsNames: e.dnsNames };
  }
  const pod = topology.pods.find((p) => p.namespace === ns && p.name === name);
  assert.ok(pod, `case ${c.id}: unknown pod ${ref}`);
  const nsLabels = topology.namespaces.find((n) => n.name === ns)?.labels ?? {};
  const labels: Labels = {
    ...(c.labelChanges?.pods?.[ref] ?? pod.labels),
    'io.kubernetes.pod.namespace': ns,
    'io.cilium.k8s.policy.cluster': 'default',
    'io.cilium.k8s.policy.serviceaccount': 'default',
  };
  for (const [k, v] of Object.entries(nsLabels)) labels[`io.cilium.k8s.namespace.labels.${k}`] = v;
  const ports = new Map<string, number>();
  for (const ct of pod.containers) if (ct.portName) ports.set(ct.portName, ct.port);
  return { kind: 'pod', ns, name, labels, ports };
}

const bare = (k: string) => k.replace(/^(k8s|any):/, '');

function selects(sel: Selector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[bare(k)] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const v = labels[bare(e.key)];
    const ok =
      e.operator === 'In'
        ? v !== undefined && (e.values ?? []).includes(v)
        : e.operator === 'NotIn'
          ? v === undefined || !(e.values ?? []).includes(v)
          : e.operator === 'Exists'
            ? v !== undefined
            : e.operator === 'DoesNotExist'
              ? v === undefined
              : assert.fail(`operator ${e.operator}`);
    if (!ok) return false;
  }
  return true;
}

const namesNamespace = (sel: Selector) =>
  [...Object.keys(sel.matchLabels ?? {}), ...(sel.matchExpressions ?? []).map((e) => e.key)].some(
    (k) => bare(k) === 'io.kubernetes.pod.namespace',
  );

/** A CNP selector of peers: namespace-scoped to the policy unless it names a namespace. */
function selectsPeer(sel: Selector, peer: Peer, policyNs: string | undefined): boolean {
  if (peer.kind !== 'pod') return false;
  if (policyNs !== undefined && !namesNamespace(sel) && peer.ns !== policyNs) return false;
  return selects(sel, peer.labels);
}

function ip4(s: string): number {
  return s.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}
function inCidr(ip: string, cidr: string): boolean {
  const [net, len] = cidr.split('/') as [string, string];
  const bits = Number(len);
  const size = 2 ** (32 - bits);
  return Math.floor(ip4(ip) / size) === Math.floor(ip4(net) / size);
}

/** toFQDNs: matchName exact; matchPattern `*` = all, `**.` = one or more labels, other `*` inside one label. */
function fqdnMatches(sel: { matchName?: string; matchPattern?: string }, name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  if (sel.matchName !== undefined) return sel.matchName.toLowerCase().replace(/\.$/, '') === n;
  const p = (sel.matchPattern ?? '').toLowerCase().replace(/\.$/, '');
  if (p === '*') return true;
  let rest = p;
  let prefix = '';
  if (rest.startsWith('**.')) {
    prefix = '([-a-z0-9_]+\\.)+';
    rest = rest.slice(3);
  }
  const body = rest
    .split('*')
    .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('[-a-z0-9_]*');
  return new RegExp(`^${prefix}${body}$`).test(n);
}

function peerMatches(
  rule: CnpRule,
  dir: 'ingress' | 'egress',
  peer: Peer,
  policyNs: string | undefined,
): boolean {
  const eps = dir === 'ingress' ? rule.fromEndpoints : rule.toEndpoints;
  const ents = dir === 'ingress' ? rule.fromEntities : rule.toEntities;
  const cidrs = dir === 'ingress' ? rule.fromCIDR : rule.toCIDR;
  const cidrSets = dir === 'ingress' ? rule.fromCIDRSet : rule.toCIDRSet;
  const fqdns = dir === 'egress' ? rule.toFQDNs : undefined;
  if (!eps && !ents && !cidrs && !cidrSets && !fqdns) return true;
  if (eps?.some((s) => selectsPeer(s, peer, policyNs))) return true;
  if (
    ents?.some(
      (e) =>
        e === 'all' || (e === 'world' ? peer.kind === 'external' : e === 'cluster' && peer.kind === 'pod'),
    )
  )
    return true;
  if (peer.kind === 'external') {
    if (cidrs?.some((c) => inCidr(peer.ip, c.includes('/') ? c : `${c}/32`))) return true;
    if (cidrSets?.some((s) => inCidr(peer.ip, s.cidr) && !(s.except ?? []).some((x) => inCidr(peer.ip, x))))
      return true;
    if (fqdns?.some((f) => peer.dnsNames.some((n) => fqdnMatches(f, n)))) return true;
  }
  return false;
}

/** The L7 rule sets of `pod`'s `dir` policy that apply to `peer` on `port` (dest = the pod owning named ports). */
function ruleSets(
  c: Case,
  dir: 'ingress' | 'egress',
  pod: Peer,
  peer: Peer,
  port: number,
  dest: Peer,
): L7RuleSet[] {
  if (pod.kind !== 'pod') return [];
  const out: L7RuleSet[] = [];
  for (const pol of c.policies) {
    if (pol.kind !== 'CiliumNetworkPolicy' && pol.kind !== 'CiliumClusterwideNetworkPolicy') continue;
    const ns = pol.kind === 'CiliumNetworkPolicy' ? (pol.metadata.namespace ?? 'default') : undefined;
    if (ns !== undefined && pod.ns !== ns) continue;
    for (const spec of pol.specs ?? (pol.spec ? [pol.spec] : [])) {
      if (!spec.endpointSelector || !selects(spec.endpointSelector, pod.labels)) continue;
      for (const rule of spec[dir] ?? []) {
        if (!peerMatches(rule, dir, peer, ns)) continue;
        const origin = {
          kind: pol.kind,
          namespace: ns,
          name: pol.metadata.name,
          cookie: 1,
        } as L7RuleSet['origin'];
        if (!rule.toPorts) {
          out.push({ origin });
          continue;
        }
        for (const tp of rule.toPorts) {
          const hit = (tp.ports ?? [{ port: '0' }]).some((pp) => {
            if (pp.protocol && pp.protocol !== 'TCP' && pp.protocol !== 'ANY') return false;
            if (pp.port === '0' || pp.port === '') return true;
            const n = /^\d+$/.test(pp.port)
              ? Number(pp.port)
              : dest.kind === 'pod'
                ? dest.ports.get(pp.port)
                : undefined;
            return n === port;
          });
          if (hit) out.push(tp.rules?.http ? { http: tp.rules.http, origin } : { origin });
        }
      }
    }
  }
  return out;
}

const asPort = (sets: L7RuleSet[], port: number): PortL7Policy => ({
  protocol: 'TCP',
  port,
  parser: 'http',
  proxyPort: 15001,
  ruleSets: sets,
});

describe('matcher on conformance/l7 HTTP probes', () => {
  let judged = 0;
  for (const c of cases) {
    const probes = c.probes.filter((p) => p.http && p.protocol === 'TCP');
    if (probes.length === 0) continue;
    it(`case ${c.id}`, () => {
      for (const p of probes) {
        const exp = c.expect.find((e) => e.probe === p.id);
        assert.ok(exp, `case ${c.id} ${p.id}: no expectation`);
        if (exp.result !== 'allowed' && exp.result !== 'l7-denied') continue;
        const src = peerOf(c, p.from);
        const dst = peerOf(c, p.to);
        const http = p.http!;
        const host =
          http.host ?? (dst.kind === 'external' ? dst.ip : '10.0.0.1') + (p.port === 80 ? '' : `:${p.port}`);
        let headers: readonly string[] = Object.entries(http.headers ?? {}).flat();
        let allowed = true;
        let judgedHere = 0;
        for (const [dir, pod, peer] of [
          ['egress', src, dst],
          ['ingress', dst, src],
        ] as const) {
          const sets = ruleSets(c, dir, pod, peer, p.port, dst);
          if (!sets.some((s) => s.http)) continue;
          const v = judgeHttp(asPort(sets, p.port), 1000, {
            method: http.method,
            path: http.path,
            host,
            headers,
          });
          judgedHere++;
          if (!v.allowed) {
            allowed = false;
            break;
          }
          headers = applyHeaderOps(headers, v.ops);
        }
        const what = `case ${c.id} ${p.id} ${p.from} -> ${p.to}:${p.port} ${http.method} ${http.path}`;
        if (exp.result === 'l7-denied')
          assert.ok(judgedHere > 0, `${what}: no L7 rule set derived for an l7-denied probe`);
        if (judgedHere === 0) continue;
        judged++;
        assert.equal(allowed, exp.result === 'allowed', what);
        for (const [k, v] of Object.entries(exp.upstreamSaw?.headers ?? {})) {
          const seen = headers.filter(
            (_, i) => i % 2 === 1 && headers[i - 1]!.toLowerCase() === k.toLowerCase(),
          );
          assert.deepEqual(seen, [v], `${what}: upstream header ${k}`);
        }
      }
    });
  }
  it('judged enough probes to mean something', () => {
    assert.ok(judged >= 80, `only ${judged} probes judged`);
  });
});
