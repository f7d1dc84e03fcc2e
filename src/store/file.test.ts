// The file store: the Store contract, plus what only a file backend has: it survives a reopen
// (revisions go on, history before the reopen counts as compacted), its file is root-only, one
// process at a time may hold it, and a lease whose deadline passed while it was closed expires.
import assert from 'node:assert/strict';
import {
  appendFileSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isCode } from '../shared/errors.js';
import { Collector, storeContract } from './contract.js';
import { ERR_STORE_COMPACTED, ERR_STORE_CORRUPT, ERR_STORE_LOCKED } from './errors.js';
import { FileStore } from './file.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

storeContract('file', () => FileStore.open(join(dir, 'contract', 'store.json')));

describe('FileStore', () => {
  it('keeps keys, revisions and leases across a reopen; older history counts as compacted', async () => {
    const path = join(dir, 'reopen', 'store.json');
    const s1 = await FileStore.open(path);
    await s1.put('weir/a', { v: 1 });
    const lease = await s1.grantLease(600);
    const rev = await s1.put('weir/leased', { v: 2 }, { lease: lease.id });
    lease.release();
    await s1.close();
    assert.equal(statSync(path).mode & 0o777, 0o600, 'root-only file');
    assert.equal(statSync(join(dir, 'reopen')).mode & 0o777, 0o700);

    const s2 = await FileStore.open(path);
    assert.equal(await s2.revision(), rev);
    assert.deepEqual((await s2.get('weir/a'))?.value, { v: 1 });
    assert.equal((await s2.get('weir/leased'))?.lease, lease.id, 'a lease within its TTL lives on');
    await assert.rejects(
      s2.watch('weir/', { fromRevision: rev, onBatch: () => undefined, onError: () => undefined }),
      (e: unknown) => isCode(e, ERR_STORE_COMPACTED),
    );
    const c = new Collector();
    const w = await s2.watch('weir/', { fromRevision: rev + 1, onBatch: c.onBatch, onError: c.onError });
    assert.equal(await s2.put('weir/b', { v: 3 }), rev + 1);
    await c.until((bs) => bs.length === 1);
    await w.close();
    await s2.close();
  });

  it('survives a crash: the snapshot plus the log replayed, a torn last line left out', async () => {
    const path = join(dir, 'crash', 'store.json');
    const s1 = await FileStore.open(path, { logLimitBytes: 600 });
    for (let i = 0; i < 20; i++) await s1.put(`weir/k${i}`, { i, pad: 'x'.repeat(40) });
    await s1.delete('weir/k3');
    const rev = await s1.revision();
    // The files as a crash now would leave them (the log folded into a snapshot on the way),
    // plus half a line a dying process was writing.
    const copy = join(dir, 'crash-copy');
    mkdirSync(copy);
    copyFileSync(path, join(copy, 'store.json'));
    copyFileSync(`${path}.log`, join(copy, 'store.json.log'));
    appendFileSync(join(copy, 'store.json.log'), '{"s":999,"r":999,"kv":{"weir/ghost"');
    await s1.close();
    const s2 = await FileStore.open(join(copy, 'store.json'));
    assert.equal(await s2.revision(), rev);
    const keys = (await s2.list('weir/')).items.map((kv) => kv.key);
    assert.equal(keys.length, 19);
    assert.ok(!keys.includes('weir/k3') && !keys.includes('weir/ghost'));
    assert.deepEqual((await s2.get('weir/k19'))?.value, { i: 19, pad: 'x'.repeat(40) });
    assert.equal(statSync(join(copy, 'store.json.log')).mode & 0o777, 0o600);
    await s2.close();
  });

  it('lets one process hold it at a time', async () => {
    const path = join(dir, 'lock', 'store.json');
    const s1 = await FileStore.open(path);
    await assert.rejects(FileStore.open(path), (e: unknown) => isCode(e, ERR_STORE_LOCKED));
    await s1.close();
    const s2 = await FileStore.open(path);
    await s2.close();
    // A lock left by a process that is gone (a crash) is taken over.
    writeFileSync(`${path}.lock`, '999999999');
    const s3 = await FileStore.open(path);
    await s3.close();
  });

  it('expires, at open, a lease whose deadline passed while it was closed', async () => {
    const path = join(dir, 'expired', 'store.json');
    const s1 = await FileStore.open(path);
    const lease = await s1.grantLease(1, { autoKeepAlive: false });
    await s1.put('weir/node', { v: 1 }, { lease: lease.id });
    await s1.put('weir/kept', { v: 2 });
    await s1.close();
    await new Promise((r) => setTimeout(r, 1100));
    const s2 = await FileStore.open(path);
    assert.equal(await s2.get('weir/node'), undefined);
    assert.deepEqual((await s2.get('weir/kept'))?.value, { v: 2 });
    await s2.close();
  });

  it('refuses a file that is not a store, naming it', async () => {
    const path = join(dir, 'corrupt.json');
    writeFileSync(path, '{"hello": 1}');
    await assert.rejects(FileStore.open(path), (e: unknown) => {
      assert.ok(isCode(e, ERR_STORE_CORRUPT));
      assert.match(String(e), /corrupt\.json/);
      return true;
    });
  });

  it('groups concurrent writes into few flushes, each resolved once on disk', async () => {
    const path = join(dir, 'group', 'store.json');
    const s = await FileStore.open(path);
    const start = await s.revision();
    const revs = await Promise.all(Array.from({ length: 200 }, (_, i) => s.put(`weir/k${i}`, { i })));
    assert.deepEqual(
      [...revs].sort((a, b) => a - b),
      Array.from({ length: 200 }, (_, i) => start + 1 + i),
    );
    await s.close();
    const s2 = await FileStore.open(path);
    assert.equal((await s2.list('weir/k')).items.length, 200);
    await s2.close();
  });
});
