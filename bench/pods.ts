// Lab scale with real workloads: pods that serve TCP echo + HTTP (8080) and UDP echo (8081) are
// added through the agent's API up to 100 and then 1 000, and at each size: the creation time per
// pod (from the first apply sent until the last apply answered, manifests parsed beforehand: netns,
// veths, cgroup, datapath attach, workload serving), the memory per pod (the drop of MemAvailable since before the first pod, and
// the pod workload host's VmRSS: one process serves them all), and probes between sampled pods
// (TCP echo, HTTP naming the pod, UDP echo) that must all answer. The pods are deleted at the end.
import { readFileSync } from 'node:fs';
import { agentClient } from '../src/agent/client.js';
import { toDesired, type PodInfo } from '../src/cluster/objects.js';
import { parseManifests } from '../src/k8s/index.js';
import { probe, type Lab, type Logger } from '../src/lab/index.js';
import { call } from '../src/lab/workload/client.js';
import { podHostFile, workloadSocket } from '../src/lab/names.js';
import type { HostReply } from '../src/lab/workload/host.js';
import { WeirError } from '../src/shared/errors.js';
import { rssMiB, type Fact } from './policy.js';

const ns = 'bench-pods';
const batch = 250;

function meminfoMiB(...keys: string[]): number {
  const text = readFileSync('/proc/meminfo', 'utf8');
  let kb = 0;
  for (const k of keys) {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m?.[1]) throw new WeirError('ERR_BENCH_RSS', `no ${k} in /proc/meminfo`);
    kb += Number(m[1]);
  }
  return kb / 1024;
}
const memAvailableMiB = () => meminfoMiB('MemAvailable');
/** What the kernel holds for namespaces, devices, sockets, cgroups: slab, per-CPU, stacks, page tables. */
const kernelMiB = () => meminfoMiB('Slab', 'Percpu', 'KernelStack', 'PageTables');

const podsYaml = (from: number, to: number) =>
  Array.from(
    { length: to - from },
    (_, k) => `apiVersion: v1
kind: Pod
metadata: {name: w-${from + k}, namespace: ${ns}, labels: {app: w}}
spec: {containers: [{name: w, ports: [{containerPort: 8080}, {containerPort: 8081, protocol: UDP}]}]}`,
  ).join('\n---\n');

export interface PodScaleStep {
  pods: number;
  msPerPod: number;
  memMiBPerPod: number;
  hostRssMiB: number;
  probesOk: number;
  probes: number;
}

/** Probes between `n` pods spread over the lab: TCP, HTTP and UDP from each to the next. */
async function probeSample(
  lab: Lab,
  pods: PodInfo[],
  n: number,
): Promise<{ ok: number; total: number; failed: string[] }> {
  const step = Math.max(1, Math.floor(pods.length / n));
  const sample = pods.filter((_, i) => i % step === 0).slice(0, n);
  const failed: string[] = [];
  let ok = 0;
  let total = 0;
  for (const [i, from] of sample.entries()) {
    const to = sample[(i + 1) % sample.length] as PodInfo;
    const src = `${from.namespace}/${from.name}`;
    const checks = [
      probe(lab, src, { ip: to.ip, port: 8080, protocol: 'TCP' }, 3000),
      probe(lab, src, { ip: to.ip, port: 8080, protocol: 'TCP' }, 3000, { http: true }).then((r) =>
        r.ok && r.body !== `${to.namespace}/${to.name}\n` ? { ...r, ok: false, error: `body ${r.body}` } : r,
      ),
      probe(lab, src, { ip: to.ip, port: 8081, protocol: 'UDP' }, 3000),
    ];
    for (const r of await Promise.all(checks)) {
      total++;
      if (r.ok) ok++;
      else failed.push(`${src} -> ${to.name}: ${r.error}`);
    }
  }
  return { ok, total, failed };
}

