// The informer over a real file Store: the cache lists, then follows every change in order,
// listeners hear each batch, and waitRevision resolves once a write is in the cache.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FileStore } from '../store/file.js';
import { Informer, type InformerChange } from './informer.js';
import { DesiredView, desiredState } from './desired.js';

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

  it("keeps a runtime's attachments (weir-cni) apart from Pods, change by change", async () => {
    const store = await FileStore.open(join(dir, 'b', 'store.json'));
    const inf = new Informer(store, 'weir/desired/v1/');
    const view = new DesiredView(inf);
    await inf.start();
    const att = {
      apiVersion: 'weir.dev/v1',
      kind: 'CniAttachment',
      namespace: 'default',
      name: 'web-1',
      object: {
        containerId: 'c0ffee',
        ifname: 'eth0',
        netns: '/run/netns/netns-1',
        netnsPath: '/proc/1/fd/3',
        netnsInode: 4026532000,
        node: 'n1',
        createdAt: '2026-01-01T00:00:00Z',
      },
    };
    const put = await store.put('weir/desired/v1/CniAttachment/default/web-1', att);
    await inf.waitRevision(put, 2000);
    assert.deepEqual(view.state.pods.size, 0, 'an attachment is not a Pod object');
    assert.deepEqual(view.state.attachments.get('default/web-1'), {
      ...att.object,
      namespace: 'default',
      name: 'web-1',
      revision: put,
    });
    // The Pod of a runtime's container (annotated weir.dev/runtime: cni) is marked as such.
    const pod = await store.put('weir/desired/v1/Pod/default/web-1', {
      apiVersion: 'v1',
      kind: 'Pod',
      namespace: 'default',
      name: 'web-1',
      object: {
        metadata: { labels: { app: 'web' }, annotations: { 'weir.dev/runtime': 'cni' } },
        spec: { nodeName: 'n1', containers: [{ name: 'c' }] },
      },
    });
    await inf.waitRevision(pod, 2000);
    assert.equal(view.state.pods.get('default/web-1')?.byRuntime, true);
    const del = await store.delete('weir/desired/v1/CniAttachment/default/web-1');
    await inf.waitRevision(del.revision, 2000);
    assert.equal(view.state.attachments.size, 0);
    assert.deepEqual(desiredState(inf.values(), inf.revision).attachments.size, 0);
    await inf.stop();
    await store.close();
  });
});
