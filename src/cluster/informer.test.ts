// The informer over a real file Store: the cache lists, then follows every change in order,
// listeners hear each batch, and waitRevision resolves once a write is in the cache.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FileStore } from '../store/file.js';
import { Informer, type InformerChange } from './informer.js';
import { desiredState } from './desired.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-informer-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('Informer', () => {
  it('lists, then follows puts and deletes in order; other prefixes are not cached', async () => {
    const store = await FileStore.open(join(dir, 'a', 'store.json'));
    await store.put('weir/desired/v1/Namespace/x', { kind: 'Namespace', name: 'x', object: {} });
    const inf = new Informer(store, 'weir/desired/v1/');
    const heard: InformerChange[] = [];
    inf.onChange((c) => heard.push(c));
    await inf.start();
    assert.equal(heard[0]?.resync, true, 'the list is announced as a resync');
    assert.deepEqual([...inf.items.keys()], ['weir/desired/v1/Namespace/x']);
    const rev = await store.txn([
      {
        op: 'put',
        key: 'weir/desired/v1/Pod/x/a',
        value: {
          apiVersion: 'v1',
          kind: 'Pod',
          namespace: 'x',
          name: 'a',
          object: {
            metadata: { labels: { app: 'a' } },
            spec: { nodeName: 'n1', containers: [{ name: 'c' }] },
          },
        },
      },
      { op: 'delete', key: 'weir/desired/v1/Namespace/x' },
    ]);
    await store.put('weir/state/elsewhere', { v: 1 });
    await inf.waitRevision(rev.revision, 2000);
    assert.deepEqual([...inf.items.keys()], ['weir/desired/v1/Pod/x/a']);
    assert.equal(inf.items.get('weir/desired/v1/Pod/x/a')?.modRevision, rev.revision);
    assert.deepEqual(
      heard.slice(1).map((c) => [c.revision, c.events.map((e) => `${e.type} ${e.key}`)]),
      [[rev.revision, ['put weir/desired/v1/Pod/x/a', 'delete weir/desired/v1/Namespace/x']]],
    );
    // The typed view of what it holds.
    const d = desiredState(inf.values(), inf.revision);
    assert.deepEqual([...d.namespaces.keys()], ['default']);
    assert.deepEqual(d.pods.get('x/a'), {
      namespace: 'x',
      name: 'a',
      node: 'n1',
      containers: [{ name: 'c', ports: [] }],
      labels: { app: 'a' },
      ports: [],
      noWorkload: false,
      terminating: false,
      revision: rev.revision,
    });
    await assert.rejects(inf.waitRevision(rev.revision + 100, 100), /did not reach revision/);
    await inf.stop();
    await store.close();
  });
});
