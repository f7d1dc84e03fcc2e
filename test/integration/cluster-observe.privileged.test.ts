// Flows across the nodes of a lab, as Hubble Relay: `weir observe` without --node asks every
// node's agent and prints their flows merged in time order, each naming its node; --node narrows
// it to one node; -f follows every node at once. Real traffic between pods of two nodes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, ok, weir } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-relay');

const manifests = `
apiVersion: v1
kind: Pod
metadata: { name: client, labels: { app: client } }
spec: { nodeName: node1, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: other, labels: { app: other } }
spec: { nodeName: node1, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, labels: { app: server } }
spec: { nodeName: node2, containers: [{ name: c, ports: [{ containerPort: 8080 }] }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-from-client }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }]
`;

interface F {
  time: string;
  node_name: string;
  verdict: string;
  source?: { pod_name?: string };
  destination?: { pod_name?: string };
}
const parse = (out: string) =>
  out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as F);

async function probe(from: string, to: string): Promise<boolean> {
  const r = await cli(
    ['lab', 'probe', '--from', from, '--to', to, '--port', '8080/TCP', '--timeout', '1500'],
    LAB,
  );
  return r.code === 0;
}

describe('weir observe across nodes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-relay-test-'));
    await writeFile(join(dir, 'all.yaml'), manifests);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '--nodes', '2'], LAB, 240_000);
    await ok(['apply', '-f', join(dir, 'all.yaml')], LAB);
    assert.ok(await probe('default/client', 'default/server'), 'client -> server is allowed');
    assert.ok(!(await probe('default/other', 'default/server')), 'other -> server is denied');
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it("merges every node's flows in time order, each naming its node", async () => {
    const until = new Date().toISOString();
    const q = ['--from-pod', 'default/client', '--from-pod', 'default/other', '--until', until];
    const flows = parse(await ok(['observe', ...q, '--last', '200', '-o', 'json'], LAB));
    const nodes = new Set(flows.map((f) => f.node_name));
    assert.deepEqual([...nodes].sort(), ['node1', 'node2'], 'flows of both nodes');
    const times = flows.map((f) => f.time);
    assert.deepEqual(times, [...times].sort(), 'in time order');
    // node1 saw client's connection leave; node2 judged other's SYN.
    assert.ok(
      flows.some((f) => f.node_name === 'node1' && f.source?.pod_name === 'client'),
      "node1's flows of client",
    );
    assert.ok(
      flows.some((f) => f.node_name === 'node2' && f.verdict === 'DROPPED' && f.source?.pod_name === 'other'),
      "node2's drop of other",
    );
    // --last counts the merged flows.
    const three = parse(await ok(['observe', ...q, '--last', '3', '-o', 'json'], LAB));
    assert.deepEqual(three, flows.slice(-3), 'the newest three of the cluster');
  });

  it('--node narrows to one node', async () => {
    const flows = parse(await ok(['observe', '--node', 'node2', '--last', '200', '-o', 'json'], LAB));
    assert.ok(flows.length > 0);
    assert.deepEqual([...new Set(flows.map((f) => f.node_name))], ['node2']);
    const bad = await cli(['observe', '--node', 'node9'], LAB);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /node9/);
  });

  it('-f follows every node', async () => {
    const child = spawn(
      weir,
      ['observe', '-f', '--from-pod', 'default/client', '--from-pod', 'default/other', '-o', 'json'],
      {
        env: { ...process.env, WEIR_LAB: LAB },
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    try {
      await new Promise((r) => setTimeout(r, 1500)); // both streams open
      const start = new Date().toISOString();
      assert.ok(await probe('default/client', 'default/server'));
      assert.ok(!(await probe('default/other', 'default/server')));
      const deadline = Date.now() + 20_000;
      const seen = () =>
        new Set(
          parse(out.slice(0, out.lastIndexOf('\n') + 1))
            .filter((f) => f.time >= start)
            .map((f) => f.node_name),
        );
      while (seen().size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual([...seen()].sort(), ['node1', 'node2'], 'new flows of both nodes while following');
    } finally {
      child.kill('SIGINT');
      await exited;
    }
  });
});
