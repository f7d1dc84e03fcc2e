// The Store contract: one suite of node:test cases that every backend must pass (the file store in
// file.test.ts, etcd in etcd.privileged.test.ts through etcd-contract-run.ts). Each case works
// under its own key prefix, so backends that keep state between cases are fine.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { isCode } from '../shared/errors.js';
import { ERR_STORE_CONFLICT } from './errors.js';
import type { Store, WatchBatch } from './types.js';

/** Collects the batches of a watch; `until` waits (bounded) for a condition on them. */
export class Collector {
  readonly batches: WatchBatch[] = [];
  error: Error | undefined;
  readonly onBatch = (b: WatchBatch) => void this.batches.push(b);
  readonly onError = (e: Error) => void (this.error = e);

  async until(cond: (bs: WatchBatch[]) => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond(this.batches)) {
      if (this.error) throw this.error;
      if (Date.now() > deadline)
        throw new Error(`watch: condition not met within ${ms} ms; got ${JSON.stringify(this.batches)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** "put k1=v1" / "delete k2" per event, with the batch revision. */
  lines(prefix: string): string[] {
    return this.batches.flatMap((b) =>
      b.events.map((e) =>
        e.type === 'put'
          ? `${b.revision} put ${e.key.slice(prefix.length)}=${JSON.stringify(e.value)}`
          : `${b.revision} delete ${e.key.slice(prefix.length)}`,
      ),
    );
  }
}

const conflictError = (err: unknown) => isCode(err, ERR_STORE_CONFLICT);

export function storeContract(name: string, open: () => Promise<Store>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    const p = () => `weir/t/${randomBytes(4).toString('hex')}/`;

    before(async () => {
      store = await open();
    });
    after(async () => {
      await store?.close();
    });

    it('puts, gets and lists JSON objects; absent keys are undefined', async () => {
      const pre = p();
      await store.put(`${pre}b`, { n: 2, nested: { list: [1, 'two', null] } });
      await store.put(`${pre}a`, { n: 1 });
      await store.put(`${pre}a/child`, { n: 3 });
      await store.put(`${pre.slice(0, -1)}x/other`, { n: 9 }); // shares the text, not the prefix
      assert.deepEqual((await store.get(`${pre}b`))?.value, { n: 2, nested: { list: [1, 'two', null] } });
      assert.equal(await store.get(`${pre}missing`), undefined);
      const l = await store.list(pre);
      assert.deepEqual(
        l.items.map((i) => [i.key.slice(pre.length), i.value.n]),
        [
          ['a', 1],
          ['a/child', 3],
          ['b', 2],
        ],
      );
      assert.equal(l.revision, await store.revision());
    });

    it('refuses values that are not JSON objects', async () => {
      const pre = p();
      for (const bad of [[1, 2], 'text', 3, null])
        await assert.rejects(store.put(`${pre}k`, bad as never), /JSON object/);
      assert.equal(await store.get(`${pre}k`), undefined);
    });

    it('counts revisions: one per write, create/mod revision and version per key', async () => {
      const pre = p();
      const r0 = await store.revision();
      const r1 = await store.put(`${pre}k`, { v: 1 });
      assert.equal(r1, r0 + 1);
      const r2 = await store.put(`${pre}k`, { v: 2 });
      assert.equal(r2, r1 + 1);
      const kv = await store.get(`${pre}k`);
      assert.deepEqual([kv?.createRevision, kv?.modRevision, kv?.version], [r1, r2, 2]);
      const d = await store.delete(`${pre}k`);
      assert.deepEqual(d, { revision: r2 + 1, deleted: true });
      // Deleting what is not there writes nothing.
      const d2 = await store.delete(`${pre}k`);
      assert.deepEqual(d2, { revision: r2 + 1, deleted: false });
      // Re-created: a new life, version 1 again.
      const r3 = await store.put(`${pre}k`, { v: 3 });
      const kv3 = await store.get(`${pre}k`);
      assert.deepEqual([kv3?.createRevision, kv3?.modRevision, kv3?.version], [r3, r3, 1]);
    });

    it('create-if-absent and compare-on-revision: a failed condition writes nothing', async () => {
      const pre = p();
      const r1 = await store.put(`${pre}k`, { v: 1 }, { ifRevision: 0 });
      await assert.rejects(store.put(`${pre}k`, { v: 'again' }, { ifRevision: 0 }), conflictError);
      const r2 = await store.put(`${pre}k`, { v: 2 }, { ifRevision: r1 });
      await assert.rejects(store.put(`${pre}k`, { v: 'stale' }, { ifRevision: r1 }), conflictError);
      await assert.rejects(store.delete(`${pre}k`, { ifRevision: r1 }), conflictError);
      assert.deepEqual((await store.get(`${pre}k`))?.value, { v: 2 });
      assert.equal(await store.revision(), r2);
      assert.equal((await store.delete(`${pre}k`, { ifRevision: r2 })).deleted, true);
      assert.equal(await store.get(`${pre}k`), undefined);
    });

    it('writes a transaction all or nothing, in one revision', async () => {
      const pre = p();
      const base = await store.put(`${pre}exists`, { v: 0 });
      const ok = await store.txn([
        { op: 'put', key: `${pre}a`, value: { v: 'a' }, ifRevision: 0 },
        { op: 'put', key: `${pre}b`, value: { v: 'b' } },
        { op: 'delete', key: `${pre}exists`, ifRevision: base },
      ]);
      assert.deepEqual(ok, { ok: true, revision: base + 1 });
      for (const k of ['a', 'b']) assert.equal((await store.get(`${pre}${k}`))?.modRevision, base + 1);
      assert.equal(await store.get(`${pre}exists`), undefined);
      const failed = await store.txn([
        { op: 'put', key: `${pre}c`, value: { v: 'c' } },
        { op: 'put', key: `${pre}a`, value: { v: 'a2' }, ifRevision: 0 }, // a exists: the condition fails
      ]);
      assert.deepEqual(failed, { ok: false, revision: base + 1 });
      assert.equal(await store.get(`${pre}c`), undefined);
      assert.deepEqual((await store.get(`${pre}a`))?.value, { v: 'a' });
    });

    it('watches a prefix from a past revision: every change in order, one batch per revision', async () => {
      const pre = p();
      const start = (await store.revision()) + 1;
      await store.put(`${pre}a`, { v: 1 });
      await store.put(`${p()}elsewhere`, { v: 0 }); // another prefix: not seen
      await store.txn([
        { op: 'put', key: `${pre}b`, value: { v: 2 } },
        { op: 'put', key: `${pre}a`, value: { v: 3 } },
      ]);
      const c = new Collector();
      const w = await store.watch(pre, { fromRevision: start, onBatch: c.onBatch, onError: c.onError });
      await store.delete(`${pre}a`);
      await c.until((bs) => bs.length === 3);
      await w.close();
      assert.deepEqual(c.lines(pre), [
        `${start} put a={"v":1}`,
        `${start + 2} put b={"v":2}`,
        `${start + 2} put a={"v":3}`,
        `${start + 3} delete a`,
      ]);
      const put = c.batches[1]?.events[1];
      assert.deepEqual([put?.createRevision, put?.version], [start, 2]);
      assert.deepEqual(
        c.batches.map((b) => b.revision),
        [start, start + 2, start + 3],
      );
    });

    it('resumes a watch exactly where it stopped: no change lost, none twice', async () => {
      const pre = p();
      const c1 = new Collector();
      const from = (await store.revision()) + 1;
      const w1 = await store.watch(pre, { fromRevision: 0, onBatch: c1.onBatch, onError: c1.onError });
      for (let i = 0; i < 5; i++) await store.put(`${pre}k${i}`, { i });
      await c1.until((bs) => bs.length === 5);
      await w1.close();
      const last = c1.batches.at(-1)?.revision as number;
      for (let i = 5; i < 10; i++) await store.put(`${pre}k${i}`, { i });
      const c2 = new Collector();
      const w2 = await store.watch(pre, { fromRevision: last + 1, onBatch: c2.onBatch, onError: c2.onError });
      await store.put(`${pre}k10`, { i: 10 });
      await c2.until((bs) => bs.length === 6);
      await w2.close();
      const seen = [...c1.batches, ...c2.batches].flatMap((b) => b.events.map((e) => e.value?.i));
      assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.equal(c1.batches[0]?.revision, from);
      const revs = [...c1.batches, ...c2.batches].map((b) => b.revision);
      assert.deepEqual(
        revs,
        [...revs].sort((a, b) => a - b),
      );
    });

    it('watch from 0 sees only later changes; a closed watch sees none', async () => {
      const pre = p();
      await store.put(`${pre}before`, { v: 0 });
      const c = new Collector();
      const w = await store.watch(pre, { fromRevision: 0, onBatch: c.onBatch, onError: c.onError });
      await store.put(`${pre}after`, { v: 1 });
      await c.until((bs) => bs.length === 1);
      await w.close();
      await store.put(`${pre}closed`, { v: 2 });
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(
        c.lines(pre).map((l) => l.split(' ').slice(1).join(' ')),
        ['put after={"v":1}'],
      );
    });

    it('revoking a lease deletes its keys in one revision; other keys stay', async () => {
      const pre = p();
      const lease = await store.grantLease(30);
      await store.put(`${pre}mine1`, { v: 1 }, { lease: lease.id });
      await store.put(`${pre}mine2`, { v: 2 }, { lease: lease.id });
      await store.put(`${pre}free`, { v: 3 });
      assert.equal((await store.get(`${pre}mine1`))?.lease, lease.id);
      const c = new Collector();
      const w = await store.watch(pre, { fromRevision: 0, onBatch: c.onBatch, onError: c.onError });
      await lease.revoke();
      await c.until((bs) => bs.flatMap((b) => b.events).length === 2);
      await w.close();
      assert.equal(c.batches.length, 1, 'both keys go in one revision');
      assert.deepEqual(c.batches[0]?.events.map((e) => `${e.type} ${e.key.slice(pre.length)}`).sort(), [
        'delete mine1',
        'delete mine2',
      ]);
      assert.deepEqual(
        (await store.list(pre)).items.map((i) => i.key.slice(pre.length)),
        ['free'],
      );
      // Writing under a revoked lease fails.
      await assert.rejects(store.put(`${pre}late`, { v: 4 }, { lease: lease.id }));
    });

    it('a lease without keep-alive expires and takes its keys; one kept alive outlives its TTL', async () => {
      const pre = p();
      const dying = await store.grantLease(2, { autoKeepAlive: false });
      const living = await store.grantLease(2);
      await store.put(`${pre}dying`, { v: 1 }, { lease: dying.id });
      await store.put(`${pre}living`, { v: 2 }, { lease: living.id });
      let lost: Error | undefined;
      dying.onLost((e) => (lost = e));
      const deadline = Date.now() + 10_000;
      while ((await store.get(`${pre}dying`)) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      assert.equal(await store.get(`${pre}dying`), undefined, 'expired within 10 s');
      await new Promise((r) => setTimeout(r, 2500));
      assert.deepEqual((await store.get(`${pre}living`))?.value, { v: 2 }, 'kept alive past its TTL');
      await living.revoke();
      assert.equal(await store.get(`${pre}living`), undefined);
      void lost; // etcd reports a loss only on the next keep-alive; not part of the contract
    });
  });
}
