// The cluster's control plane (bench section `cluster`): a lab of two nodes on etcd
// (`weir lab up --nodes 2`, tunnel mode). Identity allocations per second: a node of the bench's own
// allocates new label sets one at a time through ClusterIdentities on the lab's etcd (lock,
// create-if-absent transaction, its reference). etcd writes per pod change: etcd's revision (every
// write raises it by one) before and after one pod is added and removed, once every node
// reconciled. Convergence: workload-less pods, each its own label set, are applied for node1; the
// bench polls both nodes' pinned ipcache maps and times, per pod, from its address entering node1's
// ipcache (node1 runs it) until node2's ipcache maps it to its cluster identity (node2 judges its
// packets with it); the cluster grows in one apply to N - 20 pods, then 20 pods are added one at a
// time and their times give p50/p99 at N. Cross-node throughput is the `vxlan` section's.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodePinDir } from '../src/agent/paths.js';
import { openPinned } from '../src/datapath/maps/catalog.js';
import { IpcacheMap } from '../src/datapath/maps/ipcache/index.js';
import { run } from '../src/shared/exec.js';
import { repoRoot } from '../src/shared/paths.js';
import { WeirError } from '../src/shared/errors.js';
import { percentile } from './scale.js';

export interface ClusterRow {
  metric: string;
  pods: number;
  value: number;
  unit: string;
  note?: string;
}

export const clusterLegend =
  '- **cluster**: a lab of two nodes on etcd (tunnel mode). identity allocations: new label sets allocated ' +
  'one at a time through the Store on etcd (lock + create-if-absent transaction). etcd writes: the revision ' +
  'delta of etcd for adding and for removing one pod, after every node reconciled. convergence at N pods: per ' +
  "pod, from its address entering node1's ipcache until node2's ipcache maps it to its cluster identity (both " +
  'pinned maps polled every ~5 ms); the lab grows to N - 20 pods in one apply (its p99 is the whole batch), ' +
  'then 20 pods are added one at a time (p50/p99 of those). A node holds 253 pods (a /24), so N stops at ' +
  '200 here (bench/cluster.ts)\n';

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

const pods = (prefix: string, n: number, node: string) =>
  Array.from(
    { length: n },
    (_, i) => `apiVersion: v1
kind: Pod
metadata:
  name: ${prefix}-${i}
  namespace: default
  labels: {app: ${prefix}, n: "${i}"}
  annotations: {weir.dev/workload: none}
spec: {nodeName: ${node}, containers: [{name: c}]}`,
  ).join('\n---\n');

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

/** Pod addresses (x.x.x.x/32) with an identity from the pods' range, in the node's ipcache. */
function podEntries(lab: string, node: string, podCidr: string): Map<string, number> {
  const map = openPinned(nodePinDir(lab, node), 'weir_ipcache');
  try {
    const out = new Map<string, number>();
    for (const e of new IpcacheMap(map).list())
      if (e.prefix.startsWith(podCidr) && e.prefix.endsWith('/32') && e.identity >= 256)
        out.set(e.prefix, e.identity);
    return out;
  } finally {
    map.close();
  }
}

