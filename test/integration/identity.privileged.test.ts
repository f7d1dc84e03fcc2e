// Identities through the CLI: pods with the same security labels share one identity, high-churn
// labels (pod-template-hash, …) never split identities, and the label filter is configurable.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentPid } from '../../src/agent/spawn.js';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-ident');

const pods = `
apiVersion: v1
kind: Namespace
metadata: { name: web }
---
apiVersion: v1
kind: Pod
metadata: { name: a, namespace: web, labels: { app: shop, pod-template-hash: 5d8f7 } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: b, namespace: web, labels: { app: shop, pod-template-hash: 77c1a } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: c, namespace: web, labels: { app: shop, version: v2 } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
`;

async function identities(): Promise<Record<string, number>> {
  const eps = JSON.parse(await ok(['endpoint', 'list', '-o', 'json'], LAB)) as {
    namespace: string;
    pod: string;
    identity: number;
  }[];
  // The pods applied here (the lab's cluster DNS, kube-system/coredns, is an endpoint too).
  const web = eps.filter((e) => e.namespace === 'web');
  assert.equal(web.length, 3, 'three endpoints');
  return Object.fromEntries(web.map((e) => [`${e.namespace}/${e.pod}`, e.identity]));
}

describe('identities', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-ident-test-'));
    await writeFile(join(dir, 'pods.yaml'), pods);
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it("default filter: pod-template-hash is left out, other labels count (Cilium's defaults)", async () => {
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up'], LAB);
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB);
    const ids = await identities();
    assert.equal(ids['web/a'], ids['web/b'], 'same labels but the hash: one identity');
    assert.notEqual(ids['web/a'], ids['web/c'], 'version is a security label by default');
    assert.ok((ids['web/a'] ?? 0) >= 256, 'cluster identities start at 256');
    const list = JSON.parse(await ok(['identity', 'list', '-o', 'json'], LAB)) as {
      id: number;
      labels: string[];
    }[];
    const shop = list.find((i) => i.id === ids['web/a']);
    assert.ok(shop?.labels.includes('k8s:app=shop'));
    assert.ok(shop?.labels.includes('k8s:io.kubernetes.pod.namespace=web'));
    assert.ok(!shop?.labels.some((l) => l.includes('pod-template-hash')));
    assert.ok(
      list.some((i) => i.id === 2 && i.labels.includes('reserved:world')),
      'reserved identities listed',
    );
  });

  it('after an agent kill -9 and restart, an identity is released with its last pod', async () => {
    const ids = await identities();
    const pid = agentPid(LAB);
    assert.ok(pid, 'the agent runs');
    process.kill(pid, 'SIGKILL');
    await ok(['lab', 'up'], LAB);
    assert.deepEqual(await identities(), ids, 'the restarted agent keeps every identity');
    const listed = async () =>
      (JSON.parse(await ok(['identity', 'list', '-o', 'json'], LAB)) as { id: number }[]).map((i) => i.id);
    assert.ok((await listed()).includes(ids['web/c'] ?? -1));
    await writeFile(
      join(dir, 'c.yaml'),
      'apiVersion: v1\nkind: Pod\nmetadata: { name: c, namespace: web }\nspec: { containers: [{ name: c }] }\n',
    );
    await ok(['delete', '-f', join(dir, 'c.yaml')], LAB);
    assert.ok(!(await listed()).includes(ids['web/c'] ?? -1), 'web/c was the last pod of its identity');
    assert.ok((await listed()).includes(ids['web/a'] ?? -1), 'web/a and web/b still hold theirs');
  });

  it('a configured filter decides which labels count; a bad one is refused', async () => {
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '--identity-labels', 'k8s:!version'], LAB);
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB);
    const ids = await identities();
    assert.equal(ids['web/a'], ids['web/c'], 'version excluded: one identity for all three');
    assert.equal(ids['web/a'], ids['web/b']);

    await cli(['lab', 'down'], LAB);
    const bad = await cli(['lab', 'up', '--identity-labels', 'k8s:app('], LAB);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /identity labels|ERR_AGENT/);
  });
});
