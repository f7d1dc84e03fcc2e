// The cluster's control plane (bench section `cluster`): a lab of two nodes on etcd
// (`weir lab up --nodes 2`, tunnel mode). Convergence: workload-less pods, each its own label set,
// are applied for node1; the bench polls both nodes' pinned ipcache maps and times, per pod, from
// its address entering node1's ipcache (node1 runs it) until node2's ipcache maps it to its
// cluster identity (node2 judges its packets with it) — p50/p99 at each count. etcd writes per
// pod change: etcd's revision (every write raises it by one) before and after one pod is added and
// one removed, once every node has reconciled. Cross-node throughput is the `vxlan` section's.
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
  '- **cluster**: a lab of two nodes on etcd (tunnel mode). convergence: workload-less pods, one label ' +
  "set each, applied for node1; per pod, from its address entering node1's ipcache until node2's " +
  'ipcache maps it to its cluster identity (both pinned maps polled every ~5 ms); etcd writes: the ' +
  'revision delta of etcd for adding and for removing one pod, after every node reconciled (bench/cluster.ts)\n';

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
      const prefix = `c${total}`;
      const n = total - have;
      await writeFile(join(dir, `${prefix}.yaml`), pods(prefix, n, 'node1'));
      const seen1 = new Map<string, number>();
      const seen2 = new Map<string, number>();
      const before1 = new Set(podEntries(lab, 'node1', '10.244.0.').keys());
      const apply = cli(lab, ['apply', '-f', join(dir, `${prefix}.yaml`)]);
      let done = false;
      void apply.finally(() => (done = true));
      const end = Date.now() + 600_000;
      for (;;) {
        const t = performance.now();
        for (const p of podEntries(lab, 'node1', '10.244.0.').keys())
          if (!before1.has(p) && !seen1.has(p)) seen1.set(p, t);
        for (const p of podEntries(lab, 'node2', '10.244.0.').keys())
          if (seen1.has(p) && !seen2.has(p)) seen2.set(p, performance.now());
        if (done && seen1.size >= n && seen2.size >= seen1.size) break;
        if (Date.now() > end) throw new WeirError('ERR_BENCH_SERVER', `cluster: ${total} pods not converged`);
        await new Promise((r) => setTimeout(r, 5));
      }
      await apply;
      const ms = [...seen2].map(([p, t]) => t - (seen1.get(p) ?? t));
      have = total;
      rows.push({ metric: 'convergence p50', pods: total, value: percentile(ms, 50), unit: 'ms' });
      rows.push({ metric: 'convergence p99', pods: total, value: percentile(ms, 99), unit: 'ms' });
      log(
        `cluster: ${total} pods: convergence p50 ${percentile(ms, 50).toFixed(0)} ms, p99 ${percentile(ms, 99).toFixed(0)} ms (${ms.length} pods)`,
      );
    }
  } finally {
    await run([weir, 'lab', 'down', '--lab', lab], { timeoutMs: 120_000 }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
