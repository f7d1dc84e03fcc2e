// Micro-benchmark of `weir policy diff` without a lab: the agent's work for POST /v1/policy/diff
// once the files are validated — the engine on the changed policy set, then every connection
// (ordered pod pairs x declared ports) judged in both outputs. The model is conformance's netpol
// topology (3 namespaces x 3 pods, ports 80/81 on TCP, UDP, SCTP) and larger ones with more pods
// per namespace; the policy in force selects every pod with N /32 CIDR peers on port 80 (about N
// policy-map entries per endpoint) and pods of its own namespace; the change opens port 81 from
// every namespace. Baseline (same run): one computation of the policy in force, i.e. what the
// engine does for an apply of it.
// Run: node dist/bench/micro/policy-diff.js [--runs 5]
import { fileURLToPath } from 'node:url';
import { IdentityAllocator } from '../../src/identity/allocator.js';
import { validatePolicy } from '../../src/policy/api/index.js';
import type { Policy } from '../../src/policy/api/types.js';
import { computePolicy, type EngineEndpoint, type EngineInput } from '../../src/policy/engine.js';
import { verdictDiff, type DiffPod } from '../../src/policy/verdict-diff.js';
import { peerIP } from '../policy.js';

export interface DiffFigures {
  pods: number;
  cidrPeers: number;
  /** Policy-map entries of one endpoint (after). */
  entries: number;
  connections: number;
  changes: number;
  /** The engine on the changed policies (ms). */
  computeMs: number;
  /** Every connection judged before and after (ms). */
  verdictsMs: number;
  /** computeMs + verdictsMs: the answer of the API after validation. */
  totalMs: number;
  /** Baseline: one computation of the policy in force (ms). */
  baselineMs: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const namespaces = ['x', 'y', 'z'];
const ports = [80, 81].flatMap((port) =>
  (['TCP', 'UDP', 'SCTP'] as const).map((protocol) => ({ port, protocol })),
);

function policies(peers: number, open81: boolean): Policy[] {
  return namespaces.map((ns) =>
    validatePolicy(
      {
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumNetworkPolicy',
        metadata: { name: 'bench-diff', namespace: ns },
        spec: {
          endpointSelector: {},
          ingress: [
            { fromEndpoints: [{}] },
            {
              fromCIDR: Array.from({ length: peers }, (_, i) => `${peerIP(i)}/32`),
              toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }],
            },
            ...(open81
              ? [
                  {
                    fromEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'x' } }],
                    toPorts: [{ ports: [{ port: '81', protocol: 'TCP' }] }],
                  },
                ]
              : []),
          ],
        },
      },
      { file: '<bench>', object: `CiliumNetworkPolicy ${ns}/bench-diff` },
    ),
  );
}

function model(perNamespace: number, policySet: Policy[]): { input: EngineInput; pods: DiffPod[] } {
  const endpoints: EngineEndpoint[] = [];
  const pods: DiffPod[] = [];
  for (const ns of namespaces)
    for (let i = 0; i < perNamespace; i++) {
      const id = endpoints.length + 1;
      const name = perNamespace === 3 ? String.fromCharCode(97 + i) : `p${i}`;
      endpoints.push({
        id,
        namespace: ns,
        pod: name,
        labels: { pod: name },
        ips: [`10.244.${(id + 1) >> 8}.${(id + 1) & 255}`],
        namedPorts: [],
      });
      pods.push({ name: `${ns}/${name}`, endpointId: id, ports });
    }
  return {
    input: {
      namespaces: namespaces.map((n) => ({ name: n, labels: { 'kubernetes.io/metadata.name': n } })),
      endpoints,
      nodeIPs: ['10.244.0.1'],
      policies: policySet,
    },
    pods,
  };
}

export function measureDiff(perNamespace: number, peers: number, runs = 5): DiffFigures {
  const before = policies(peers, false);
  const after = policies(peers, true);
  const samples: DiffFigures[] = [];
  for (let r = 0; r < runs; r++) {
    const m = model(perNamespace, before);
    // The agent's steady state: its allocator holds the identities of the policy in force.
    const allocator = new IdentityAllocator();
    const outBefore = computePolicy(m.input, { allocator });
    // Baseline: the agent recomputing the policy in force (what an apply of it costs the engine).
    let t0 = performance.now();
    const again = computePolicy(m.input, { allocator, previousHeld: outBefore.held });
    const baselineMs = performance.now() - t0;
    // The diff: the changed policies on a copy of the allocator (src/agent/policy-diff.ts).
    t0 = performance.now();
    const outAfter = computePolicy({ ...m.input, policies: after }, { allocator: allocator.clone() });
    const computeMs = performance.now() - t0;
    void again;
    t0 = performance.now();
    const d = verdictDiff({ pods: m.pods, before: outBefore, after: outAfter });
    const verdictsMs = performance.now() - t0;
    samples.push({
      pods: m.pods.length,
      cidrPeers: peers,
      entries: outAfter.endpoints.get(1)?.entries.length ?? 0,
      connections: d.changes.length + d.unchanged,
      changes: d.changes.length,
      computeMs,
      verdictsMs,
      totalMs: computeMs + verdictsMs,
      baselineMs,
    });
  }
  const pick = (k: keyof DiffFigures) => Math.round(median(samples.map((s) => s[k])) * 100) / 100;
  const first = samples[0] as DiffFigures;
  return {
    ...first,
    computeMs: pick('computeMs'),
    verdictsMs: pick('verdictsMs'),
    totalMs: pick('totalMs'),
    baselineMs: pick('baselineMs'),
  };
}

/** The cases `make bench` runs: the 9-pod model at 1, 1 000 and 10 000 peers, then more pods. */
export const diffCases: [number, number][] = [
  [3, 1],
  [3, 1000],
  [3, 10000],
  [10, 10000],
  [30, 1000],
  [100, 100],
];

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const runsArg = process.argv.indexOf('--runs');
  const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
  const rows = diffCases.map(([per, peers]) => measureDiff(per, peers, runs));
  process.stdout.write(
    '| pods | CIDR peers | entries/endpoint | connections | changes | engine (ms) | verdicts (ms) | total (ms) | baseline: one computation (ms) |\n' +
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n' +
      rows
        .map(
          (r) =>
            `| ${r.pods} | ${r.cidrPeers} | ${r.entries} | ${r.connections} | ${r.changes} | ${r.computeMs} | ${r.verdictsMs} | ${r.totalMs} | ${r.baselineMs} |`,
        )
        .join('\n') +
      '\n',
  );
}
