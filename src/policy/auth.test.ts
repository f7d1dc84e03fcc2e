// `authentication: {mode: required}` in CiliumNetworkPolicy rules: validation, and the auth flag
// the engine puts on the entries of those rules (what the datapath's weir_auth check reads).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ValidationError } from '../shared/errors.js';
import { validatePolicy } from './api/index.js';
import { computePolicy, type EngineInput } from './engine.js';
import { DIR_EGRESS, DIR_INGRESS, PROTO_TCP } from './entry.js';
import { lookup } from './lookup.js';
import { trace } from './trace.js';

const loc = { file: 'auth.yaml', object: 'CiliumNetworkPolicy x/p' };
const cnp = (name: string, spec: unknown) =>
  validatePolicy(
    { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec },
    loc,
  );

function problem(spec: unknown): { code: string; field?: string; file?: string; message: string } {
  try {
    cnp('p', spec);
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    const p = err.problems[0];
    assert.ok(p);
    return { code: p.code, message: p.message, ...p.location };
  }
  assert.fail('expected a validation error');
}

const world = (policies: ReturnType<typeof cnp>[]): EngineInput => ({
  namespaces: [{ name: 'x', labels: {} }],
  endpoints: [
    { id: 1, namespace: 'x', pod: 'a', labels: { app: 'a' }, ips: ['10.244.0.2'], namedPorts: [] },
    { id: 2, namespace: 'x', pod: 'b', labels: { app: 'b' }, ips: ['10.244.0.3'], namedPorts: [] },
  ],
  nodeIPs: ['10.244.0.1'],
  policies,
});

test('authentication.mode: required and disabled are accepted in ingress and egress rules', () => {
  const p = cnp('p', {
    endpointSelector: { matchLabels: { app: 'b' } },
    ingress: [{ fromEndpoints: [{ matchLabels: { app: 'a' } }], authentication: { mode: 'required' } }],
    egress: [{ toEndpoints: [{}], authentication: { mode: 'disabled' } }],
  });
  assert.equal(p.kind, 'CiliumNetworkPolicy');
  if (p.kind !== 'CiliumNetworkPolicy') return;
  assert.equal(p.rules[0]?.ingress[0]?.auth, 'required');
  assert.equal(p.rules[0]?.egress[0]?.auth, undefined);
});

test('a bad mode, a missing mode, an unknown field and authentication on a deny rule are refused by field', () => {
  const sel = { matchLabels: { app: 'b' } };
  let e = problem({
    endpointSelector: sel,
    ingress: [{ fromEndpoints: [{}], authentication: { mode: 'always' } }],
  });
  assert.equal(e.code, 'ERR_POLICY_RULE_INVALID');
  assert.equal(e.field, 'spec.ingress[0].authentication.mode');
  assert.equal(e.file, 'auth.yaml');
  assert.match(e.message, /'always' is not 'required' or 'disabled'/);
  e = problem({ endpointSelector: sel, egress: [{ toEndpoints: [{}], authentication: {} }] });
  assert.equal(e.field, 'spec.egress[0].authentication.mode');
  e = problem({
    endpointSelector: sel,
    egress: [{ toEndpoints: [{}], authentication: { mode: 'required', x: 1 } }],
  });
  assert.match(e.field ?? '', /^spec\.egress\[0\]\.authentication/);
  e = problem({
    endpointSelector: sel,
    ingressDeny: [{ fromEndpoints: [{}], authentication: { mode: 'required' } }],
  });
  assert.match(e.field ?? '', /^spec\.ingressDeny\[0\]/);
});

test('entries of a rule with authentication required carry the auth flag; others do not', () => {
  const out = computePolicy(
    world([
      cnp('auth', {
        endpointSelector: { matchLabels: { app: 'b' } },
        ingress: [
          {
            fromEndpoints: [{ matchLabels: { app: 'a' } }],
            toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }],
            authentication: { mode: 'required' },
          },
          {
            fromEndpoints: [{ matchLabels: { app: 'a' } }],
            toPorts: [{ ports: [{ port: '81', protocol: 'TCP' }] }],
          },
        ],
      }),
    ]),
  );
  const b = out.endpoints.get(2);
  const a = out.endpoints.get(1);
  assert.ok(a && b);
  const r80 = lookup(b.entries, a.identity, DIR_INGRESS, PROTO_TCP, 80);
  assert.equal(r80.verdict, 'allow');
  assert.equal(r80.entry?.auth, true);
  const ref = out.cookies.get(r80.entry?.cookie ?? -1);
  assert.equal(ref?.name, 'auth');
  assert.equal(ref?.ruleIndex, 0);
  const r81 = lookup(b.entries, a.identity, DIR_INGRESS, PROTO_TCP, 81);
  assert.equal(r81.verdict, 'allow');
  assert.equal(r81.entry?.auth, undefined);
  // policy trace says so.
  const input = world([]); // trace reads pods and namespaces from the input, entries from the output
  const t = trace({ input, output: out }, { from: 'x/a', to: 'x/b', port: 80, protocol: 'TCP' });
  assert.equal(t.ingress.verdict, 'allowed');
  assert.equal(t.ingress.authRequired, true);
  assert.equal(
    trace({ input, output: out }, { from: 'x/a', to: 'x/b', port: 81, protocol: 'TCP' }).ingress.authRequired,
    undefined,
  );
  // The egress side of a is not enforced: nothing requires authentication there.
  assert.equal(
    a.entries.some((e) => e.auth),
    false,
  );
});

test('two allows of one key: authentication required by either is required', () => {
  const rule = (auth: boolean) => ({
    toEndpoints: [{ matchLabels: { app: 'b' } }],
    toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }],
    ...(auth ? { authentication: { mode: 'required' } } : {}),
  });
  for (const order of [
    [false, true],
    [true, false],
  ]) {
    const out = computePolicy(
      world([
        cnp('p1', { endpointSelector: { matchLabels: { app: 'a' } }, egress: [rule(order[0] ?? false)] }),
        cnp('p2', { endpointSelector: { matchLabels: { app: 'a' } }, egress: [rule(order[1] ?? false)] }),
      ]),
    );
    const a = out.endpoints.get(1);
    const b = out.endpoints.get(2);
    assert.ok(a && b);
    assert.equal(lookup(a.entries, b.identity, DIR_EGRESS, PROTO_TCP, 80).entry?.auth, true, String(order));
  }
});

test('a more specific allow inside an allow that requires authentication requires it too', () => {
  const out = computePolicy(
    world([
      cnp('broad', {
        endpointSelector: { matchLabels: { app: 'a' } },
        egress: [{ toEndpoints: [{ matchLabels: { app: 'b' } }], authentication: { mode: 'required' } }],
      }),
      cnp('narrow', {
        endpointSelector: { matchLabels: { app: 'a' } },
        egress: [{ toEndpoints: [{ matchLabels: { app: 'b' } }], toPorts: [{ ports: [{ port: '80' }] }] }],
      }),
    ]),
  );
  const a = out.endpoints.get(1);
  const b = out.endpoints.get(2);
  assert.ok(a && b);
  for (const port of [80, 443])
    assert.equal(
      lookup(a.entries, b.identity, DIR_EGRESS, PROTO_TCP, port).entry?.auth,
      true,
      `port ${port}`,
    );
});
