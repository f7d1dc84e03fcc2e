// networking.k8s.io/v1 NetworkPolicy: validation plus the API server's defaulting
// (protocol TCP; policyTypes = Ingress, plus Egress when egress rules exist).
import { Checker, type PolicyLocation } from './check.js';
import { parseCIDRMatch, parseMetadata, parsePort } from './common.js';
import { parseSelector, type SelectorOptions } from './selector.js';
import type { NetworkPolicy, NetworkPolicyPeer, NetworkPolicyRule } from './types.js';

const k8sSelector: SelectorOptions = { allowSource: false, defaultSource: 'k8s' };

export function validateNetworkPolicy(obj: unknown, loc: PolicyLocation): NetworkPolicy {
  const c = new Checker(loc);
  const top = c.object(obj, [], ['apiVersion', 'kind', 'metadata', 'spec'], { ignored: ['status'] });
  if (top && top.apiVersion !== 'networking.k8s.io/v1')
    c.fail(
      'ERR_POLICY_FIELD_INVALID',
      ['apiVersion'],
      `expected networking.k8s.io/v1, got '${String(top.apiVersion)}'`,
    );
  if (top && top.kind !== 'NetworkPolicy')
    c.fail('ERR_POLICY_FIELD_INVALID', ['kind'], `expected NetworkPolicy, got '${String(top.kind)}'`);
  const { name, namespace } = parseMetadata(c, top?.metadata, true);
  const spec = c.object(top?.spec ?? {}, ['spec'], ['podSelector', 'policyTypes', 'ingress', 'egress'], {
    what: 'spec',
  });

  const podSelector = parseSelector(c, spec?.podSelector, ['spec', 'podSelector'], k8sSelector);
  const ingress = parseRules(c, spec?.ingress, 'ingress', 'from');
  const egress = parseRules(c, spec?.egress, 'egress', 'to');

  let policyTypes: ('Ingress' | 'Egress')[] = egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
  const pt = c.array(spec?.policyTypes, ['spec', 'policyTypes']);
  // An empty list is defaulted like an absent one (API server behaviour).
  if (pt && pt.length > 0) {
    policyTypes = [];
    pt.forEach((t, i) => {
      if (t === 'Ingress' || t === 'Egress') {
        if (!policyTypes.includes(t)) policyTypes.push(t);
      } else
        c.fail(
          'ERR_POLICY_FIELD_INVALID',
          ['spec', 'policyTypes', i],
          `invalid policy type '${String(t)}' (Ingress or Egress)`,
        );
    });
  }
  c.done();
  return {
    kind: 'NetworkPolicy',
    namespace: namespace ?? 'default',
    name,
    podSelector: podSelector ?? { requirements: [] },
    policyTypes,
    ingress,
    egress,
  };
}

function parseRules(
  c: Checker,
  value: unknown,
  section: 'ingress' | 'egress',
  peerField: 'from' | 'to',
): NetworkPolicyRule[] {
  const rules: NetworkPolicyRule[] = [];
  (c.array(value, ['spec', section]) ?? []).forEach((r, i) => {
    const path = ['spec', section, i];
    const obj = c.object(r ?? {}, path, [peerField, 'ports'], { what: `an ${section} rule` });
    if (!obj) return;
    const ports = (c.array(obj.ports, [...path, 'ports']) ?? []).flatMap(
      (p, pi) => parsePort(c, p, [...path, 'ports', pi], 'k8s') ?? [],
    );
    const rawPeers = c.array(obj[peerField], [...path, peerField]);
    const peers = rawPeers?.flatMap((p, pi) => parsePeer(c, p, [...path, peerField, pi]) ?? []);
    // `from: []` and no `from` both mean "every source".
    rules.push(peers && rawPeers && rawPeers.length > 0 ? { peers, ports } : { ports });
  });
  return rules;
}

function parsePeer(c: Checker, value: unknown, path: (string | number)[]): NetworkPolicyPeer | undefined {
  const obj = c.object(value, path, ['podSelector', 'namespaceSelector', 'ipBlock'], { what: 'a peer' });
  if (!obj) return undefined;
  const has = (k: string) => obj[k] !== undefined && obj[k] !== null;
  if (!has('podSelector') && !has('namespaceSelector') && !has('ipBlock')) {
    c.fail('ERR_POLICY_FIELD_MISSING', path, 'a peer needs podSelector, namespaceSelector or ipBlock');
    return undefined;
  }
  if (has('ipBlock')) {
    if (has('podSelector') || has('namespaceSelector')) {
      c.fail(
        'ERR_POLICY_FIELD_INVALID',
        [...path, 'ipBlock'],
        'ipBlock cannot be combined with podSelector or namespaceSelector',
      );
      return undefined;
    }
    const ib = c.object(obj.ipBlock, [...path, 'ipBlock'], ['cidr', 'except'], { what: 'ipBlock' });
    const m =
      ib && parseCIDRMatch(c, ib.cidr, ib.except, [...path, 'ipBlock'], 'cidr', { allowBareIP: false });
    return m ? { ipBlock: m } : undefined;
  }
  const peer: NetworkPolicyPeer = {};
  if (has('podSelector')) {
    const s = parseSelector(c, obj.podSelector, [...path, 'podSelector'], k8sSelector);
    if (!s) return undefined;
    peer.podSelector = s;
  }
  if (has('namespaceSelector')) {
    const s = parseSelector(c, obj.namespaceSelector, [...path, 'namespaceSelector'], k8sSelector);
    if (!s) return undefined;
    peer.namespaceSelector = s;
  }
  return peer;
}
