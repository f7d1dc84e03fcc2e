// verdictDiff on small hand-made inputs: rules named before and after, entities as peers, pods
// sharing identities, a fail-closed endpoint. (The conformance corpus drives it at scale:
// src/conformance/verdict-diff.test.ts.)
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validatePolicy } from './api/index.js';
import type { Policy } from './api/types.js';
import { computePolicy, type EngineInput } from './engine.js';
import { verdictDiff, type DiffPod } from './verdict-diff.js';

const cnp = (name: string, spec: Record<string, unknown>): Policy =>
  validatePolicy(
    { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'app' }, spec },
    { file: 'test', object: name },
  );

const input = (policies: Policy[], config: EngineInput['config'] = {}): EngineInput => ({
  namespaces: [{ name: 'app', labels: {} }],
  endpoints: [
    { id: 1, namespace: 'app', pod: 'client', labels: { role: 'client' }, ips: ['10.0.0.2'], namedPorts: [] },
    { id: 2, namespace: 'app', pod: 'server', labels: { role: 'server' }, ips: ['10.0.0.3'], namedPorts: [] },
    {
      id: 3,
      namespace: 'app',
      pod: 'server2',
      labels: { role: 'server' },
      ips: ['10.0.0.4'],
      namedPorts: [],
    },
  ],
  nodeIPs: ['10.0.0.1'],
  policies,
  config,
});
const pods: DiffPod[] = [
  { name: 'app/client', endpointId: 1, ports: [] },
  { name: 'app/server', endpointId: 2, ports: [{ port: 80, protocol: 'TCP' }] },
  {
    name: 'app/server2',
    endpointId: 3,
    ports: [
      { port: 80, protocol: 'TCP' },
      { port: 80, protocol: 'TCP' },
    ],
  },
];
const serverIngress = (from: Record<string, unknown>) =>
  cnp('server-in', {
    endpointSelector: { matchLabels: { role: 'server' } },
    ingress: [{ ...from, toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }],
  });

describe('verdictDiff', () => {
  it('lists the connections that change, with the deciding rules; duplicates ports once', () => {
    const before = computePolicy(input([]));
    const after = computePolicy(
      input([serverIngress({ fromEndpoints: [{ matchLabels: { role: 'client' } }] })]),
    );
    const d = verdictDiff({ pods, before, after });
    // server <-> server2 lose TCP/80 (both enforce ingress now); client keeps it.
    assert.deepEqual(
      d.changes.map((c) => [
        c.from,
        c.to,
        `${c.port}/${c.protocol}`,
        c.before,
        c.after,
        c.beforeRule,
        c.afterRule,
      ]),
      [
        ['app/server', 'app/server2', '80/TCP', 'allowed', 'denied', 'not enforced', 'ingress: default deny'],
        ['app/server2', 'app/server', '80/TCP', 'allowed', 'denied', 'not enforced', 'ingress: default deny'],
      ],
    );
    // client -> server, server2 and the servers to each other (client declares no port): 2 unchanged.
    assert.equal(d.unchanged, 2);
    const back = verdictDiff({ pods, before: after, after: before });
    assert.deepEqual(
      back.changes.map((c) => [c.before, c.after]),
      [
        ['denied', 'allowed'],
        ['denied', 'allowed'],
      ],
    );
    // An allowed side names its rule.
    const deny = computePolicy(
      input([
        serverIngress({ fromEndpoints: [{ matchLabels: { role: 'client' } }] }),
        cnp('deny-client', {
          endpointSelector: { matchLabels: { role: 'server' } },
          ingressDeny: [{ fromEndpoints: [{ matchLabels: { role: 'client' } }] }],
        }),
      ]),
    );
    const d2 = verdictDiff({ pods, before: after, after: deny });
    assert.deepEqual(
      d2.changes.map((c) => [c.from, c.to, c.beforeRule, c.afterRule]),
      [
        [
          'app/client',
          'app/server',
          'CiliumNetworkPolicy app/server-in ingress[0]',
          'CiliumNetworkPolicy app/deny-client ingressDeny[0]',
        ],
        [
          'app/client',
          'app/server2',
          'CiliumNetworkPolicy app/server-in ingress[0]',
          'CiliumNetworkPolicy app/deny-client ingressDeny[0]',
        ],
      ],
    );
  });

  it('with entities: world and host as peers (the node may always reach its pods)', () => {
    const before = computePolicy(
      input([serverIngress({ fromEndpoints: [{ matchLabels: { role: 'client' } }] })]),
    );
    const after = computePolicy(
      input([
        serverIngress({ fromEndpoints: [{ matchLabels: { role: 'client' } }] }),
        cnp('world-in', {
          endpointSelector: { matchLabels: { role: 'server' } },
          ingress: [{ fromEntities: ['world'] }],
        }),
      ]),
    );
    assert.deepEqual(verdictDiff({ pods, before, after }).changes, []);
    const d = verdictDiff({ pods, before, after, entities: true });
    assert.deepEqual(
      d.changes.map((c) => [c.from, c.to, c.before, c.after]),
      [
        ['world', 'app/server', 'denied', 'allowed'],
        ['world', 'app/server2', 'denied', 'allowed'],
      ],
    );
  });

  it('a fail-closed endpoint denies everything, and says so', () => {
    const before = computePolicy(input([]));
    const after = computePolicy(input([serverIngress({ fromEndpoints: [{}] })], { policyMapMax: 1 }));
    const d = verdictDiff({ pods, before, after });
    assert.ok(d.changes.length >= 3);
    assert.ok(d.changes.every((c) => c.after === 'denied' && /fail closed/.test(c.afterRule)));
  });
});
