// Services across the nodes of a lab (tunnel mode, the default), with real TCP: a ClusterIP
// Service whose only backend runs on node2 answers pods of node1 through the socket LB and through
// the tc path; NodePort (snat) answers on every node for a backend on any node: a lab external
// reaches node1's NodePort and node1 forwards to node2's backend through the tunnel, the replies
// coming back through it; a pod of node1 reaches node2's NodePort and a pod of node2 node1's. When
// node2 goes (its agent killed, its lease gone as when it runs out), its backends leave the
// services of node1: the same connections are refused. (The Service names no namespace: it is the
// default one's.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from '../../src/shared/exec.js';
import { repoRoot } from '../../src/shared/paths.js';
import { cli, ok } from '../support/cli.js';
import { connect, type Proto, type Try } from '../support/service-client.js';
import { testLab } from '../support/lab-name.js';
import { webNodePort } from '../support/cluster-pods.js';

const LAB = testLab('t-csvc');
const EXT_IP = '192.0.2.50';

const labSpec = `
name: ${LAB}
nodes: [{ name: node1 }, { name: node2 }]
externals:
  - { name: client, ip: ${EXT_IP} }
`;

const pod = (name: string, node: string, labels: string) => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: default, labels: { ${labels} } }
spec:
  nodeName: ${node}
  containers:
  - name: c
    ports:
    - { name: http, containerPort: 8080 }
