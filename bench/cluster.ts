// The cluster's control plane (bench section `cluster`): a lab of several nodes on etcd
// (`weir lab up --nodes K`, tunnel mode; K = 2, or enough nodes of 200 pods each for the largest
// size: 5 for 1 000 pods, a node's pod CIDR being a /24). Identity allocations per second: a node of
// the bench's own allocates new label sets one at a time through ClusterIdentities on the lab's etcd
// (lock, create-if-absent transaction, its reference). etcd writes per pod change: etcd's revision
// (every write raises it by one) before and after one pod is added and removed, once every node
// reconciled.
//
// Convergence: node2 runs a target pod (a workload on 8080) whose ingress policy allows pods labelled
// role=client on 8080 and nothing else. The cluster grows to N - 20 pods (workload-less, one label
// set each, role=client, spread round-robin over every node), then 20 pods with a workload, each its
// own label set, are added one at a time on node1 through node1's API. Per pod, the bench polls the
// pinned maps (every ~5 ms) and takes: t0 the API call; tA its address in node1's ipcache; tB the
// moment node2's ipcache maps the address to the same cluster identity AND the target's policy map
// on node2 holds an ingress allow entry for that identity on 8080/TCP (node2 judges its packets with
// it from then on). Then a real packet: a TCP connect from the new pod (node1) to the target (node2)
// through the tunnel, which must be accepted; a pod without role=client is refused (checked once).
// p50/p99 of tB - t0 (API to enforced on node B) and tB - tA (node A's datapath to node B's).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentClient } from '../src/agent/client.js';
import { nodePinDir } from '../src/agent/paths.js';
import { BpfMap } from '../src/bpf/index.js';
import { toDesired } from '../src/cluster/objects.js';
import { openPinned } from '../src/datapath/maps/catalog.js';
import { IpcacheMap } from '../src/datapath/maps/ipcache/index.js';
import { PolicyMap } from '../src/datapath/maps/policy/index.js';
import { parseManifests } from '../src/k8s/index.js';
import { probe } from '../src/lab/index.js';
import { run } from '../src/shared/exec.js';
import { repoRoot } from '../src/shared/paths.js';
import { WeirError } from '../src/shared/errors.js';
import { rssMiB, type AgentStatus } from './policy.js';
import { percentile } from './scale.js';

export interface ClusterRow {
  metric: string;
  pods: number;
  value: number;
  unit: string;
  note?: string;
}

/** Pods added one at a time at each size (their convergence is the p50/p99). */
const singles = 20;
/** Background pods per node at most (a node's /24 holds 253; the timed pods go to node1 too). */
const perNode = 200;
const port = 8080;
const ns = 'conv';

export const nodesFor = (maxPods: number) => Math.max(2, Math.ceil(maxPods / perNode));

export const clusterLegend = (counts: number[]) =>
  `- **cluster**: a lab of ${nodesFor(Math.max(...counts))} nodes on etcd (tunnel mode). identity allocations: new label sets ` +
  'allocated one at a time through the Store on etcd (lock + create-if-absent transaction). etcd writes: the ' +
  'revision delta of etcd for adding and for removing one pod, after every node reconciled. convergence at N ' +
  'pods: node2 runs a target pod whose ingress policy allows role=client on 8080; the lab grows to N - ' +
  `${singles} workload-less pods (one label set each, role=client, round-robin over all nodes; "one apply" is ` +
  `the time until node2 enforces all of them), then ${singles} pods with a workload are added one at a time on ` +
  "node1; per pod, from the API call (or from its address entering node1's ipcache) until node2's ipcache maps " +
  "it to its cluster identity and the target's policy map on node2 allows that identity (pinned maps polled " +
  'every ~5 ms); then each new pod connects to the target across the tunnel (must be accepted; a pod without ' +
  'the label is refused). Every timed pod is measured, not a sample (bench/cluster.ts)\n';

const weir = join(repoRoot, 'bin/weir');

async function cli(lab: string, args: string[], timeoutMs = 600_000): Promise<string> {
  return (await run([weir, ...args, '--lab', lab], { timeoutMs })).stdout;
}

