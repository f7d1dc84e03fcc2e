// Scale: the node grows to 100 and then 1 000 endpoints (pods without a workload process, but with
// their netns, veths, programs and maps), and at each size a series of policy changes is timed
// from the API call until the new entry is in the selected endpoint's pinned policy map.
import { join } from 'node:path';
import { agentClient } from '../src/agent/client.js';
import { nodePinDir } from '../src/agent/paths.js';
import { toDesired, type DesiredObject, type PodInfo } from '../src/cluster/objects.js';
import { BpfMap } from '../src/bpf/index.js';
import { PolicyMap } from '../src/datapath/maps/policy/index.js';
import { parseManifests } from '../src/k8s/index.js';
import type { Lab, Logger } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { agentStatus, rssMiB, type Fact } from './policy.js';

const scaleNs = 'bench-scale';
const policyName = 'bench-scale-target';
/** A change becomes visible in the map before the API answers; this only bounds a broken agent. */
const pollLimitMs = 5000;

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

const idlePods = (from: number, to: number) =>
  Array.from(
    { length: to - from },
    (_, k) => `apiVersion: v1
kind: Pod
metadata:
  name: idle-${from + k}
  namespace: ${scaleNs}
  labels: {app: idle, bench-target: "${from + k === 0 ? 'yes' : 'no'}"}
  annotations: {weir.dev/workload: none}
spec: {containers: [{name: idle, ports: [{containerPort: 8080}]}]}`,
  ).join('\n---\n');

/**
 * Adds workload-less pods until the lab has `total` pods, through the API in batches; each apply
 * answers once the node runs the pods, attached and enforced.
 */
export async function growTo(lab: Lab, total: number, log: Logger): Promise<number> {
  const client = agentClient(lab.name);
  const pods = (await client.call<{ items: PodInfo[] }>('GET', '/v1/pods')).items;
  const have = pods.length;
  const existingIdle = pods.filter((p) => p.namespace === scaleNs).length;
  const batch = 250;
  const t0 = performance.now();
  const ns = parseManifests(`apiVersion: v1\nkind: Namespace\nmetadata: {name: ${scaleNs}}\n`, '<bench>');
  for (let i = existingIdle; i < existingIdle + (total - have); i += batch) {
    const end = Math.min(i + batch, existingIdle + (total - have));
    log(`  pods ${scaleNs}/idle-${i}..${end - 1}`);
    await client.call('POST', '/v1/apply', {
      objects: [...ns, ...parseManifests(idlePods(i, end), '<bench>')].map(toDesired),
    });
  }
  return performance.now() - t0;
}

function targetPolicy(port: number): DesiredObject {
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    name: policyName,
    namespace: scaleNs,
    file: '<bench>',
    object: {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: policyName, namespace: scaleNs },
      spec: {
        endpointSelector: { matchLabels: { 'bench-target': 'yes' } },
        ingress: [
          {
            fromEndpoints: [{ matchLabels: { app: 'idle' } }],
            toPorts: [{ ports: [{ port: String(port), protocol: 'TCP' }] }],
          },
        ],
      },
    },
  };
}

export interface EnforcementResult {
  endpoints: number;
  podsCreatedMs: number;
  applyMs: number[];
  regenMs: number[];
  facts: Fact[];
}

/**
 * `applies` policy changes, each allowing the idle pods a new port into bench-scale/idle-0: the time from the
 * API call until that entry is in idle-0's pinned policy map, and the agent's regeneration time.
 */
export async function timeEnforcement(
  lab: Lab,
  applies: number,
  podsCreatedMs: number,
): Promise<EnforcementResult> {
  const client = agentClient(lab.name);
  const { items } = await client.call<{ items: { id: number; namespace: string; pod: string }[] }>(
    'GET',
    '/v1/endpoints',
  );
  const target = items.find((e) => e.namespace === scaleNs && e.pod === 'idle-0');
  if (!target) throw new WeirError('ERR_BENCH_SCALE', `the agent has no endpoint for ${scaleNs}/idle-0`);
  const node = (await lab.node()).name;
  const map = BpfMap.fromPin(join(nodePinDir(lab.name, node), `policy_${target.id}`));
  const applyMs: number[] = [];
  const regenMs: number[] = [];
  try {
    const pm = new PolicyMap(map, target.id);
    for (let i = 0; i < applies; i++) {
      const port = 20000 + (i % 2 === 0 ? i : 1000 + i); // never the port of the previous change
      const t0 = performance.now();
      await client.call('POST', '/v1/apply', { objects: [targetPolicy(port)] });
      for (;;) {
        const seen = pm.list().some((e) => e.key.direction === 'ingress' && e.key.port === port);
        if (seen) break;
        if (performance.now() - t0 > pollLimitMs)
          throw new WeirError(
            'ERR_BENCH_SCALE',
            `port ${port} not in policy_${target.id} after ${pollLimitMs} ms`,
          );
        await new Promise((r) => setTimeout(r, 1));
      }
      applyMs.push(performance.now() - t0);
      regenMs.push((await agentStatus(lab.name)).regenerations.lastMs);
    }
  } finally {
    map.close();
  }
  await client.call('POST', '/v1/delete', {
    objects: [{ kind: 'CiliumNetworkPolicy', namespace: scaleNs, name: policyName }],
  });
  const st = await agentStatus(lab.name);
  return {
    endpoints: st.endpoints,
    podsCreatedMs,
    applyMs,
    regenMs,
    facts: [
      { metric: 'endpoints (agent)', value: st.endpoints, unit: 'endpoints' },
      { metric: 'identities (agent)', value: st.identities, unit: 'identities' },
      { metric: 'agent VmRSS', value: rssMiB(st.pid), unit: 'MiB' },
    ],
  };
}
