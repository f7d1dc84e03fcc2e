import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ValidationError } from '../shared/errors.js';
import { loadManifests, podPorts, type Pod } from './index.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-k8s-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

/** Loads and returns the ValidationError's problems (fails if loading succeeds). */
async function problems(paths: string[]) {
  try {
    await loadManifests(paths);
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err.problems;
  }
  assert.fail('expected a ValidationError');
}

const pod = (ns: string, name: string, extra = '') => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${ns}
  labels:
    pod: ${name}
spec:
  containers:
    - name: c
      ports:
        - containerPort: 80
          name: serve-80-tcp
        - containerPort: 81
          protocol: UDP
${extra}`;

describe('loadManifests', () => {
  it('reads multi-document YAML, JSON, List and directories', async () => {
    const sub = join(dir, 'ok');
    await mkdir(sub);
    await writeFile(
      join(sub, 'a.yaml'),
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n${pod('x', 'a')}`,
    );
    await writeFile(
      join(sub, 'b.json'),
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'b' }, spec: { containers: [{ name: 'c' }] } },
        ],
      }),
    );
    await writeFile(join(sub, 'ignored.txt'), 'not a manifest');
    const ms = await loadManifests([sub]);
    assert.deepEqual(
      ms.map((m) => [m.kind, m.metadata.namespace, m.metadata.name, m.index]),
      [
        ['Namespace', undefined, 'x', 0],
        ['Pod', 'x', 'a', 1],
        ['Pod', 'default', 'b', 0],
      ],
    );
    const a = ms[1]!;
    assert.equal(a.file, join(sub, 'a.yaml'));
    assert.deepEqual(a.metadata.labels, { pod: 'a' });
    assert.deepEqual(podPorts(a.object as Pod), [
      { name: 'serve-80-tcp', containerPort: 80, protocol: 'TCP' },
      { containerPort: 81, protocol: 'UDP' },
    ]);
  });

  it('names file and line of invalid YAML', async () => {
    const f = await file('bad.yaml', 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: [a\n');
    const [p] = await problems([f]);
    assert.equal(p?.code, 'ERR_K8S_YAML_INVALID');
    assert.equal(p?.location.file, f);
    assert.match(p?.message ?? '', /line \d+/);
  });

  it('refuses an unknown kind, naming file, object and kind', async () => {
    const f = await file('kind.yaml', 'apiVersion: v1\nkind: Gadget\nmetadata: {name: g, namespace: x}\n');
    const [p] = await problems([f]);
    assert.equal(p?.code, 'ERR_K8S_KIND_UNKNOWN');
    assert.deepEqual(p?.location, { file: f, object: 'Gadget x/g', field: 'kind' });
  });

  it('names a missing field', async () => {
    const f = await file(
      'missing.yaml',
      'apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {}\n',
    );
    const [p] = await problems([f]);
    assert.equal(p?.code, 'ERR_K8S_FIELD_MISSING');
    assert.deepEqual(p?.location, { file: f, object: 'Pod x/a', field: 'spec.containers' });
  });

  it('refuses bad labels (key and value)', async () => {
    const f = await file(
      'labels.yaml',
      `apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  namespace: x\n  labels:\n    "-bad": ok\n    good: "bad value!"\n    ${'p'.repeat(254)}/n: v\nspec: {containers: [{name: c}]}\n`,
    );
    const ps = await problems([f]);
    assert.equal(ps.length, 3);
    for (const p of ps) {
      assert.equal(p.code, 'ERR_K8S_LABEL_INVALID');
      assert.equal(p.location.object, 'Pod x/a');
      assert.match(p.location.field ?? '', /^metadata\.labels/);
    }
    assert.equal(ps[1]?.location.field, 'metadata.labels.good');
  });

  it('refuses bad ports and lists every problem', async () => {
    const f = await file(
      'ports.yaml',
      `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec:
  containers:
    - name: c
      ports:
        - containerPort: 80
        - containerPort: 70000
        - containerPort: 82
          name: Serve_82
        - containerPort: 83
          name: "1234"
        - containerPort: 84
          protocol: ICMP
        - containerPort: 85
          name: this-name-is-too-long
`,
    );
    const ps = await problems([f]);
    assert.deepEqual(
      ps.map((p) => [p.code, p.location.field]),
      [
        ['ERR_K8S_FIELD_INVALID', 'spec.containers[0].ports[1].containerPort'],
        ['ERR_K8S_FIELD_INVALID', 'spec.containers[0].ports[2].name'],
        ['ERR_K8S_FIELD_INVALID', 'spec.containers[0].ports[3].name'],
        ['ERR_K8S_FIELD_INVALID', 'spec.containers[0].ports[4].protocol'],
        ['ERR_K8S_FIELD_INVALID', 'spec.containers[0].ports[5].name'],
      ],
    );
    for (const p of ps) assert.deepEqual([p.location.file, p.location.object], [f, 'Pod x/a']);
  });

  it('refuses the same pod twice in one apply, across files', async () => {
    const f1 = await file('dup1.yaml', pod('x', 'a'));
    const f2 = await file('dup2.yaml', pod('x', 'a'));
    const [p, ...rest] = await problems([f1, f2]);
    assert.equal(rest.length, 0);
    assert.equal(p?.code, 'ERR_K8S_DUPLICATE');
    assert.deepEqual(p?.location, { file: f2, object: 'Pod x/a', field: 'metadata.name' });
    assert.match(p?.message ?? '', /dup1\.yaml/);
  });

  it('defaults the namespace of a pod to "default" and refuses a missing file', async () => {
    const f = await file(
      'nons.yaml',
      'apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c}]}\n',
    );
    const [m] = await loadManifests([f]);
    assert.equal(m?.metadata.namespace, 'default');
    const [p] = await problems([join(dir, 'nope.yaml')]);
    assert.equal(p?.code, 'ERR_K8S_FILE_NOT_FOUND');
  });
});