/** etcd's current revision, asked from inside the lab's underlay namespace. */
function etcdRevision(lab: string): number {
  const script = `
    const { Etcd3 } = await import('etcd3');
    const c = new Etcd3({ hosts: 'http://198.18.0.1:2379' });
    const r = await c.get('weir/').exec();
    console.log(r.header.revision);
    c.close();`;
  const r = spawnSync(
    'nsenter',
    [`--net=/var/run/netns/weir-${lab}-underlay`, process.execPath, '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 30_000, cwd: repoRoot },
  );
  if (r.status !== 0) throw new WeirError('ERR_BENCH_SERVER', `etcd revision of lab ${lab}: ${r.stderr}`);
  return Number(r.stdout.trim());
}

interface PodSpec {
  name: string;
  node: string;
  labels: Record<string, string>;
  workload: boolean;
}

const podYaml = (p: PodSpec) => `apiVersion: v1
kind: Pod
metadata:
  name: ${p.name}
  namespace: ${ns}
  labels: {${Object.entries(p.labels)
    .map(([k, v]) => `${k}: "${v}"`)
    .join(', ')}}
${p.workload ? '' : '  annotations: {weir.dev/workload: none}\n'}spec: {nodeName: ${p.node}, containers: [{name: c, ports: [{containerPort: ${port}}]}]}`;

const manifests = (pods: PodSpec[], extra = '') =>
  parseManifests(
    [
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${ns}}`,
      ...pods.map(podYaml),
      ...(extra ? [extra] : []),
    ].join('\n---\n'),
    '<bench>',
  ).map(toDesired);

const targetPolicy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: conv-target, namespace: ${ns}}
spec:
  endpointSelector: {matchLabels: {app: conv-target}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: client}}]
    toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]`;

/**
 * Identity allocations per second through the Store on the lab's etcd: a node of the bench's own
 * ("bench", its lease, its watch-fed cache) allocates `n` new label sets one at a time, each under
 * the allocator lock with its create-if-absent transaction, as an agent does; then frees them.
 */
function identityAllocations(lab: string, n: number): number {
  const dist = (p: string) => JSON.stringify(join(repoRoot, 'dist/src', p));
  const script = `
    const { EtcdStore } = await import(${dist('store/etcd.js')});
    const { Informer } = await import(${dist('cluster/informer.js')});
    const { ClusterIdentities } = await import(${dist('cluster/identities.js')});
    const store = await EtcdStore.connect({ endpoints: ['http://198.18.0.1:2379'] });
    const cache = new Informer(store, 'weir/state/');
    await cache.start();
    const lease = await store.grantLease(60);
    const ids = new ClusterIdentities(store, cache, 'bench', () => lease);
    const sets = [];
    const t0 = performance.now();
    for (let i = 0; i < ${n}; i++) {
      sets.push(['k8s:app=bench-ids', 'k8s:n=' + i, 'k8s:io.kubernetes.pod.namespace=default']);
      await ids.sync(sets);
    }
    const ms = performance.now() - t0;
    await ids.sync([]);
    await ids.collect();
    await lease.release();
    await ids.close();
    await cache.stop();
    await store.close();
    console.log(JSON.stringify({ ms }));
    process.exit(0);`;
  const r = spawnSync(
    'nsenter',
    [`--net=/var/run/netns/weir-${lab}-underlay`, process.execPath, '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 300_000, cwd: repoRoot },
  );
  if (r.status !== 0)
    throw new WeirError('ERR_BENCH_SERVER', `identity allocations on lab ${lab}: ${r.stderr}`);
  const { ms } = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { ms: number };
  return (n * 1000) / ms;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A call to a node's agent API, tried again (up to 3 times, 1 s apart) when its socket refused or
 * dropped the connection: under the machine's load an agent's socket has answered EPIPE. Applies
 * and reads are idempotent; a retried call's time counts in what it measures.
 */
async function api<T>(
  lab: string,
  node: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await agentClient(lab, 600_000, node).call<T>(method, path, body);
    } catch (err) {
      if (!(err instanceof WeirError) || err.code !== 'ERR_AGENT_UNREACHABLE' || attempt >= 3) throw err;
      await sleep(1000);
    }
  }
}

/** Reconciled revision of every node ≥ `revision` (all caught up). */
async function settled(lab: string, revision: number, timeoutMs = 300_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const { items } = await api<{ items: { reconciledRevision?: number }[] }>(
      lab,
      'node1',
      'GET',
      '/v1/nodes',
    );
    if (items.every((n) => (n.reconciledRevision ?? 0) >= revision)) return;
    if (Date.now() > end) throw new WeirError('ERR_BENCH_SERVER', `lab ${lab}: nodes not settled`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Applies through node1's API and waits until every node reconciled the change. */
async function applySettled(lab: string, objects: unknown[], path = '/v1/apply'): Promise<void> {
  const r = etcdRevision(lab);
  await api(lab, 'node1', 'POST', path, { objects });
  await settled(lab, r + 1);
}

/** The pinned maps the bench reads: node1's ipcache, node2's ipcache and the target's policy map. */
class Maps {
  private readonly raw: BpfMap[];
  private readonly ip1: IpcacheMap;
  private readonly ip2: IpcacheMap;
  private readonly policy: PolicyMap;

  constructor(lab: string, targetEndpoint: number) {
    const m1 = openPinned(nodePinDir(lab, 'node1'), 'weir_ipcache');
    const m2 = openPinned(nodePinDir(lab, 'node2'), 'weir_ipcache');
    this.raw = [m1, m2];
    this.ip1 = new IpcacheMap(m1);
    this.ip2 = new IpcacheMap(m2);
    this.policy = new PolicyMap(
      BpfMap.fromPin(join(nodePinDir(lab, 'node2'), `policy_${targetEndpoint}`)),
      targetEndpoint,
    );
  }

  /** node1's pod addresses (/32 of 10.244.0.) with their identities. */
  node1Pods(): Map<string, number> {
    const out = new Map<string, number>();
    for (const e of this.ip1.list())
      if (e.prefix.startsWith('10.244.0.') && e.prefix.endsWith('/32') && e.identity >= 256)
        out.set(e.prefix, e.identity);
    return out;
  }

  node2Identity(prefix: string): number | undefined {
    return this.ip2.get(prefix);
  }

  /** Identities the target on node2 admits on port/TCP (ingress allow entries). */
  allowed(): Set<number> {
    const out = new Set<number>();
    for (const e of this.policy.list())
      if (e.key.direction === 'ingress' && e.key.port === port && e.key.protocol === 6 && !e.value.deny)
        out.add(e.key.identity);
    return out;
  }

  close(): void {
    for (const m of this.raw) m.close();
    this.policy.close();
  }
}

interface Timed {
  /** API call → node2 enforces. */
  apiMs: number;
  /** node1's ipcache → node2 enforces. */
  nodeMs: number;
}

/**
 * Adds one pod with a workload on node1 through node1's API and times it until node2 enforces
 * the target's policy with its identity; then a real connection from it to the target.
 */
async function timeOne(lab: string, maps: Maps, name: string, targetIp: string): Promise<Timed> {
  const before = new Set(maps.node1Pods().keys());
  const t0 = performance.now();
  let done = false;
  let failed: unknown;
  const apply = api(lab, 'node1', 'POST', '/v1/apply', {
    objects: manifests([{ name, node: 'node1', labels: { role: 'client', app: name }, workload: true }]),
  })
    .catch((err: unknown) => (failed = err))
    .finally(() => (done = true));
  let prefix: string | undefined;
  let identity = 0;
  let tA = 0;
  let tB = 0;
  const end = Date.now() + 120_000;
  while (!tB) {
    if (failed) throw failed as Error;
    const t = performance.now();
    if (!prefix)
      for (const [p, id] of maps.node1Pods())
        if (!before.has(p)) {
          prefix = p;
          identity = id;
          tA = t;
        }
    if (prefix) {
      const t2 = performance.now();
      if (maps.node2Identity(prefix) === identity && maps.allowed().has(identity)) tB = t2;
    }
    if (Date.now() > end)
      throw new WeirError('ERR_BENCH_SERVER', `cluster: pod ${name} not enforced on node2 in 120 s`);
    if (!tB) await sleep(5);
  }
  await apply;
  if (!done || failed) throw new WeirError('ERR_BENCH_SERVER', `cluster: apply of ${name} failed`);
  const r = await probe(lab, `${ns}/${name}`, { ip: targetIp, port, protocol: 'TCP' }, 3000);
  if (!r.ok)
    throw new WeirError(
      'ERR_BENCH_SERVER',
      `cluster: ${ns}/${name} (identity ${identity}) could not connect to the target on node2: ${r.error}`,
    );
  return { apiMs: tB - t0, nodeMs: tB - tA };
}

/** The agents' VmRSS (MiB), summed over the nodes. */
async function agentsRss(lab: string, nodes: string[]): Promise<number> {
  let sum = 0;
  for (const n of nodes) {
    const st = await api<AgentStatus>(lab, n, 'GET', '/v1/status');
    sum += rssMiB(st.pid);
  }
  return Math.round(sum);
}

function memAvailableMiB(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

export async function measureCluster(
  lab: string,
  counts: number[],
  log: (l: string) => void,
): Promise<ClusterRow[]> {
  const rows: ClusterRow[] = [];
  const k = nodesFor(Math.max(...counts));
  const nodes = Array.from({ length: k }, (_, i) => `node${i + 1}`);
  await run([weir, 'lab', 'down', '--lab', lab], { timeoutMs: 120_000 }).catch(() => undefined);
  const memBefore = memAvailableMiB();
  let maps: Maps | undefined;
  try {
    const tUp = performance.now();
    await cli(lab, ['lab', 'up', '--nodes', String(k)]);
    log(`cluster: lab of ${k} nodes up in ${((performance.now() - tUp) / 1000).toFixed(1)} s`);
    const perSecond = identityAllocations(lab, 200);
    rows.push({
      metric: 'identity allocations',
      pods: 0,
      value: perSecond,
      unit: '/s',
      note: '200, one at a time',
    });
    log(`cluster: ${perSecond.toFixed(0)} identity allocations/s (etcd)`);
    // etcd writes for one pod added and removed (the desired object, status, identity refs, …).
    const one = manifests([{ name: 'w', node: 'node1', labels: { app: 'w' }, workload: false }]);
    await applySettled(lab, one.slice(0, 1));
    await sleep(2000);
    const r0 = etcdRevision(lab);
    await applySettled(lab, one);
    await sleep(2000);
    const r1 = etcdRevision(lab);
    await applySettled(lab, [{ kind: 'Pod', namespace: ns, name: 'w' }], '/v1/delete');
    await sleep(2000);
    const r2 = etcdRevision(lab);
    const note = `${k} nodes`;
    rows.push({ metric: 'etcd writes per pod added', pods: 1, value: r1 - r0, unit: 'writes', note });
    rows.push({ metric: 'etcd writes per pod removed', pods: 1, value: r2 - r1, unit: 'writes', note });
    log(`cluster: etcd writes per pod (${k} nodes): +${r1 - r0} added, +${r2 - r1} removed`);

    // The target on node2 and its policy; a pod without role=client on node1 must be refused.
    await applySettled(
      lab,
      manifests(
        [
          { name: 'conv-target', node: 'node2', labels: { app: 'conv-target' }, workload: true },
          { name: 'conv-outsider', node: 'node1', labels: { app: 'conv-outsider' }, workload: true },
        ],
        targetPolicy,
      ),
    );
    const eps = await api<{ items: { id: number; namespace: string; pod: string }[] }>(
      lab,
      'node2',
      'GET',
      '/v1/endpoints',
    );
    const target = eps.items.find((e) => e.namespace === ns && e.pod === 'conv-target');
    if (!target) throw new WeirError('ERR_BENCH_SERVER', 'cluster: no endpoint for the target on node2');
    const { items: podList } = await api<{ items: { namespace: string; name: string; ip: string }[] }>(
      lab,
      'node1',
      'GET',
      '/v1/pods',
    );
    const targetIp = podList.find((p) => p.namespace === ns && p.name === 'conv-target')?.ip;
    if (!targetIp) throw new WeirError('ERR_BENCH_SERVER', 'cluster: the target has no address');
    const refused = await probe(lab, `${ns}/conv-outsider`, { ip: targetIp, port, protocol: 'TCP' }, 1500);
    if (refused.ok)
      throw new WeirError('ERR_BENCH_SERVER', 'cluster: a pod without role=client reached the target');
    maps = new Maps(lab, target.id);

    let have = 0;
    let next = 0;
    for (const total of counts) {
      // Grow to total - singles pods (spread over every node, in batches through node1's API).
      const batch = total - singles - have;
      if (batch > 0) {
        const specs: PodSpec[] = Array.from({ length: batch }, (_, i) => ({
          name: `b${next + i}`,
          node: nodes[(next + i) % k] as string,
          labels: { role: 'client', app: `b${next + i}` },
          workload: false,
        }));
        next += batch;
        const want = maps.allowed().size + batch;
        const t0 = performance.now();
        for (let i = 0; i < specs.length; i += 250)
          await api(lab, 'node1', 'POST', '/v1/apply', { objects: manifests(specs.slice(i, i + 250)) });
        const applied = performance.now() - t0;
        const end = Date.now() + 600_000;
        while (maps.allowed().size < want) {
          if (Date.now() > end)
            throw new WeirError('ERR_BENCH_SERVER', `cluster: batch to ${total} not enforced`);
          await sleep(20);
        }
        const ms = performance.now() - t0;
        rows.push({
          metric: 'one apply of workload-less pods over all nodes, until node2 enforces all',
          pods: batch,
          value: ms,
          unit: 'ms',
          note: `API answered after ${Math.round(applied)} ms (every node created its pods)`,
        });
        log(
          `cluster: +${batch} pods over ${k} nodes: applied ${Math.round(applied)} ms, node2 enforces all ${Math.round(ms)} ms`,
        );
      }
      const fromApi: number[] = [];
      const node: number[] = [];
      for (let i = 0; i < singles; i++) {
        const t = await timeOne(lab, maps, `s${total}x${i}`, targetIp);
        fromApi.push(t.apiMs);
        node.push(t.nodeMs);
      }
      have = total;
      const n = `${singles} pods one at a time, each connected to the target (node2) once enforced`;
      rows.push(
        {
          metric: 'convergence p50 (API → node2 enforces)',
          pods: total,
          value: percentile(fromApi, 50),
          unit: 'ms',
          note: n,
        },
        {
          metric: 'convergence p99 (API → node2 enforces)',
          pods: total,
          value: percentile(fromApi, 99),
          unit: 'ms',
          note: n,
        },
        {
          metric: "convergence p50 (node1's ipcache → node2 enforces)",
          pods: total,
          value: percentile(node, 50),
          unit: 'ms',
        },
        {
          metric: "convergence p99 (node1's ipcache → node2 enforces)",
          pods: total,
          value: percentile(node, 99),
          unit: 'ms',
        },
      );
      const rss = await agentsRss(lab, nodes);
      rows.push(
        { metric: 'agents VmRSS (sum)', pods: total, value: rss, unit: 'MiB', note: `${k} agents` },
        {
          metric: 'MemAvailable drop since before lab up',
          pods: total,
          value: Math.round(memBefore - memAvailableMiB()),
          unit: 'MiB',
          note: 'the whole machine (other work counts too)',
        },
      );
      log(
        `cluster: ${total} pods: API → node2 p50 ${percentile(fromApi, 50).toFixed(0)} / p99 ${percentile(fromApi, 99).toFixed(0)} ms; ` +
          `node1 → node2 p50 ${percentile(node, 50).toFixed(0)} / p99 ${percentile(node, 99).toFixed(0)} ms; agents ${rss} MiB`,
      );
    }
  } finally {
    maps?.close();
    await run([weir, 'lab', 'down', '--lab', lab], { timeoutMs: 300_000 }).catch(() => undefined);
  }
  return rows;
}
