// The engine's L7 side: which entries redirect to the node proxy (and which must not), and the
// L7 policy the proxy gets, from CiliumNetworkPolicy `toPorts[].rules.http`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ValidationError } from '../shared/errors.js';
import { validatePolicy } from './api/index.js';
import { computePolicy, resolvePrecedence, type EngineInput } from './engine.js';
import { DIR_EGRESS, DIR_INGRESS, makeEntry, PROTO_TCP, PROTO_UDP, type PolicyMapEntry } from './entry.js';
import { lookup } from './lookup.js';
import { trace } from './trace.js';

const loc = { file: 't.yaml', object: 'test' };
const cnp = (name: string, spec: unknown, namespace = 'x') =>
  validatePolicy(
    { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace }, spec },
    loc,
  );

const pod = (
  id: number,
  name: string,
  ip: string,
  namedPorts: EngineInput['endpoints'][0]['namedPorts'] = [],
) => ({
  id,
  namespace: 'x',
  pod: name,
  labels: { app: name },
  ips: [ip],
  namedPorts,
});

function world(policies: ReturnType<typeof cnp>[]): EngineInput {
  return {
    namespaces: [{ name: 'x', labels: {} }],
    endpoints: [
      pod(1, 'a', '10.244.0.2'),
      pod(2, 'b', '10.244.0.3', [{ name: 'web', port: 8080, protocol: 'TCP' }]),
      pod(3, 'c', '10.244.0.4'),
    ],
    nodeIPs: ['10.244.0.1'],
    policies,
    config: { proxyPorts: { ingress: 15001, egress: 15002 } },
  };
}

const from = (app: string) => [{ matchLabels: { app } }];
const port80 = (http?: unknown[]) => [
  { ports: [{ port: '80', protocol: 'TCP' }], ...(http ? { rules: { http } } : {}) },
];
const getPublic = [{ method: 'GET', path: '/public' }];

function setup(policies: ReturnType<typeof cnp>[]) {
  const out = computePolicy(world(policies));
  const ep = (id: number) => {
    const p = out.endpoints.get(id);
    assert.ok(p);
    return p;
  };
  return { out, a: ep(1), b: ep(2), c: ep(3) };
}

/** The verdict a new connection gets: 'drop', 'deny', 'allow' or 'proxy:<port>'. */
function verdict(entries: readonly PolicyMapEntry[], id: number, dir: number, proto: number, port: number) {
  const r = lookup(entries, id, dir, proto, port);
  if (r.verdict !== 'allow') return r.verdict;
  return r.entry?.proxyPort ? `proxy:${r.entry.proxyPort}` : 'allow';
}

test('an ingress HTTP rule redirects its peer on its port to the ingress listener, and nothing else', () => {
  const { out, a, b, c } = setup([
    cnp('l7', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ fromEndpoints: from('b'), toPorts: port80(getPublic) }],
    }),
  ]);
  assert.equal(verdict(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 80), 'proxy:15001');
  assert.equal(
    verdict(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 81),
    'drop',
    'the L7 rule implies only its port',
  );
  assert.equal(verdict(a.entries, c.identity, DIR_INGRESS, PROTO_TCP, 80), 'drop');
  assert.equal(
    verdict(a.entries, 1, DIR_INGRESS, PROTO_TCP, 80),
    'allow',
    'the host stays L4 (allow-localhost)',
  );
  assert.equal(verdict(a.entries, b.identity, DIR_EGRESS, PROTO_TCP, 80), 'allow', 'egress not enforced');
  assert.deepEqual(a.l7, {
    ingress: [
      {
        protocol: 'TCP',
        port: 80,
        parser: 'http',
        proxyPort: 15001,
        ruleSets: [
          {
            identities: [b.identity],
            http: getPublic,
            origin: {
              kind: 'CiliumNetworkPolicy',
              namespace: 'x',
              name: 'l7',
              cookie: (a.entries.find((e) => e.proxyPort) as PolicyMapEntry).cookie,
            },
          },
        ],
      },
    ],
    egress: [],
  });
  assert.deepEqual(
    out.l7.map((e) => [e.endpointId, e.pod, e.identity, e.ips]),
    [[1, 'a', a.identity, ['10.244.0.2']]],
  );
  assert.equal(b.l7, undefined);
  assert.ok(out.cookies.has(out.l7[0]?.ingress[0]?.ruleSets[0]?.origin.cookie ?? 0));
});

