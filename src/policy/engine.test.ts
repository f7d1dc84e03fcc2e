import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validatePolicy } from './api/index.js';
import { diff } from './diff.js';
import { computePolicy, SelectorCache, type EngineInput } from './engine.js';
import { IdentityAllocator } from '../identity/allocator.js';
import {
  DIR_EGRESS,
  DIR_INGRESS,
  l4Prefixes,
  makeEntry,
  PROTO_TCP,
  PROTO_UDP,
  type PolicyMapEntry,
} from './entry.js';
import { lookup } from './lookup.js';
import { resolvePrecedence } from './engine.js';
import { trace } from './trace.js';

const loc = { file: 't.yaml', object: 'test' };
const cnp = (name: string, spec: unknown) =>
  validatePolicy(
    { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec },
    loc,
  );

function world(policies: ReturnType<typeof cnp>[], extra: Partial<EngineInput> = {}): EngineInput {
  return {
    namespaces: [{ name: 'x', labels: {} }],
    endpoints: [
      {
        id: 1,
        namespace: 'x',
        pod: 'a',
        labels: { app: 'a' },
        ips: ['10.244.0.2'],
        namedPorts: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      },
      {
        id: 2,
        namespace: 'x',
        pod: 'b',
        labels: { app: 'b' },
        ips: ['10.244.0.3'],
        namedPorts: [{ name: 'http', port: 9090, protocol: 'TCP' }],
      },
    ],
    nodeIPs: ['10.244.0.1'],
    policies,
    ...extra,
  };
}

test('L4 prefixes: any protocol, any port, exact ports and ranges', () => {
  assert.deepEqual(l4Prefixes(0, 0), [{ protocol: 0, port: 0, prefixLen: 40 }]);
  assert.deepEqual(l4Prefixes(6, 0), [{ protocol: 6, port: 0, prefixLen: 48 }]);
  assert.deepEqual(
    l4Prefixes(0, 53).map((p) => p.protocol),
    [6, 17, 132],
  );
});

test('lookup: any deny wins, else the longer L4 prefix, tie to the exact identity', () => {
  const e = (id: number, proto: number, port: number, len: number, deny: boolean, cookie: number) =>
    makeEntry(id, DIR_INGRESS, { protocol: proto, port, prefixLen: len }, deny, cookie);
  const entries: PolicyMapEntry[] = [
    e(300, 0, 0, 40, false, 1),
    e(0, PROTO_TCP, 80, 64, false, 2),
    e(0, PROTO_TCP, 443, 64, true, 3),
  ];
  assert.equal(lookup(entries, 300, DIR_INGRESS, PROTO_TCP, 80).entry?.cookie, 2);
  assert.equal(lookup(entries, 300, DIR_INGRESS, PROTO_UDP, 80).entry?.cookie, 1);
  const d = lookup(entries, 300, DIR_INGRESS, PROTO_TCP, 443);
  assert.equal(d.verdict, 'deny');
  assert.equal(d.code, 181);
  assert.equal(lookup(entries, 301, DIR_INGRESS, PROTO_UDP, 80).code, 133);
  assert.equal(lookup(entries, 300, DIR_EGRESS, PROTO_TCP, 80).verdict, 'drop');
  const tie = [e(300, PROTO_TCP, 80, 64, false, 7), e(0, PROTO_TCP, 80, 64, false, 8)];
  assert.equal(lookup(tie, 300, DIR_INGRESS, PROTO_TCP, 80).entry?.cookie, 7);
});

test('deny precedence: an allow inside a same-key deny becomes a deny; redundant entries go', () => {
  const e = (id: number, proto: number, port: number, len: number, deny: boolean, cookie: number) =>
    makeEntry(id, DIR_INGRESS, { protocol: proto, port, prefixLen: len }, deny, cookie);
  const out = resolvePrecedence([
    e(300, 0, 0, 40, true, 1),
    e(300, PROTO_TCP, 80, 64, false, 2),
    e(0, PROTO_TCP, 80, 64, false, 3),
  ]);
  // Without conversion LPM would pick the longer allow for 300:TCP/80.
  assert.equal(lookup(out, 300, DIR_INGRESS, PROTO_TCP, 80).verdict, 'deny');
  assert.equal(lookup(out, 301, DIR_INGRESS, PROTO_TCP, 80).verdict, 'allow');
  const zero = resolvePrecedence([
    e(0, PROTO_TCP, 0, 48, true, 1),
    e(0, PROTO_TCP, 80, 64, false, 2),
    e(300, PROTO_TCP, 80, 64, false, 3),
  ]);
  assert.equal(lookup(zero, 300, DIR_INGRESS, PROTO_TCP, 80).verdict, 'deny');
  assert.equal(zero.length, 1, 'allows under an identity-0 deny are dropped');
  const specific = resolvePrecedence([e(300, 0, 0, 40, false, 1), e(300, PROTO_TCP, 80, 64, true, 2)]);
  assert.equal(lookup(specific, 300, DIR_INGRESS, PROTO_TCP, 80).verdict, 'deny');
  assert.equal(lookup(specific, 300, DIR_INGRESS, PROTO_TCP, 81).verdict, 'allow');
});