/** Grows the lab's workload pods to each size in `totals` (ascending), measuring each step. */
export async function measurePods(
  lab: Lab,
  totals: number[],
  log: Logger,
): Promise<{ steps: PodScaleStep[]; facts: Fact[] }> {
  const client = agentClient(lab.name);
  const nsObj = parseManifests(`apiVersion: v1\nkind: Namespace\nmetadata: {name: ${ns}}\n`, '<bench>');
  const memBefore = memAvailableMiB();
  const kernelBefore = kernelMiB();
  const steps: PodScaleStep[] = [];
  const facts: Fact[] = [];
  let have = 0;
  try {
    for (const total of totals) {
      // The manifests are parsed before the clock starts: the time is the agent's, not the YAML's.
      const applies: { from: number; to: number; objects: ReturnType<typeof toDesired>[] }[] = [];
      for (let i = have; i < total; i += batch) {
        const end = Math.min(i + batch, total);
        applies.push({
          from: i,
          to: end,
          objects: [...nsObj, ...parseManifests(podsYaml(i, end), '<bench>')].map(toDesired),
        });
      }
      const t0 = performance.now();
      for (const a of applies) {
        log(`  pods ${ns}/w-${a.from}..${a.to - 1} (with workloads)`);
        await client.call('POST', '/v1/apply', { objects: a.objects });
      }
      const ms = performance.now() - t0;
      const pods = (await client.call<{ items: PodInfo[] }>('GET', '/v1/pods')).items.filter(
        (p) => p.namespace === ns,
      );
      const notReady = pods.filter((p) => !p.ready).length;
      if (pods.length !== total || notReady > 0)
        throw new WeirError(
          'ERR_BENCH_SCALE',
          `${pods.length} pods of ${total} in ${ns}, ${notReady} not ready`,
        );
      const first = pods[0] as PodInfo;
      const host = await call<HostReply>(
        workloadSocket(lab.name, podHostFile(first.node)),
        { op: 'ping' },
        5000,
      );
      const hostRss = host.ok ? rssMiB(host.pid) : 0;
      const mem = memBefore - memAvailableMiB();
      const kernel = kernelMiB() - kernelBefore;
      const pr = await probeSample(lab, pods, 20);
      if (pr.failed.length > 0) log(`  probes failed: ${pr.failed.slice(0, 5).join('; ')}`);
      const step: PodScaleStep = {
        pods: total,
        msPerPod: ms / (total - have),
        memMiBPerPod: mem / total,
        hostRssMiB: hostRss,
        probesOk: pr.ok,
        probes: pr.total,
      };
      steps.push(step);
      const note = `pods ${have + 1}..${total} applied in batches of ${batch}; probes between 20 sampled pods: ${pr.ok}/${pr.total} answered (TCP echo, HTTP, UDP echo)`;
      facts.push(
        {
          metric: 'creation time per pod',
          value: Math.round(step.msPerPod * 10) / 10,
          unit: 'ms',
          note: `${note}; target ≤ 20 ms`,
        },
        {
          metric: 'memory per pod (MemAvailable drop)',
          value: Math.round(step.memMiBPerPod * 100) / 100,
          unit: 'MiB',
          note: 'since before the first pod, all memory of the machine (other work on it counts too); target ≤ 5 MiB',
        },
        {
          metric: 'memory per pod (kernel + pod host)',
          value: Math.round(((kernel + hostRss) / total) * 100) / 100,
          unit: 'MiB',
          note: `growth of the kernel's slab, per-CPU, stack and page-table memory since before the first pod (${Math.round(kernel)} MiB) plus the pod host's VmRSS, per pod; target ≤ 5 MiB`,
        },
        {
          metric: 'pod workload host VmRSS',
          value: hostRss,
          unit: 'MiB',
          note: `one process serving all ${total} pods' workloads (${Math.round((hostRss / total) * 1000) / 1000} MiB per pod)`,
        },
        {
          metric: 'pods created',
          value: Math.round(ms),
          unit: 'ms',
          note: `${total - have} pods, wall time`,
        },
      );
      have = total;
    }
  } finally {
    const t0 = performance.now();
    const pods = (await client.call<{ items: PodInfo[] }>('GET', '/v1/pods')).items.filter(
      (p) => p.namespace === ns,
    );
    for (let i = 0; i < pods.length; i += batch)
      await client.call('POST', '/v1/delete', {
        objects: pods.slice(i, i + batch).map((p) => ({ kind: 'Pod', namespace: ns, name: p.name })),
      });
    if (pods.length > 0)
      facts.push({
        metric: 'deletion time per pod',
        value: Math.round(((performance.now() - t0) / pods.length) * 10) / 10,
        unit: 'ms',
        note: `${pods.length} pods`,
      });
  }
  return { steps, facts };
}
