import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ValidationError } from '../../shared/errors.js';
import { validatePolicy } from './index.js';

const loc = { file: 'p.yaml', object: 'CiliumNetworkPolicy x/p' };
const cnp = (spec: unknown, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'p', namespace: 'x', annotations: { a: 'b' } },
  spec,
  ...extra,
});

function problem(obj: unknown): {
  code: string;
  field?: string;
  file?: string;
  object?: string;
  message: string;
} {
  try {
    validatePolicy(obj, loc);
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    const p = err.problems[0];
    assert.ok(p);
    return { code: p.code, message: p.message, ...p.location };
  }
  assert.fail('expected a validation error');
}

test('a valid CNP with status and annotations is accepted and normalised', () => {
  const p = validatePolicy(
    cnp(
      {
        endpointSelector: { matchLabels: { 'k8s:app': 'web' } },
        ingress: [
          {
            fromEndpoints: [{ matchLabels: { role: 'fe' } }],
            toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }, { port: 81 }] }],
          },
        ],
        egressDeny: [{ toCIDRSet: [{ cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] }] }],
        enableDefaultDeny: { egress: false },
      },
      { status: { something: 1 } },
    ),
    loc,
  );
  assert.equal(p.kind, 'CiliumNetworkPolicy');
  if (p.kind !== 'CiliumNetworkPolicy') return;
  const r = p.rules[0];
  assert.deepEqual(r?.ingress[0]?.ports, [
    { protocol: 'TCP', port: 80 },
    { protocol: 'ANY', port: 81 },
  ]);
  assert.deepEqual(r?.enableDefaultDeny, { ingress: true, egress: false });
});

test('unknown field: code, file, object and field path', () => {
  const p = problem(cnp({ endpointSelector: {}, ingress: [{ fromEndpoint: [{}] }] }));
  assert.equal(p.code, 'ERR_POLICY_FIELD_UNKNOWN');
  assert.equal(p.file, 'p.yaml');
  assert.equal(p.object, 'CiliumNetworkPolicy x/p');
  assert.equal(p.field, 'spec.ingress[0].fromEndpoint');
});

test('real but unsupported fields are rejected by name, never ignored', () => {
  // toFQDNs: egress allows only (deny rules do not support it, as in Cilium).
  const fqdnDeny = problem(cnp({ endpointSelector: {}, egressDeny: [{ toFQDNs: [{ matchName: 'a.b' }] }] }));
  assert.equal(fqdnDeny.field, 'spec.egressDeny[0].toFQDNs');
  assert.equal(fqdnDeny.code, 'ERR_POLICY_FIELD_UNSUPPORTED');
  const mixed = problem(
    cnp({ endpointSelector: {}, egress: [{ toFQDNs: [{ matchName: 'a.b' }], toEntities: ['world'] }] }),
  );
  assert.equal(mixed.code, 'ERR_POLICY_RULE_INVALID');
  const badName = problem(cnp({ endpointSelector: {}, egress: [{ toFQDNs: [{ matchName: 'a b' }] }] }));
  assert.equal(badName.field, 'spec.egress[0].toFQDNs[0].matchName');
  const l7 = problem(
    cnp({
      endpointSelector: {},
      ingress: [{ toPorts: [{ ports: [{ port: '53' }], rules: { dns: [{ matchName: 'a.b' }] } }] }],
    }),
  );
  assert.equal(l7.code, 'ERR_POLICY_L7_UNSUPPORTED', 'DNS rules are egress only');
  assert.equal(l7.field, 'spec.ingress[0].toPorts[0].rules.dns');
  const ns = problem({
    ...cnp(undefined),
    kind: 'CiliumClusterwideNetworkPolicy',
    spec: { nodeSelector: {} },
  });
  assert.equal(ns.code, 'ERR_POLICY_FIELD_UNSUPPORTED');
  assert.equal(ns.field, 'spec.nodeSelector');
});

test('invalid selector operator', () => {
  const p = problem(
    cnp({
      endpointSelector: { matchExpressions: [{ key: 'a', operator: 'Equals', values: ['x'] }] },
      ingress: [],
    }),
  );
  assert.equal(p.code, 'ERR_POLICY_INVALID_SELECTOR');
  assert.equal(p.field, 'spec.endpointSelector.matchExpressions[0].operator');
  assert.equal(
    problem(cnp({ endpointSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } })).code,
    'ERR_POLICY_INVALID_SELECTOR',
  );
});

test('bad CIDR and port out of range', () => {
  const c = problem(cnp({ endpointSelector: {}, egress: [{ toCIDR: ['10.0.0.0/33'] }] }));
  assert.equal(c.code, 'ERR_POLICY_INVALID_CIDR');
  assert.equal(c.field, 'spec.egress[0].toCIDR[0]');
  const p = problem(cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: '70000' }] }] }] }));
  assert.equal(p.code, 'ERR_POLICY_INVALID_PORT');
  assert.equal(p.field, 'spec.ingress[0].toPorts[0].ports[0].port');
  const e = problem(
    cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: '80', endPort: 79 }] }] }] }),
  );
  assert.equal(e.field, 'spec.ingress[0].toPorts[0].ports[0].endPort');
});

test('L3 members cannot be combined in one rule; entities are checked', () => {
  assert.equal(
    problem(cnp({ endpointSelector: {}, ingress: [{ fromEndpoints: [{}], fromCIDR: ['1.2.3.0/24'] }] })).code,
    'ERR_POLICY_RULE_INVALID',
  );
  assert.equal(
    problem(cnp({ endpointSelector: {}, ingress: [{ fromEntities: ['everyone'] }] })).code,
    'ERR_POLICY_INVALID_ENTITY',
  );
});

test('NetworkPolicy: defaults (policyTypes, protocol), ipBlock checks, peer exclusivity', () => {
  const np = (spec: unknown) => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'n', namespace: 'x' },
    spec,
  });
  const p = validatePolicy(np({ podSelector: {}, egress: [{ ports: [{ port: 53 }] }] }), loc);
  assert.ok(p.kind === 'NetworkPolicy');
  assert.deepEqual(p.policyTypes, ['Ingress', 'Egress']);
  assert.deepEqual(p.egress[0]?.ports, [{ protocol: 'TCP', port: 53 }]);
  const q = validatePolicy(np({ podSelector: {} }), loc);
  assert.ok(q.kind === 'NetworkPolicy');
  assert.deepEqual(q.policyTypes, ['Ingress']);
  assert.equal(
    problem(
      np({
        podSelector: {},
        ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['11.0.0.0/16'] } }] }],
      }),
    ).code,
    'ERR_POLICY_INVALID_CIDR',
  );
  const mix = problem(
    np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }] }),
  );
  assert.equal(mix.field, 'spec.ingress[0].from[0].ipBlock');
  assert.equal(
    problem(np({ podSelector: {}, ingress: [{ ports: [{ port: 0 }] }] })).code,
    'ERR_POLICY_INVALID_PORT',
  );
  assert.equal(
    problem(np({ podSelector: {}, ingress: [{ ports: [{ protocol: 'ANY' }] }] })).code,
    'ERR_POLICY_INVALID_PROTOCOL',
  );
  assert.equal(problem(np({ podSelector: {}, policyTypes: ['Sideways'] })).field, 'spec.policyTypes[0]');
});