test('engine: deny beats a broader allow across policies, entities and ports', () => {
  const out = computePolicy(
    world([
      cnp('allow-all', {
        endpointSelector: { matchLabels: { app: 'a' } },
        ingress: [{ fromEntities: ['all'] }],
      }),
      cnp('deny-b-80', {
        endpointSelector: { matchLabels: { app: 'a' } },
        ingressDeny: [
          {
            fromEndpoints: [{ matchLabels: { app: 'b' } }],
            toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }],
          },
        ],
      }),
    ]),
  );
  const a = out.endpoints.get(1);
  const b = out.endpoints.get(2);
  assert.ok(a && b);
  assert.equal(a.ingressEnforced, true);
  assert.equal(a.egressEnforced, false);
  assert.equal(lookup(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 80).verdict, 'deny');
  assert.equal(lookup(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 81).verdict, 'allow');
  assert.equal(lookup(a.entries, 2, DIR_INGRESS, PROTO_TCP, 80).verdict, 'allow');
  // Not enforced: one allow-all entry per direction.
  assert.deepEqual(
    b.entries.map((e) => [e.identity, e.direction, e.prefixLen, e.deny]),
    [
      [0, 1, 40, false],
      [0, 2, 40, false],
    ],
  );
});

test('engine: named ports resolve against the destination pod, per pod at egress', () => {
  const out = computePolicy(
    world([
      cnp('np', {
        endpointSelector: { matchLabels: { app: 'a' } },
        ingress: [{ toPorts: [{ ports: [{ port: 'http', protocol: 'TCP' }] }] }],
        egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: 'http' }] }] }],
      }),
    ]),
  );
  const a = out.endpoints.get(1);
  const b = out.endpoints.get(2);
  assert.ok(a && b);
  assert.equal(lookup(a.entries, 2, DIR_INGRESS, PROTO_TCP, 8080).verdict, 'allow');
  assert.equal(lookup(a.entries, 2, DIR_INGRESS, PROTO_TCP, 9090).verdict, 'drop');
  assert.equal(lookup(a.entries, b.identity, DIR_EGRESS, PROTO_TCP, 9090).verdict, 'allow');
  assert.equal(lookup(a.entries, b.identity, DIR_EGRESS, PROTO_TCP, 8080).verdict, 'drop');
});

test('engine: overflow fails closed with ERR_POLICY_MAP_OVERFLOW, never allows', () => {
  const policies = [
    cnp('many', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ toPorts: [{ ports: [{ port: '1', endPort: 65535, protocol: 'TCP' }] }] }],
    }),
  ];
  const out = computePolicy(world(policies, { config: { policyMapMax: 10 } }));
  const a = out.endpoints.get(1);
  assert.ok(a);
  assert.equal(a.error?.code, 'ERR_POLICY_MAP_OVERFLOW');
  assert.equal(a.failClosed, true);
  assert.deepEqual(a.entries, []);
  assert.equal(lookup(a.entries, 2, DIR_EGRESS, PROTO_TCP, 80).verdict, 'drop');
  assert.equal(out.endpoints.get(2)?.error, undefined);
});

