// Growing a lab of one node that has pods into several nodes (or moving it onto an etcd) is
// refused: its state lives in the agent's file Store and weir does not copy it into etcd. The
// refusal names the lab, its pods and what to do; the lab stays as it was (one node, the pod
// running, no underlay, no etcd).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-grow');

const pod = `
apiVersion: v1
kind: Pod
metadata: { name: web, labels: { app: web } }
spec: { containers: [{ name: c, ports: [{ containerPort: 8080 }] }] }
`;

describe('growing a lab of one node with pods', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-grow-'));
    await writeFile(join(dir, 'pod.yaml'), pod);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '--no-cluster-dns'], LAB, 180_000);
    await ok(['apply', '-f', join(dir, 'pod.yaml')], LAB, 120_000);
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  for (const [what, args, says] of [
    ['--nodes 3', ['--nodes', '3'], /growing it to 3 nodes/],
    ['--kvstore-endpoints', ['--kvstore-endpoints', 'http://198.18.0.5:2379'], /moving it onto etcd/],
  ] as const)
    it(`lab up ${what} is refused, saying why and what to do; the lab stays as it was`, async () => {
      const r = await cli(['lab', 'up', '--no-cluster-dns', ...args], LAB, 120_000);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /ERR_LAB_SPEC_CHANGED/);
      assert.match(r.stderr, new RegExp(`lab ${LAB} runs one node with 1 pod\\(s\\)`));
      assert.match(r.stderr, says);
      assert.match(r.stderr, /file Store/);
      assert.match(r.stderr, new RegExp(`weir lab down --lab ${LAB}`));
      // Nothing changed: one node, no underlay, the pod still runs and answers.
      assert.ok(!existsSync(`/var/run/netns/weir-${LAB}-underlay`));
      assert.ok(!existsSync(`/var/run/netns/weir-${LAB}-node2`));
      const { items } = JSON.parse(await ok(['node', 'list', '-o', 'json'], LAB)) as {
        items: { name: string }[];
      };
      assert.deepEqual(
        items.map((n) => n.name),
        ['node1'],
      );
      assert.match(await ok(['get', 'pods'], LAB), /web\s+1\/1\s+Running/);
      await ok(['lab', 'probe', '--from', 'node', '--to', 'default/web', '--port', '8080/TCP'], LAB);
    });
});