test('an L4-only allow for the same peer and port leaves that peer unfiltered (not redirected)', () => {
  const { a, b, c } = setup([
    cnp('l7-any', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ toPorts: port80(getPublic) }],
    }),
    cnp('l4-b', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ fromEndpoints: from('b'), toPorts: port80() }],
    }),
  ]);
  assert.equal(verdict(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 80), 'allow');
  assert.equal(verdict(a.entries, c.identity, DIR_INGRESS, PROTO_TCP, 80), 'proxy:15001');
  assert.equal(verdict(a.entries, 2, DIR_INGRESS, PROTO_TCP, 80), 'proxy:15001', 'world too (no L3 part)');
  // The proxy still knows b's L4-only allow (every request allowed, should b ever reach it).
  const sets = a.l7?.ingress[0]?.ruleSets ?? [];
  assert.deepEqual(
    sets.map((s) => [s.origin.name, s.identities, s.http === undefined]),
    [
      ['l4-b', [b.identity], true],
      ['l7-any', undefined, false],
    ],
  );
});

test('an L3-only allow of a peer (every port) also leaves it unfiltered on an L7 port of any peer', () => {
  const { a, b, c } = setup([
    cnp('p', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ toPorts: port80([{}]) }, { fromEndpoints: from('b') }],
    }),
  ]);
  assert.equal(verdict(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 80), 'allow');
  assert.equal(verdict(a.entries, b.identity, DIR_INGRESS, PROTO_UDP, 53), 'allow');
  assert.equal(verdict(a.entries, c.identity, DIR_INGRESS, PROTO_TCP, 80), 'proxy:15001');
  // The same with the L4-only allow for every peer: nobody is redirected.
  const all = setup([
    cnp('p', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ fromEndpoints: from('b'), toPorts: port80(getPublic) }, { toPorts: port80() }],
    }),
  ]);
  assert.equal(verdict(all.a.entries, all.b.identity, DIR_INGRESS, PROTO_TCP, 80), 'allow');
  assert.equal(all.a.l7, undefined);
});

test('L7 rules of several allows and policies are merged per peer and port', () => {
  const { a, b, c } = setup([
    cnp('one', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ fromEndpoints: from('b'), toPorts: port80(getPublic) }],
    }),
    cnp('two', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [
        {
          fromEndpoints: [{ matchExpressions: [{ key: 'app', operator: 'In', values: ['b', 'c'] }] }],
          toPorts: port80([{ method: 'PUT' }]),
        },
      ],
    }),
  ]);
  assert.equal(verdict(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 80), 'proxy:15001');
  assert.equal(verdict(a.entries, c.identity, DIR_INGRESS, PROTO_TCP, 80), 'proxy:15001');
  const sets = a.l7?.ingress[0]?.ruleSets ?? [];
  assert.deepEqual(
    sets.map((s) => [s.origin.name, s.identities, s.http]),
    [
      ['one', [b.identity], getPublic],
      ['two', [b.identity, c.identity].sort((x, y) => x - y), [{ method: 'PUT' }]],
    ],
  );
});

test('deny beats an L7 allow; other ports keep their L7 behaviour', () => {
  const { a, b } = setup([
    cnp('l7', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [
        {
          fromEndpoints: from('b'),
          toPorts: [
            { ports: [{ port: '80', protocol: 'TCP' }], rules: { http: getPublic } },
            { ports: [{ port: '8080', protocol: 'TCP' }], rules: { http: getPublic } },
          ],
        },
      ],
      ingressDeny: [{ fromEndpoints: from('b'), toPorts: port80() }],
    }),
  ]);
  assert.equal(verdict(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 80), 'deny');
  assert.equal(verdict(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 8080), 'proxy:15001');
  assert.deepEqual(
    a.l7?.ingress.map((p) => p.port),
    [8080],
  );
  assert.ok(a.entries.every((e) => !e.deny || e.proxyPort === 0));
});