test('engine: output is deterministic and ipcache maps pods, node and CIDRs', () => {
  const pols = [
    cnp('c', {
      endpointSelector: {},
      egress: [{ toCIDRSet: [{ cidr: '192.0.2.0/24', except: ['192.0.2.10/32'] }] }],
    }),
    cnp('d', { endpointSelector: {}, ingress: [{ fromEntities: ['host'] }] }),
  ];
  const o1 = computePolicy(world(pols));
  const o2 = computePolicy(world([...pols].reverse()));
  assert.deepEqual([...o1.endpoints], [...o2.endpoints]);
  assert.deepEqual(o1.ipcache, o2.ipcache);
  const ids = Object.fromEntries(o1.ipcache.map((e) => [e.prefix, e.identity]));
  assert.equal(ids['10.244.0.1/32'], 1);
  assert.equal(ids['10.244.0.2/32'], o1.endpoints.get(1)?.identity);
  assert.ok((ids['192.0.2.0/24'] ?? 0) > 1 << 24);
  assert.ok((ids['192.0.2.10/32'] ?? 0) > 1 << 24);
  const a = o1.endpoints.get(1);
  assert.ok(a);
  assert.equal(lookup(a.entries, ids['192.0.2.0/24'] ?? 0, DIR_EGRESS, PROTO_TCP, 80).verdict, 'allow');
  assert.equal(lookup(a.entries, ids['192.0.2.10/32'] ?? 0, DIR_EGRESS, PROTO_TCP, 80).verdict, 'drop');
});

test('engine: an endpoint of unknown labels is reserved:init, selected by an unscoped init policy only', () => {
  // A runtime's container before its Pod exists (weir-cni): Cilium's init identity. A namespaced
  // CNP naming reserved:init selects it (not limited to its namespace: init has no namespace label).
  const init = cnp('init', {
    endpointSelector: { matchLabels: { 'reserved:init': '' } },
    ingress: [{ fromEndpoints: [{ matchLabels: { app: 'a' } }] }],
  });
  const base = world([init]);
  const out = computePolicy({
    ...base,
    endpoints: [
      ...base.endpoints,
      {
        id: 3,
        namespace: 'y',
        pod: 'c',
        labels: { app: 'a' },
        init: true,
        ips: ['10.244.0.4'],
        namedPorts: [],
      },
    ],
  });
  const c = out.endpoints.get(3);
  assert.ok(c);
  assert.equal(c.identity, 5);
  assert.deepEqual(c.labels, ['reserved:init']);
  assert.equal(c.ingressEnforced, true, 'the init policy selects it');
  assert.equal(out.endpoints.get(1)?.ingressEnforced, false, 'not the pods with labels');
  const a = out.endpoints.get(1)?.identity ?? 0;
  const b = out.endpoints.get(2)?.identity ?? 0;
  assert.equal(lookup(c.entries, a, DIR_INGRESS, PROTO_TCP, 80).verdict, 'allow');
  assert.equal(lookup(c.entries, b, DIR_INGRESS, PROTO_TCP, 80).verdict, 'drop');
  assert.equal(out.ipcache.find((e) => e.prefix === '10.244.0.4/32')?.identity, 5);
});

test('diff rewrites only changed entries', () => {
  const a = makeEntry(0, DIR_INGRESS, { protocol: 6, port: 80, prefixLen: 64 }, false, 1);
  const b = makeEntry(0, DIR_INGRESS, { protocol: 6, port: 81, prefixLen: 64 }, false, 1);
  const c = makeEntry(0, DIR_INGRESS, { protocol: 6, port: 82, prefixLen: 64 }, false, 1);
  const d = diff([a, b], [a, { ...b, deny: true }, c]);
  assert.deepEqual(d.upserts, [{ ...b, deny: true }, c]);
  assert.deepEqual(diff([a, b], [b]).deletes, [a]);
  assert.deepEqual(diff([a], [a]), { upserts: [], deletes: [] });
});

test('trace names the policy, direction and rule that decide', () => {
  const input = world([
    cnp('web', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [
        { fromEntities: ['world'] },
        {
          fromEndpoints: [{ matchLabels: { app: 'b' } }],
          toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }],
        },
      ],
    }),
    cnp('no-b', {
      endpointSelector: { matchLabels: { app: 'b' } },
      egressDeny: [{ toEndpoints: [{ matchLabels: { app: 'a' } }], toPorts: [{ ports: [{ port: '443' }] }] }],
    }),
  ]);
  const output = computePolicy(input);
  const t = trace({ input, output }, { from: 'x/b', to: 'x/a', port: 80, protocol: 'TCP' });
  assert.equal(t.allowed, false, 'b egress is default-deny (deny-only policy isolates)');
  assert.equal(t.egress.verdict, 'default-deny');
  assert.equal(t.ingress.verdict, 'allowed');
  assert.deepEqual(t.ingress.rule, {
    kind: 'CiliumNetworkPolicy',
    namespace: 'x',
    name: 'web',
    direction: 'ingress',
    ruleIndex: 1,
    deny: false,
  });
  const d = trace({ input, output }, { from: 'x/b', to: 'x/a', port: 443, protocol: 'TCP' });
  assert.equal(d.egress.verdict, 'denied');
  assert.equal(d.egress.rule?.name, 'no-b');
  assert.equal(d.egress.rule?.deny, true);
  assert.equal(d.egress.dropCode, 181);
  const w = trace({ input, output }, { from: '8.8.8.8', to: 'x/a', port: 22, protocol: 'TCP' });
  assert.equal(w.allowed, true);
  assert.equal(w.ingress.rule?.ruleIndex, 0);
  const h = trace({ input, output }, { from: 'host', to: 'x/a', port: 22, protocol: 'UDP' });
  assert.equal(h.allowed, true);
  assert.equal(h.ingress.rule?.name, 'allow-localhost');
});

