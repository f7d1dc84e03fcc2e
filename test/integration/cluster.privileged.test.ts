// A lab of several nodes through the CLI, with real traffic: `weir lab up --nodes 3` makes three
// node namespaces on an underlay bridge, runs etcd there and one agent per node on it; pods are
// placed by spec.nodeName or spread; identities are allocated once for the whole cluster (the
// same id for a label set on every node, none twice even when nodes allocate at once, freed when
// no node uses it); a pod on node1 reaches a pod on node2 over native routing, and node2 judges
// it with the sender's identity from its ipcache, as a CiliumNetworkPolicy selecting by labels
// says; `weir observe` on node2 shows the verdict; `weir lab down` leaves nothing behind.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { crossNodePods, serverFromClient } from '../support/cluster-pods.js';
import { labEtcd, onNode as onNodeOf, probe8080 } from '../support/cluster-nodes.js';

const LAB = testLab('t-cluster');

const pods = crossNodePods;

/** Pods without a node, each its own label set: the API spreads them, every node allocates. */
const spread = Array.from(
  { length: 9 },
  (_, i) => `
apiVersion: v1
kind: Pod
metadata: { name: s${i}, labels: { app: spread, n: "${i}" } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
`,
).join('---\n');

const late = `
apiVersion: v1
kind: Pod
metadata: { name: late, labels: { app: late } }
spec: { nodeName: node3, containers: [{ name: c, ports: [{ containerPort: 8080 }] }] }
`;

const cnp = serverFromClient;

interface PodRow {
  name: string;
  node: string;
  ip: string;
}
interface Ident {
  id: number;
  labels: string[];
}

const onNode = (node: string, args: string[]) => onNodeOf(LAB, node, args);