test('egress HTTP rules use the egress listener; named ports resolve on the destination pod', () => {
  const { a, b, c } = setup([
    cnp('out', {
      endpointSelector: { matchLabels: { app: 'a' } },
      egress: [
        {
          toEndpoints: [{}],
          toPorts: [{ ports: [{ port: 'web', protocol: 'TCP' }], rules: { http: [{ method: 'GET' }] } }],
        },
      ],
    }),
  ]);
  assert.equal(verdict(a.entries, b.identity, DIR_EGRESS, PROTO_TCP, 8080), 'proxy:15002');
  assert.equal(verdict(a.entries, c.identity, DIR_EGRESS, PROTO_TCP, 8080), 'drop', 'c has no port "web"');
  assert.deepEqual(
    a.l7?.egress.map((p) => [p.port, p.proxyPort, p.ruleSets.map((s) => s.identities)]),
    [[8080, 15002, [[b.identity]]]],
  );
});

test('a direction without default deny still redirects the peers of its HTTP rules', () => {
  const { a, b, c } = setup([
    cnp('visibility', {
      endpointSelector: { matchLabels: { app: 'a' } },
      enableDefaultDeny: { ingress: false },
      ingress: [{ fromEndpoints: from('b'), toPorts: port80([{}]) }],
    }),
  ]);
  assert.equal(a.ingressEnforced, false);
  assert.equal(verdict(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 80), 'proxy:15001');
  assert.equal(verdict(a.entries, c.identity, DIR_INGRESS, PROTO_TCP, 80), 'allow');
  assert.equal(verdict(a.entries, b.identity, DIR_INGRESS, PROTO_TCP, 81), 'allow');
});

test('policy trace says which connections are redirected to the proxy', () => {
  const input = world([
    cnp('l7', {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ fromEndpoints: from('b'), toPorts: port80(getPublic) }],
    }),
  ]);
  const output = computePolicy(input);
  const t = trace({ input, output }, { from: 'x/b', to: 'x/a', port: 80, protocol: 'TCP' });
  assert.equal(t.allowed, true);
  assert.equal(t.ingress.verdict, 'allowed');
  assert.equal(t.ingress.proxyPort, 15001);
  assert.equal(t.ingress.rule?.name, 'l7');
  assert.equal(t.egress.proxyPort, undefined);
  const host = trace({ input, output }, { from: 'host', to: 'x/a', port: 80, protocol: 'TCP' });
  assert.equal(host.ingress.proxyPort, undefined);
});

test('resolvePrecedence keeps every verdict and proxy port of the raw entries (randomised)', () => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const shapes = [
    { protocol: 0, port: 0, prefixLen: 40 },
    { protocol: PROTO_TCP, port: 0, prefixLen: 48 },
    { protocol: PROTO_TCP, port: 80, prefixLen: 63 },
    { protocol: PROTO_TCP, port: 80, prefixLen: 64 },
    { protocol: PROTO_TCP, port: 81, prefixLen: 64 },
    { protocol: PROTO_UDP, port: 0, prefixLen: 48 },
  ];
  for (let round = 0; round < 400; round++) {
    const raw = new Map<string, PolicyMapEntry>();
    for (let i = 0; i < 1 + rnd(6); i++) {
      const id = [0, 300, 301][rnd(3)] as number;
      const shape = shapes[rnd(shapes.length)] as (typeof shapes)[0];
      const deny = rnd(4) === 0;
      const proxy = !deny && shape.prefixLen === 64 && rnd(2) === 0 ? 15001 : 0;
      raw.set(`${id}/${shape.protocol}/${shape.port}/${shape.prefixLen}`, {
        ...makeEntry(id, DIR_INGRESS, shape, deny, i + 1),
        proxyPort: proxy,
      });
    }
    const entries = [...raw.values()];
    const out = resolvePrecedence(entries);
    for (const id of [300, 301, 302])
      for (const [proto, port] of [
        [PROTO_TCP, 80],
        [PROTO_TCP, 81],
        [PROTO_TCP, 82],
        [PROTO_UDP, 80],
      ] as const) {
        // Intended: any containing deny (of the peer or of identity 0) wins, else the datapath's
        // lookup over the raw entries.
        const deny = entries.some(
          (e) =>
            e.deny &&
            (e.identity === id || e.identity === 0) &&
            lookup([e], e.identity, DIR_INGRESS, proto, port).entry,
        );
        const want = deny ? 'deny' : verdict(entries, id, DIR_INGRESS, proto, port);
        assert.equal(
          verdict(out, id, DIR_INGRESS, proto, port),
          want,
          `round ${round} ${id} ${proto}/${port}: ${JSON.stringify(entries)}`,
        );
      }
  }
});

