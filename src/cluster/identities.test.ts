// Cluster-wide identities over a real file Store (the same code runs on etcd): several "nodes",
// each with its own cache and lease, allocating overlapping label sets at once never give one id
// to two label sets nor two ids to one; references live under each node's lease; an id goes
// with its last reference.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FileStore } from '../store/file.js';
import { ClusterIdentities, identitiesPrefix, identityValueKey } from './identities.js';
import { Informer } from './informer.js';
import { IdentityAllocator } from '../identity/allocator.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-identities-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const set = (app: string) => [`k8s:app=${app}`, 'k8s:io.kubernetes.pod.namespace=default'];

describe('ClusterIdentities', () => {
  it('nodes allocating at once agree on one id per label set; ids go with their last reference', async () => {
    const store = await FileStore.open(join(dir, 'store.json'));
    const nodes = await Promise.all(
      ['n1', 'n2', 'n3'].map(async (name) => {
        const cache = new Informer(store, 'weir/state/');
        await cache.start();
        const lease = await store.grantLease(60);
        return { name, cache, lease, ids: new ClusterIdentities(store, cache, name, () => lease) };
      }),
    );
    // Overlapping label sets, all at once.
    const wants: Record<string, string[][]> = {
      n1: [set('a'), set('b'), set('c')],
      n2: [set('c'), set('b'), set('d')],
      n3: [set('d'), set('a'), set('e')],
    };
    await Promise.all(nodes.map((n) => n.ids.sync(wants[n.name] ?? [])));
    for (const n of nodes) await n.cache.waitRevision(await store.revision());
    const lists = nodes.map((n) => n.ids.list());
    assert.equal(lists[0]?.length, 5, 'five label sets, five ids');
    assert.deepEqual(lists[1], lists[0]);
    assert.deepEqual(lists[2], lists[0]);
    const ids = (lists[0] ?? []).map((i) => i.id);
    assert.equal(new Set(ids).size, 5);
    assert.ok(ids.every((id) => id >= 256));
    const lookup = nodes[0]?.ids.lookup();
    assert.equal(lookup?.(set('c').join('\n')), lists[0]?.find((i) => i.labels.includes('k8s:app=c'))?.id);
    // Each node's references, under its lease.
    const ref = await store.get(identityValueKey(set('a'), 'n3'));
    assert.equal(ref?.lease, nodes[2]?.lease.id);
    assert.equal(ref?.value.id, lookup?.(set('a').join('\n')));

    // n1 drops a (n3 still uses it) and c (n2 still uses it): both ids stay.
    await nodes[0]?.ids.sync([set('b')]);
    assert.equal((await store.list(`${identitiesPrefix}id/`)).items.length, 5);
    // n2 drops c too: c's id is gone with its last reference; the others keep theirs.
    await nodes[1]?.ids.sync([set('b'), set('d')]);
    const left = (await store.list(`${identitiesPrefix}id/`)).items.map((kv) => kv.value.labels as string[]);
    assert.equal(left.length, 4);
    assert.ok(!left.some((l) => l.includes('k8s:app=c')));
    // A node whose lease ends takes its references with it; collect() frees what nobody uses.
    await nodes[2]?.lease.revoke();
    for (const n of nodes) await n.cache.waitRevision(await store.revision());
    assert.equal(await nodes[0]?.ids.collect(), 2, "e and a were n3's alone");
    const final = (await store.list(`${identitiesPrefix}id/`)).items.map(
      (kv) => (kv.value.labels as string[])[0],
    );
    assert.deepEqual(final.sort(), ['k8s:app=b', 'k8s:app=d']);
    // Nothing is written when nothing changed.
    const rev = await store.revision();
    await nodes[0]?.ids.sync([set('b')]);
    assert.equal(await store.revision(), rev);
    for (const n of nodes) {
      await n.ids.close();
      await n.cache.stop();
    }
    await store.close();
  });

  it('a node back after its lease ran out takes its ids again when free, else follows the cluster', async () => {
    const store = await FileStore.open(join(dir, 'back.json'));
    const cache = new Informer(store, 'weir/state/');
    await cache.start();
    let lease = await store.grantLease(60);
    const ids = new ClusterIdentities(store, cache, 'n2', () => lease);
    await ids.sync([set('x'), set('y')]);
    const local = new IdentityAllocator();
    local.clusterIds = ids.lookup();
    const x = local.allocate(set('x')).id;
    const y = local.allocate(set('y')).id;
    // Its lease runs out: its references go; with nobody else using them, so do the ids.
    await lease.revoke();
    await cache.waitRevision(await store.revision());
    assert.equal(await ids.collect(), 2);
    // Meanwhile another node takes y's id for another label set.
    await store.put(`${identitiesPrefix}id/${y}`, { labels: set('z') }, { ifRevision: 0 });
    await cache.waitRevision(await store.revision());
    // Back under a new lease: x gets its old id again; y cannot, it gets a new one.
    lease = await store.grantLease(60);
    await ids.sync([set('x'), set('y')], (labels) => local.find(labels)?.id);
    const lookup = ids.lookup();
    assert.equal(lookup(set('x').join('\n')), x);
    const y2 = lookup(set('y').join('\n'));
    assert.ok(y2 !== undefined && y2 !== y);
    // The node's allocator follows: y moves to the cluster's id, x stays.
    local.clusterIds = lookup;
    assert.deepEqual([...local.adoptClusterIds()], [[y, y2]]);
    assert.equal(local.find(set('y'))?.id, y2);
    assert.equal(local.find(set('x'))?.id, x);
    local.release(y2);
    assert.equal(local.find(set('y')), undefined);
    await ids.close();
    await cache.stop();
    await store.close();
  });

  it('a reference taken without the lock and the free of its id never both succeed', async () => {
    const store = await FileStore.open(join(dir, 'race.json'));
    const [a, b] = await Promise.all(
      ['n1', 'n2'].map(async (name) => {
        const cache = new Informer(store, 'weir/state/');
        await cache.start();
        const lease = await store.grantLease(60);
        return { cache, ids: new ClusterIdentities(store, cache, name, () => lease) };
      }),
    );
    assert.ok(a && b);
    for (let i = 0; i < 20; i++) {
      const x = set(`race-${i}`);
      await a.ids.sync([x]);
      await b.cache.waitRevision(await store.revision());
      // n2 references x's id (no lock: the id exists) while n1 drops its reference (the last
      // one n1 sees), under the lock; n2 starts a little later each round, so some rounds land
      // its reference between n1 taking the lock and n1 freeing the id.
      const writes = await store.revision();
      const free = a.ids.sync([]);
      await new Promise((r) => setTimeout(r, i % 5));
      await Promise.all([b.ids.sync([x]), free]);
      await a.cache.waitRevision(await store.revision());
      await b.cache.waitRevision(await store.revision());
      const ref = await store.get(identityValueKey(x, 'n2'));
      assert.ok(ref, `n2 refers to race-${i}`);
      const id = await store.get(`${identitiesPrefix}id/${String(ref.value.id)}`);
      assert.deepEqual(id?.value.labels, x, `race-${i}: n2's id ${String(ref.value.id)} names its label set`);
      assert.ok((await store.revision()) > writes);
      await b.ids.sync([]);
    }
    for (const n of [a, b]) {
      n.ids.close();
      await n.cache.stop();
    }
    await store.close();
  });
});