---`;

const objects = `
${pod('c1', 'node1', 'app: client')}
${pod('c2', 'node2', 'app: client')}
${pod('web', 'node2', 'app: web')}${webNodePort()}`;

interface Node {
  name: string;
  ip: string;
  agentPid: number;
}
interface SvcRow {
  frontend: string;
  backends: { address: string; state: string }[];
}

const onNode = async (node: string, args: string[]) => {
  process.env.WEIR_NODE = node;
  try {
    return await ok(args, LAB);
  } finally {
    delete process.env.WEIR_NODE;
  }
};

const tcp = (from: string, ip: string, port: number, opts: { via?: 'tc' } = {}) =>
  connect(LAB, from, 'tcp' as Proto, ip, port, 3, { timeoutMs: 3000, ...opts });

/** The pod the lab workload's HTTP answer names, else the error. */
const answers = (tries: Try[]) =>
  [...new Set(tries.map((t) => /default\/[a-z0-9-]+/.exec(t.body ?? '')?.[0] ?? `error:${t.error}`))].sort();

/** Packets the node's VXLAN device sent (tx) and received (rx). */
async function vxlanPackets(node: string): Promise<{ tx: number; rx: number }> {
  const out = await run(['ip', '-n', `weir-${LAB}-${node}`, '-s', '-j', 'link', 'show', 'weir_vxlan']);
  const l = (
    JSON.parse(out.stdout) as { stats64: { rx: { packets: number }; tx: { packets: number } } }[]
  )[0];
  return { tx: l?.stats64.tx.packets ?? 0, rx: l?.stats64.rx.packets ?? 0 };
}

/** Revokes the lease the node's record lives under in the lab's etcd: what its running out does. */
function revokeNodeLease(node: string): void {
  const script = `
    const { Etcd3 } = await import('etcd3');
    const c = new Etcd3({ hosts: 'http://198.18.0.1:2379' });
    const r = await c.get('weir/state/nodes/v1/${node}').exec();
    const lease = r.kvs[0]?.lease;
    if (!lease || lease === '0') throw new Error('node ${node} has no lease');
    await c.leaseClient.leaseRevoke({ ID: lease });
    c.close();`;
  const r = spawnSync(
    'nsenter',
    [`--net=/var/run/netns/weir-${LAB}-underlay`, process.execPath, '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 30_000, cwd: repoRoot },
  );
  assert.equal(r.status, 0, r.stderr);
}

async function until(what: string, fn: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('services across nodes', () => {
  let dir: string;
  let nodes: Map<string, Node>;
  let clusterIP: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-csvc-'));
    await writeFile(join(dir, 'lab.yaml'), labSpec);
    await writeFile(join(dir, 'objects.yaml'), objects);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '-f', join(dir, 'lab.yaml')], LAB, 240_000);
    await ok(['apply', '-f', join(dir, 'objects.yaml')], LAB, 120_000);
    nodes = new Map(
      (JSON.parse(await ok(['node', 'list', '-o', 'json'], LAB)) as { items: Node[] }).items.map((n) => [
        n.name,
        n,
      ]),
    );
    const svc = JSON.parse(await ok(['get', 'service', 'web', '-o', 'json'], LAB)) as {
      spec: { clusterIP: string };
    };
    clusterIP = svc.spec.clusterIP;
    // node1 knows node2's pod as the backend once node2 published it.
    await until('node1 lists the backend on node2', async () => {
      const rows = JSON.parse(await onNode('node1', ['service', 'list', '-o', 'json'])) as SvcRow[];
      return rows.some((r) => r.frontend.startsWith(`${clusterIP}:80`) && r.backends.length === 1);
    });
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it("a ClusterIP backend on node2 answers node1's pods, through the socket LB and the tc path", async () => {
    const before1 = await vxlanPackets('node1');
    assert.deepEqual(answers(await tcp('default/c1', clusterIP, 80)), ['default/web']);
    assert.deepEqual(answers(await tcp('default/c1', clusterIP, 80, { via: 'tc' })), ['default/web']);
    const after1 = await vxlanPackets('node1');
    assert.ok(after1.tx - before1.tx >= 6, `through node1's tunnel (${after1.tx - before1.tx} packets)`);
    assert.deepEqual(answers(await tcp('default/c2', clusterIP, 80)), ['default/web'], 'and node2 its own');
  });

  it('NodePort answers on every node for a backend on another node (snat, through the tunnel)', async () => {
    const node1 = nodes.get('node1')?.ip ?? '';
    const node2 = nodes.get('node2')?.ip ?? '';
    const before1 = await vxlanPackets('node1');
    const fromOutside = await tcp('ext:client', node1, 30080);
    assert.deepEqual(answers(fromOutside), ['default/web'], 'external -> node1:30080 -> node2');
    // The external sees node1's NodePort answer (its socket is connected to it).
    assert.ok(
      fromOutside.every((t) => t.peer === `${node1}:30080`),
      JSON.stringify(fromOutside),
    );
    const after1 = await vxlanPackets('node1');
    assert.ok(after1.tx - before1.tx >= 9, `node1 forwarded into the tunnel (${after1.tx - before1.tx})`);
    assert.ok(after1.rx - before1.rx >= 6, `the replies came back through it (${after1.rx - before1.rx})`);
    // A pod of node1 to node2's NodePort (node2's tc path takes it from the tunnel); a pod of node2
    // to node1's (node1 sends it back to node2's backend, its replies back through node1).
    assert.deepEqual(answers(await tcp('default/c1', node2, 30080)), ['default/web'], 'c1 -> node2:30080');
    assert.deepEqual(answers(await tcp('default/c2', node1, 30080)), ['default/web'], 'c2 -> node1:30080');
  });

  it("a node that goes takes its backends out of every other node's services", async () => {
    const node1 = nodes.get('node1')?.ip ?? '';
    const pid = Number(readFileSync(`/run/weir/labs/${LAB}/agent-node2/agent.pid`, 'utf8'));
    assert.equal(pid, nodes.get('node2')?.agentPid);
    process.kill(pid, 'SIGKILL');
    revokeNodeLease('node2');
    await until('node1 drops the backend of node2', async () => {
      const rows = JSON.parse(await onNode('node1', ['service', 'list', '-o', 'json'])) as SvcRow[];
      return rows.some((r) => r.frontend.startsWith(`${clusterIP}:80`) && r.backends.length === 0);
    });
    // No backend: refused at once (socket LB and NodePort), not sent to the gone node.
    assert.deepEqual(answers(await tcp('default/c1', clusterIP, 80)), ['error:ECONNREFUSED']);
    assert.deepEqual(answers(await tcp('ext:client', node1, 30080)), ['error:ECONNREFUSED']);
  });
});