function problem(spec: unknown): { code: string; field?: string; message: string } {
  try {
    cnp('p', spec);
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    const p = err.problems[0];
    assert.ok(p);
    return { code: p.code, message: p.message, ...(p.location.field ? { field: p.location.field } : {}) };
  }
  assert.fail('expected a validation error');
}

test('validation: HTTP rules are accepted as Cilium writes them', () => {
  const p = cnp('ok', {
    endpointSelector: {},
    ingress: [
      {
        toPorts: [
          {
            ports: [
              { port: '80', protocol: 'TCP' },
              { port: 'http', protocol: 'TCP' },
            ],
            rules: {
              http: [
                {
                  method: 'GET',
                  path: '/v1/.*',
                  host: 'api\\.example\\.com',
                  headers: ['X-Token: 42', 'X-Trace'],
                },
                { headerMatches: [{ name: 'X-Mode', value: 'a', mismatch: 'REPLACE' }, { name: 'X-On' }] },
                {},
              ],
            },
          },
        ],
      },
    ],
  });
  assert.ok(p.kind === 'CiliumNetworkPolicy');
  const ports = p.rules[0]?.ingress[0]?.ports ?? [];
  assert.equal(ports.length, 2);
  assert.equal(ports[0]?.http?.length, 3);
  assert.deepEqual(ports[0]?.http?.[1], {
    headerMatches: [{ name: 'X-Mode', value: 'a', mismatch: 'REPLACE' }, { name: 'X-On' }],
  });
  // An empty list is no L7 rule (Cilium's L7Rules.IsEmpty): L4 only.
  const empty = cnp('e', {
    endpointSelector: {},
    ingress: [{ toPorts: [{ ports: [{ port: '80' }], rules: { http: [] } }] }],
  });
  assert.ok(empty.kind === 'CiliumNetworkPolicy');
  assert.equal(empty.rules[0]?.ingress[0]?.ports?.[0]?.http, undefined);
});

test('validation: what weir does not enforce is refused by name, with the field', () => {
  const rules = (r: unknown, ports: unknown = [{ port: '80', protocol: 'TCP' }]) => ({
    endpointSelector: {},
    ingress: [{ toPorts: [{ ports, rules: r }] }],
  });
  const kafka = problem(rules({ kafka: [{ topic: 't' }] }));
  assert.equal(kafka.code, 'ERR_POLICY_L7_UNSUPPORTED');
  assert.equal(kafka.field, 'spec.ingress[0].toPorts[0].rules.kafka');
  assert.match(kafka.message, /Kafka/);
  const dns = problem(rules({ dns: [{ matchPattern: '*' }] }));
  assert.equal(dns.field, 'spec.ingress[0].toPorts[0].rules.dns');
  assert.match(dns.message, /DNS rules apply to egress/);
  assert.equal(problem(rules({ l7proto: 'r2d2', l7: [{}] })).code, 'ERR_POLICY_L7_UNSUPPORTED');
  const secret = problem(
    rules({ http: [{ headerMatches: [{ name: 'X', secret: { name: 's', namespace: 'n' } }] }] }),
  );
  assert.equal(secret.code, 'ERR_POLICY_L7_UNSUPPORTED');
  assert.equal(secret.field, 'spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].secret');
  const deny = problem({
    endpointSelector: {},
    ingressDeny: [{ toPorts: [{ ports: [{ port: '80' }], rules: { http: [{}] } }] }],
  });
  assert.equal(deny.code, 'ERR_POLICY_L7_UNSUPPORTED');
  assert.match(deny.message, /deny rules cannot carry L7 rules/);
  const any = problem(rules({ http: [{}] }, [{ port: '80' }]));
  assert.equal(any.code, 'ERR_POLICY_L7_INVALID');
  assert.equal(any.field, 'spec.ingress[0].toPorts[0].ports[0].protocol');
  assert.equal(
    problem(rules({ http: [{}] }, [{ port: '80', endPort: 90, protocol: 'TCP' }])).code,
    'ERR_POLICY_L7_UNSUPPORTED',
  );
  assert.equal(problem(rules({ http: [{}] }, [])).field, 'spec.ingress[0].toPorts[0].ports');
  const re = problem(rules({ http: [{ path: '/(' }] }));
  assert.equal(re.field, 'spec.ingress[0].toPorts[0].rules.http[0].path');
  assert.equal(re.code, 'ERR_POLICY_L7_REGEX');
  // What JavaScript accepts but RE2 (Envoy's safe_regex, the proxy's engine) does not is refused too.
  const lookahead = problem(rules({ http: [{ path: '/(?!admin).*' }] }));
  assert.equal(lookahead.code, 'ERR_POLICY_L7_REGEX');
  assert.equal(lookahead.field, 'spec.ingress[0].toPorts[0].rules.http[0].path');
  assert.equal(problem(rules({ http: [{ method: '(GET)\\1' }] })).code, 'ERR_POLICY_L7_REGEX');
  assert.equal(problem(rules({ http: [{ headers: ['bad name: x'] }] })).code, 'ERR_POLICY_L7_INVALID');
  assert.equal(
    problem(rules({ http: [{ headerMatches: [{ name: 'X', mismatch: 'DROP' }] }] })).field,
    'spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch',
  );
  assert.equal(problem(rules({ http: [{ verb: 'GET' }] })).code, 'ERR_POLICY_FIELD_UNKNOWN');
});