/** Reconciled revision of every node ≥ etcd's revision at the time of the call (all caught up). */
async function settled(lab: string, revision: number, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const { items } = JSON.parse(await cli(lab, ['node', 'list', '-o', 'json'])) as {
      items: { reconciledRevision?: number }[];
    };
    if (items.every((n) => (n.reconciledRevision ?? 0) >= revision)) return;
    if (Date.now() > end) throw new WeirError('ERR_BENCH_SERVER', `lab ${lab}: nodes not settled`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Pods added one at a time at each size (their convergence is the p50/p99). */
const singles = 20;

/**
 * Applies `yaml` (n new pods for node1) and times, per pod, from its address entering node1's
 * ipcache until node2's ipcache maps it to its identity.
 */
async function timeApply(lab: string, file: string, yaml: string, n: number): Promise<number[]> {
  await writeFile(file, yaml);
  const seen1 = new Map<string, number>();
  const seen2 = new Map<string, number>();
  const before1 = new Set(podEntries(lab, 'node1', '10.244.0.').keys());
  let done = false;
  const apply = cli(lab, ['apply', '-f', file]).finally(() => (done = true));
  const end = Date.now() + 600_000;
  for (;;) {
    const t = performance.now();
    for (const p of podEntries(lab, 'node1', '10.244.0.').keys())
      if (!before1.has(p) && !seen1.has(p)) seen1.set(p, t);
    for (const p of podEntries(lab, 'node2', '10.244.0.').keys())
      if (seen1.has(p) && !seen2.has(p)) seen2.set(p, performance.now());
    if (done && seen1.size >= n && seen2.size >= seen1.size) break;
    if (Date.now() > end) throw new WeirError('ERR_BENCH_SERVER', `cluster: ${file} not converged`);
    await new Promise((r) => setTimeout(r, 5));
  }
  await apply;
  return [...seen2].map(([p, t]) => t - (seen1.get(p) ?? t));
}

export async function measureCluster(
  lab: string,
  counts: number[],
  log: (l: string) => void,
): Promise<ClusterRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-cluster-'));
  const rows: ClusterRow[] = [];
  await run([weir, 'lab', 'down', '--lab', lab], { timeoutMs: 120_000 }).catch(() => undefined);
  try {
    await cli(lab, ['lab', 'up', '--nodes', '2']);
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
    await writeFile(join(dir, 'one.yaml'), pods('w', 1, 'node1'));
    const r0 = etcdRevision(lab);
    await cli(lab, ['apply', '-f', join(dir, 'one.yaml')]);
    await settled(lab, r0 + 1);
    await new Promise((r) => setTimeout(r, 2000));
    const r1 = etcdRevision(lab);
    await cli(lab, ['delete', '-f', join(dir, 'one.yaml')]);
    await settled(lab, r1 + 1);
    await new Promise((r) => setTimeout(r, 2000));
    const r2 = etcdRevision(lab);
    rows.push({ metric: 'etcd writes per pod added', pods: 1, value: r1 - r0, unit: 'writes' });
    rows.push({ metric: 'etcd writes per pod removed', pods: 1, value: r2 - r1, unit: 'writes' });
    log(`cluster: etcd writes per pod: +${r1 - r0} added, +${r2 - r1} removed`);

    let have = 0;
    for (const total of counts) {
      // Grow to total - singles pods in one apply (their convergence is one batch), then add
      // `singles` pods one at a time, each timed on its own: the distribution at that size.
      const batch = total - singles - have;
      if (batch > 0) {
        const ms = await timeApply(
          lab,
          join(dir, `b${total}.yaml`),
          pods(`b${total}`, batch, 'node1'),
          batch,
        );
        rows.push({
          metric: 'convergence of one apply (all its pods), p99',
          pods: batch,
          value: percentile(ms, 99),
          unit: 'ms',
        });
      }
      const ms: number[] = [];
      for (let i = 0; i < singles; i++)
        ms.push(
          ...(await timeApply(lab, join(dir, `s${total}-${i}.yaml`), pods(`s${total}x${i}`, 1, 'node1'), 1)),
        );
      have = total;
      rows.push({ metric: 'convergence p50', pods: total, value: percentile(ms, 50), unit: 'ms' });
      rows.push({ metric: 'convergence p99', pods: total, value: percentile(ms, 99), unit: 'ms' });
      log(
        `cluster: ${total} pods: convergence p50 ${percentile(ms, 50).toFixed(0)} ms, p99 ${percentile(ms, 99).toFixed(0)} ms (${ms.length} pods one at a time)`,
      );
    }
  } finally {
    await run([weir, 'lab', 'down', '--lab', lab], { timeoutMs: 120_000 }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