/** The keys under `prefix` of the lab's etcd, read from inside its namespace. */
function etcdKeys(prefix: string): string[] {
  return labEtcd<string[]>(
    LAB,
    `const { items } = await s.list(${JSON.stringify(prefix)});
    console.log(JSON.stringify(items.map((i) => i.key)));`,
  );
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

const probe = (from: string, to: string) => probe8080(LAB, from, to, 1500);

describe('a lab of several nodes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-cluster-test-'));
    await writeFile(join(dir, 'pods.yaml'), pods);
    await writeFile(join(dir, 'spread.yaml'), spread);
    await writeFile(join(dir, 'cnp.yaml'), cnp);
    await writeFile(join(dir, 'gone.yaml'), spread.split('---\n').slice(0, 2).join('---\n'));
    await cli(['lab', 'down'], LAB);
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  // Without the cluster DNS: the pod counts and spreading below are of this test's pods only.
  it('lab up --nodes 3: nodes on an underlay, etcd, one agent each, all Ready', async () => {
    await ok(['lab', 'up', '--nodes', '3', '--routing', 'native', '--no-cluster-dns'], LAB, 240_000);
    const { items } = JSON.parse(await ok(['node', 'list', '-o', 'json'], LAB)) as {
      items: { name: string; status: string; underlayIP: string; podCIDR: string; netns: string }[];
    };
    assert.deepEqual(
      items.map((n) => [n.name, n.status, n.underlayIP, n.podCIDR, n.netns]),
      [
        ['node1', 'Ready', '198.18.0.11', '10.244.0.0/24', `weir-${LAB}-node1`],
        ['node2', 'Ready', '198.18.0.12', '10.244.1.0/24', `weir-${LAB}-node2`],
        ['node3', 'Ready', '198.18.0.13', '10.244.2.0/24', `weir-${LAB}-node3`],
      ],
    );
    // Any node's API answers for the cluster.
    const table = await onNode('node3', ['node', 'list']);
    assert.match(table, /^NAME\s+STATUS\s+INTERNAL-IP\s+POD-CIDR\s+AGE\n/);
    assert.match(table, /node2\s+Ready\s+198\.18\.0\.12\s+10\.244\.1\.0\/24/);
    // The etcd weir runs for the lab: in the underlay namespace, its data in the lab's state.
    assert.ok(existsSync(`/var/run/netns/weir-${LAB}-underlay`));
    const pid = Number(readFileSync(`/run/weir/labs/${LAB}/etcd.pid`, 'utf8'));
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /etcd/);
    assert.ok(existsSync(`/run/weir/labs/${LAB}/etcd/data/member`));
  });

  it('places pods by spec.nodeName, else spreads them evenly', async () => {
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB);
    await ok(['apply', '-f', join(dir, 'spread.yaml')], LAB, 240_000);
    const list = JSON.parse(await onNode('node2', ['get', 'pods', '-o', 'json'])) as {
      items: { metadata: { name: string }; spec: { nodeName: string }; status: { podIP: string } }[];
    };
    const rows = {
      items: list.items.map((p): PodRow => ({
        name: p.metadata.name,
        node: p.spec.nodeName,
        ip: p.status.podIP,
      })),
    };
    const byName = new Map(rows.items.map((p) => [p.name, p]));
    assert.equal(byName.get('client')?.node, 'node1');
    assert.equal(byName.get('server')?.node, 'node2');
    assert.match(byName.get('server')?.ip ?? '', /^10\.244\.1\./);
    const count = new Map<string, number>();
    for (const p of rows.items) count.set(p.node, (count.get(p.node) ?? 0) + 1);
    // 12 pods on 3 nodes: 4 each (node1 had 2, node2 1 before the spread ones).
    assert.deepEqual([...count].sort(), [
      ['node1', 4],
      ['node2', 4],
      ['node3', 4],
    ]);
  });

  it('one identity per label set across the cluster, allocated once even when nodes race', async () => {
    const lists = await Promise.all(
      ['node1', 'node2', 'node3'].map(async (n) =>
        (JSON.parse(await onNode(n, ['identity', 'list', '-o', 'json'])) as Ident[]).filter(
          (i) => i.id >= 256,
        ),
      ),
    );
    // 12 pods, 12 label sets; every node sees all (it selects or caches every pod).
    for (const l of lists) assert.equal(l.length, 12);
    assert.deepEqual(lists[1], lists[0]);
    assert.deepEqual(lists[2], lists[0]);
    const ids = (lists[0] ?? []).map((i) => i.id);
    assert.equal(new Set(ids).size, ids.length, 'no id twice');
    // Cilium's kvstore layout: id/<id> per label set, value/<labels>/<node> per node using it.
    const keys = etcdKeys('weir/state/identities/v1/');
    const idKeys = keys.filter((k) => k.includes('/id/'));
    assert.deepEqual(idKeys.map((k) => Number(k.split('/').pop())).sort(), [...ids].sort());
    const serverRefs = keys.filter((k) => k.includes('/value/') && k.includes('k8s:app=server;'));
    assert.deepEqual(serverRefs.map((k) => k.split('/').pop()).sort(), ['node1', 'node2', 'node3']);
  });

  it("native routing: node2 judges node1's pods by their identity, as the policy says", async () => {
    assert.ok(await probe('default/client', 'default/server'), 'client -> server before any policy');
    assert.ok(await probe('default/other', 'default/server'), 'other -> server before any policy');
    await ok(['apply', '-f', join(dir, 'cnp.yaml')], LAB);
    assert.ok(await probe('default/client', 'default/server'), 'client -> server is allowed');
    assert.ok(!(await probe('default/other', 'default/server')), 'other -> server is denied');
    // node2's ipcache maps node1's pods to their cluster identities.
    const clientId = (
      JSON.parse(await onNode('node1', ['endpoint', 'list', '-o', 'json'])) as {
        pod: string;
        identity: number;
        ips: string[];
      }[]
    ).find((e) => e.pod === 'client');
    assert.ok(clientId);
    const ipcache = JSON.parse(await onNode('node2', ['bpf', 'ipcache', 'list', '-o', 'json'])) as {
      prefix: string;
      identity: number;
    }[];
    assert.equal(
      ipcache.find((e) => e.prefix === `${clientId.ips[0]}/32`)?.identity,
      clientId.identity,
      "node2's ipcache has node1's client with its identity",
    );
    // node2 observed the denial of other's SYN, naming other (a remote endpoint: ID 0) and its identity.
    const flows = (await onNode('node2', ['observe', '--verdict', 'DROPPED', '-o', 'json']))
      .split('\n')
      .filter(Boolean)
      .map(
        (l) =>
          JSON.parse(l) as {
            drop_reason_desc?: string;
            source?: { ID?: number; pod_name?: string; namespace?: string; labels?: string[] };
          },
      );
    assert.ok(
      flows.some(
        (f) =>
          f.drop_reason_desc === 'POLICY_DENIED' &&
          f.source?.labels?.includes('k8s:app=other') &&
          f.source.pod_name === 'other' &&
          f.source.namespace === 'default' &&
          f.source.ID === 0,
      ),
      'node2 shows the POLICY_DENIED drop from default/other',
    );
  });

  it('agent kill -9 on node2: its pods keep their verdicts; lab up starts it again', async () => {
    const pid = Number(readFileSync(`/run/weir/labs/${LAB}/agent-node2/agent.pid`, 'utf8'));
    process.kill(pid, 'SIGKILL');
    while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
    assert.ok(await probe('default/client', 'default/server'), 'client -> server still allowed');
    assert.ok(!(await probe('default/other', 'default/server')), 'other -> server still denied');
    await ok(['lab', 'up', '--nodes', '3', '--routing', 'native', '--no-cluster-dns'], LAB, 240_000);
    assert.notEqual(Number(readFileSync(`/run/weir/labs/${LAB}/agent-node2/agent.pid`, 'utf8')), pid);
    assert.ok(await probe('default/client', 'default/server'));
    assert.ok(!(await probe('default/other', 'default/server')));
  });

  it('etcd stopped: verdicts stay, agents answer from their caches; etcd back, the watches resume', async () => {
    const pid = Number(readFileSync(`/run/weir/labs/${LAB}/etcd.pid`, 'utf8'));
    process.kill(pid, 'SIGKILL');
    while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
    assert.ok(await probe('default/client', 'default/server'), 'client -> server still allowed');
    assert.ok(!(await probe('default/other', 'default/server')), 'other -> server still denied');
    const cached = await onNode('node2', ['get', 'pods']);
    assert.match(cached, /server\s+1\/1\s+Running/, "node2's API answers from its cache");
    // `lab up` again starts etcd on its data; the agents' watches resume from their revisions.
    await ok(['lab', 'up', '--nodes', '3', '--routing', 'native', '--no-cluster-dns'], LAB, 240_000);
    await writeFile(join(dir, 'late.yaml'), late);
    await ok(['apply', '-f', join(dir, 'late.yaml')], LAB, 180_000);
    assert.ok(await probe('default/client', 'default/late'), 'a pod created after the outage is reachable');
    const lists = await Promise.all(
      ['node1', 'node3'].map(async (n) =>
        (JSON.parse(await onNode(n, ['identity', 'list', '-o', 'json'])) as Ident[]).filter(
          (i) => i.id >= 256,
        ),
      ),
    );
    assert.deepEqual(lists[1], lists[0], 'the nodes still agree on every identity');
  });

  it('frees an identity when no node uses it any more', async () => {
    const before = etcdKeys('weir/state/identities/v1/id/').length;
    await ok(['delete', '-f', join(dir, 'gone.yaml')], LAB, 120_000);
    const deadline = Date.now() + 20_000;
    let after = before;
    while (Date.now() < deadline) {
      after = etcdKeys('weir/state/identities/v1/id/').length;
      if (after === before - 2) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(after, before - 2);
    assert.ok(!etcdKeys('weir/state/identities/v1/value/').some((k) => k.includes('k8s:n=0;')));
  });

  it('lab down removes the nodes, the underlay, etcd and the agents', async () => {
    const pid = Number(readFileSync(`/run/weir/labs/${LAB}/etcd.pid`, 'utf8'));
    await ok(['lab', 'down'], LAB);
    assert.deepEqual(
      readdirSync('/var/run/netns').filter((n) => n.startsWith(`weir-${LAB}-`)),
      [],
    );
    assert.ok(!existsSync(`/proc/${pid}/cmdline`) || !readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    assert.ok(!existsSync(`/run/weir/labs/${LAB}`));
  });
});