test('DNS rules redirect the port over UDP and TCP to the DNS listener; the proxy gets per-protocol rules', () => {
  const p = cnp('dns', {
    endpointSelector: { matchLabels: { app: 'a' } },
    egress: [
      {
        toEndpoints: from('b'),
        toPorts: [
          { ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*.example.com' }] } },
        ],
      },
    ],
  });
  const input = world([p]);
  input.config = { proxyPorts: { ingress: 15001, egress: 15002, dns: 15003 } };
  const out = computePolicy(input);
  const a = out.endpoints.get(1);
  const b = out.endpoints.get(2);
  assert.ok(a && b);
  assert.equal(verdict(a.entries, b.identity, DIR_EGRESS, PROTO_UDP, 53), 'proxy:15003');
  assert.equal(verdict(a.entries, b.identity, DIR_EGRESS, PROTO_TCP, 53), 'proxy:15003');
  assert.equal(verdict(a.entries, b.identity, DIR_EGRESS, PROTO_TCP, 80), 'drop');
  assert.deepEqual(
    a.l7?.egress.map((x) => [x.protocol, x.port, x.parser, x.proxyPort, x.ruleSets[0]?.dns]),
    [
      ['TCP', 53, 'dns', 15003, [{ matchPattern: '*.example.com' }]],
      ['UDP', 53, 'dns', 15003, [{ matchPattern: '*.example.com' }]],
    ],
  );
});

test('toFQDNs selects the CIDR identities of learned addresses of matching names, never pods', () => {
  const p = cnp('fqdn', {
    endpointSelector: { matchLabels: { app: 'a' } },
    egress: [{ toFQDNs: [{ matchPattern: '*.example.com' }], toPorts: port80() }],
  });
  const input = world([p]);
  input.fqdns = [
    { name: 'api.example.com', ips: ['192.0.2.10', '10.244.0.3'] },
    { name: 'other.org', ips: ['198.51.100.40'] },
  ];
  const out = computePolicy(input);
  const a = out.endpoints.get(1);
  assert.ok(a);
  const learned = out.ipcache.find((e) => e.prefix === '192.0.2.10/32');
  assert.ok(learned, 'the learned address has its own identity');
  assert.equal(verdict(a.entries, learned.identity, DIR_EGRESS, PROTO_TCP, 80), 'allow');
  assert.equal(verdict(a.entries, learned.identity, DIR_EGRESS, PROTO_TCP, 81), 'drop');
  const other = out.ipcache.find((e) => e.prefix === '198.51.100.40/32');
  assert.ok(other);
  assert.equal(
    verdict(a.entries, other.identity, DIR_EGRESS, PROTO_TCP, 80),
    'drop',
    'the name does not match',
  );
  const b = out.endpoints.get(2);
  assert.ok(b);
  assert.equal(
    verdict(a.entries, b.identity, DIR_EGRESS, PROTO_TCP, 80),
    'drop',
    'a pod address is never selected',
  );
  // Without any learned address the rule selects nothing (and the egress is isolated).
  const none = computePolicy(world([p])).endpoints.get(1);
  assert.ok(none?.egressEnforced);
});
