// Micro-benchmark of policy regeneration without a lab: the same inputs as `make bench` (the
// server's ingress with N /32 CIDR peers; N idle endpoints with a one-port policy change) built
// in-process, and the pure steps of the agent's regeneration timed one by one. Prints a table.
// Run: node dist/bench/micro/engine.js [--runs 5]
import { connectionsToRevoke } from '../../src/agent/ct-revalidate.js';
import type { DesiredObject } from '../../src/cluster/objects.js';
import { IdentityAllocator } from '../../src/identity/allocator.js';
import { validatePolicy } from '../../src/policy/api/index.js';
import type { Policy } from '../../src/policy/api/types.js';
import { diff } from '../../src/policy/diff.js';
import { computePolicy, type EngineEndpoint, type EngineInput } from '../../src/policy/engine.js';
import { peerIP, serverPolicy } from '../policy.js';

interface Row {
  endpoints: number;
  cidrPeers: number;
  entries: number;
  validateMs: number;
  computeMs: number;
  recomputeMs: number;
  diffMs: number;
  revokeMs: number;
  stateJsonMs: number;
}

const runsArg = process.argv.indexOf('--runs');
const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

function time<T>(fn: () => T): { ms: number; value: T } {
  const t0 = performance.now();
  const value = fn();
  return { ms: performance.now() - t0, value };
}

/** The scale bench's policy: idle pods into the target on one TCP port. */
function targetPolicy(port: number): DesiredObject {
  const object = {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'bench-scale-target', namespace: 'bench-scale' },
    spec: {
      endpointSelector: { matchLabels: { 'bench-target': 'yes' } },
      ingress: [
        {
          fromEndpoints: [{ matchLabels: { app: 'idle' } }],
          toPorts: [{ ports: [{ port: String(port), protocol: 'TCP' }] }],
        },
      ],
    },
  };
  return { apiVersion: 'cilium.io/v2', kind: object.kind, name: object.metadata.name, object };
}

function input(idle: number, policies: Policy[]): EngineInput {
  const pod = (id: number, namespace: string, name: string, labels: Record<string, string>, ip: string) =>
    ({ id, namespace, pod: name, labels, ips: [ip], namedPorts: [] }) satisfies EngineEndpoint;
  const endpoints = [
    pod(1, 'bench', 'server', { app: 'server' }, '10.244.0.2'),
    pod(2, 'bench', 'client', { app: 'client' }, '10.244.0.3'),
  ];
  for (let i = 0; i < idle; i++)
    endpoints.push(
      pod(
        3 + i,
        'bench-scale',
        `idle-${i}`,
        { app: 'idle', 'bench-target': i === 0 ? 'yes' : 'no' },
        ['10.244', String(1 + (i >> 8)), String(i & 255)].join('.'),
      ),
    );
  return {
    namespaces: [
      { name: 'bench', labels: {} },
      { name: 'bench-scale', labels: {} },
    ],
    endpoints,
    nodeIPs: ['10.244.0.1'],
    policies,
  };
}

const validate = (objects: DesiredObject[]) =>
  objects.map((o) => validatePolicy(o.object, { file: '<bench>', object: o.name }));

function measure(idle: number, peers: number): Row {
  const samples: Row[] = [];
  for (let r = 0; r < runs; r++) {
    const v = time(() => validate([serverPolicy(peers), targetPolicy(20000)]));
    const allocator = new IdentityAllocator();
    const first = time(() => computePolicy(input(idle, v.value), { allocator }));
    // The agent's steady state: the same allocator, the previous computation's identities held.
    const changed = validate([serverPolicy(peers), targetPolicy(20001)]);
    const again = time(() =>
      computePolicy(input(idle, changed), { allocator, previousHeld: first.value.held }),
    );
    const d = time(() => {
      let n = 0;
      for (const [id, pol] of again.value.endpoints)
        n += diff(first.value.endpoints.get(id)?.entries ?? [], pol.entries).upserts.length;
      return n;
    });
    // One tracked connection per peer into the server: every one is judged against the policy.
    const byIP = new Map([['10.244.0.2', { entries: again.value.endpoints.get(1)?.entries ?? [] }]]);
    const conns = Array.from({ length: Math.max(1, peers) }, (_, i) => ({
      family: 4 as const,
      src: peerIP(i),
      dst: '10.244.0.2',
      sport: 40000,
      dport: 5201,
      proto: 6,
      direction: 'ingress' as const,
    }));
    const rv = time(() => connectionsToRevoke(conns, byIP, again.value.ipcache));
    const js = time(() => JSON.stringify(allocator.toJSON()).length);
    samples.push({
      endpoints: idle + 2,
      cidrPeers: peers,
      entries: again.value.endpoints.get(1)?.entries.length ?? 0,
      validateMs: v.ms,
      computeMs: first.ms,
      recomputeMs: again.ms,
      diffMs: d.ms,
      revokeMs: rv.ms,
      stateJsonMs: js.ms,
    });
  }
  const pick = (k: keyof Row) => median(samples.map((s) => s[k]));
  return {
    endpoints: idle + 2,
    cidrPeers: peers,
    entries: pick('entries'),
    validateMs: pick('validateMs'),
    computeMs: pick('computeMs'),
    recomputeMs: pick('recomputeMs'),
    diffMs: pick('diffMs'),
    revokeMs: pick('revokeMs'),
    stateJsonMs: pick('stateJsonMs'),
  };
}

const cases: [idle: number, peers: number][] = [
  [0, 0],
  [0, 999],
  [0, 9999],
  [100, 0],
  [1000, 0],
  [1000, 9999],
];
const rows = cases.map(([idle, peers]) => measure(idle, peers));
const f = (n: number) => n.toFixed(1);
console.log(`policy regeneration, pure steps, median of ${runs} runs (ms)`);
console.log(
  '| endpoints | CIDR peers | server entries | validate | compute | recompute | diff | revoke | state JSON |',
);
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows)
  console.log(
    `| ${r.endpoints} | ${r.cidrPeers} | ${r.entries} | ${f(r.validateMs)} | ${f(r.computeMs)} | ${f(r.recomputeMs)} | ${f(r.diffMs)} | ${f(r.revokeMs)} | ${f(r.stateJsonMs)} |`,
  );