test('a selector cache kept across computations gives what fresh computations give', () => {
  const policies = [
    cnp('clients', {
      endpointSelector: { matchLabels: { app: 'target' } },
      ingress: [
        {
          fromEndpoints: [{ matchLabels: { role: 'client' } }],
          toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }],
        },
        { fromEndpoints: [{ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] }] },
        { fromCIDR: ['192.0.2.0/24'] },
        { fromEntities: ['host', 'cluster'] },
      ],
      egress: [
        { toEndpoints: [{ matchExpressions: [{ key: 'role', operator: 'DoesNotExist' }] }] },
        { toCIDRSet: [{ cidr: '198.51.100.0/24', except: ['198.51.100.8/29'] }] },
      ],
    }),
    cnp('db', {
      endpointSelector: { matchLabels: { tier: 'db' } },
      ingress: [{ fromEndpoints: [{ matchLabels: { 'k8s:role': 'client', tier: 'web' } }] }],
      egressDeny: [{ toEntities: ['world'] }],
    }),
  ];
  const other = [policies[0] as ReturnType<typeof cnp>];
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const roles = ['client', 'server', undefined];
  const tiers = ['web', 'db', undefined];
  const labelsOf = (i: number) => {
    const l: Record<string, string> = { app: i % 7 === 0 ? 'target' : `p${i % 11}` };
    const role = roles[rand(3)];
    const tier = tiers[rand(3)];
    if (role) l.role = role;
    if (tier) l.tier = tier;
    return l;
  };
  const local = new Map<number, ReturnType<typeof labelsOf>>();
  const remote = new Map<number, ReturnType<typeof labelsOf>>();
  const cache = new SelectorCache();
  const withCache = { allocator: new IdentityAllocator(), held: [] as number[] };
  const fresh = { allocator: new IdentityAllocator(), held: [] as number[] };
  for (let step = 0; step < 30; step++) {
    // Pods come, go and change labels; the policies and learned names change now and then.
    for (let k = 0; k < 4; k++) {
      const i = rand(40);
      const m = i % 2 ? remote : local;
      if (m.has(i) && rand(3) === 0) m.delete(i);
      else m.set(i, labelsOf(i));
    }
    const input: EngineInput = {
      namespaces: [{ name: 'x', labels: {} }],
      endpoints: [...local].map(([i, labels]) => ({
        id: i + 1,
        namespace: 'x',
        pod: `l${i}`,
        labels,
        ips: [`10.244.0.${i + 2}`],
        namedPorts: [],
      })),
      remoteEndpoints: [...remote].map(([i, labels]) => ({
        namespace: 'x',
        pod: `r${i}`,
        labels,
        ips: [`10.244.1.${i + 2}`],
        namedPorts: [],
      })),
      nodeIPs: ['10.244.0.1'],
      policies: step % 9 === 8 ? other : policies,
      fqdns: step % 5 === 0 ? [] : [{ name: 'a.example', ips: [`203.0.113.${step}`] }],
    };
    const a = computePolicy(input, {
      allocator: withCache.allocator,
      previousHeld: withCache.held,
      selectorCache: cache,
    });
    const b = computePolicy(input, { allocator: fresh.allocator, previousHeld: fresh.held });
    withCache.held = a.held;
    fresh.held = b.held;
    assert.deepEqual([...a.endpoints], [...b.endpoints], `step ${step}`);
    assert.deepEqual(a.ipcache, b.ipcache, `step ${step}`);
    assert.deepEqual([...a.cookies], [...b.cookies], `step ${step}`);
  }
});
