import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isCode } from '../shared/errors.js';
import { be16, cstruct, ipv4, u32, u64, u8 } from './codec.js';
import { BpfError } from './errors.js';
import { BpfMap, MapType, TypedMap, numPossibleCpus, perCpu } from './map.js';
import { ensureBpffs, testPinDir } from './test-support.js';

const pinDir = testPinDir();
const Key = cstruct('test_key', { addr: ipv4(), port: be16(), proto: u8() });
const Value = cstruct('test_value', { packets: u64(), id: u32() });

describe('BpfMap / TypedMap', () => {
  const open: BpfMap[] = [];
  const create = (...args: Parameters<typeof BpfMap.create>) => {
    const m = BpfMap.create(...args);
    open.push(m);
    return m;
  };
  before(ensureBpffs);
  after(() => {
    for (const m of open) m.close();
    rmSync(pinDir, { recursive: true, force: true });
  });

  it('updates, looks up and deletes with typed keys and values', () => {
    const m = new TypedMap(
      create({ type: 'hash', name: 'weir_t_hash', keySize: Key.size, valueSize: Value.size, maxEntries: 16 }),
      Key,
      Value,
    );
    const k = { addr: '10.0.0.1', port: 80, proto: 6 };
    assert.equal(m.lookup(k), undefined);
    m.update(k, { packets: 1n, id: 7 });
    assert.deepEqual(m.lookup(k), { packets: 1n, id: 7 });
    assert.throws(
      () => m.update(k, { packets: 2n, id: 7 }, 'noexist'),
      (e) => isCode(e, 'ERR_BPF_KEY_EXIST'),
    );
    assert.throws(
      () => m.update({ ...k, port: 81 }, { packets: 2n, id: 7 }, 'exist'),
      (e) => isCode(e, 'ERR_BPF_KEY_NOT_EXIST') && e instanceof BpfError && e.errnoName === 'ENOENT',
    );
    m.update(k, { packets: 3n, id: 8 }, 'exist');
    assert.deepEqual(m.lookup(k), { packets: 3n, id: 8 });
    assert.equal(m.delete(k), true);
    assert.equal(m.delete(k), false);
  });

  it('checks codec sizes against the map and names the map', () => {
    const m = create({ type: 'hash', name: 'weir_t_size', keySize: 4, valueSize: 8, maxEntries: 4 });
    assert.throws(
      () => new TypedMap(m, u64(), u64()),
      (e) =>
        isCode(e, 'ERR_BPF_CODEC') &&
        /weir_t_size.*key codec is 8 bytes, map key is 4/.test((e as Error).message),
    );
    assert.throws(
      () => new TypedMap(m, u32(), u32()),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
  });

  it('iterates all entries and tolerates deletion while iterating', () => {
    const m = new TypedMap(
      create({ type: 'hash', name: 'weir_t_iter', keySize: 4, valueSize: 4, maxEntries: 128 }),
      u32(),
      u32(),
    );
    for (let i = 0; i < 100; i++) m.update(i, i * 2);
    const seen: number[] = [];
    for (const [k, v] of m.entries()) {
      assert.equal(v, k * 2);
      seen.push(k);
      // Delete this key and one not visited yet: neither repeats nor loops.
      m.delete(k);
      m.delete((k + 50) % 100);
    }
    assert.equal(new Set(seen).size, seen.length, 'no key twice');
    assert.equal(seen.length, 50, 'deleted-ahead keys are skipped');
    assert.deepEqual([...m.keys()], []);
  });

  it('reads, writes and deletes in batches', () => {
    const m = new TypedMap(
      create({ type: 'hash', name: 'weir_t_batch', keySize: 4, valueSize: 8, maxEntries: 4096 }),
      u32(),
      u64(),
    );
    const entries: [number, bigint][] = Array.from({ length: 3000 }, (_, i) => [i, BigInt(i) * 3n]);
    m.updateBatch(entries);
    const got = m.lookupBatch().sort((a, b) => a[0] - b[0]);
    assert.equal(got.length, 3000);
    assert.deepEqual(got, entries);
    assert.equal(m.deleteBatch([1, 2, 99999, 3]), 3, 'missing keys are skipped and not counted');
    assert.equal(m.lookup(2), undefined);
    assert.equal(m.lookup(4), 12n);
    m.clear();
    assert.equal([...m.keys()].length, 0);
  });

  it('falls back to single operations where batches are unsupported (LPM trie)', () => {
    const LpmKey = cstruct('lpm_key', { prefixlen: u32(), addr: ipv4() });
    const m = new TypedMap(
      create({ type: 'lpm_trie', name: 'weir_t_lpm', keySize: 8, valueSize: 4, maxEntries: 16 }),
      LpmKey,
      u32(),
    );
    m.updateBatch([
      [{ prefixlen: 8, addr: '10.0.0.0' }, 1],
      [{ prefixlen: 24, addr: '10.1.2.0' }, 2],
    ]);
    assert.equal(m.lookup({ prefixlen: 32, addr: '10.1.2.3' }), 2, 'longest prefix');
    assert.equal(m.lookup({ prefixlen: 32, addr: '10.9.9.9' }), 1);
    assert.equal(m.lookupBatch().length, 2);
    assert.equal(m.deleteBatch([{ prefixlen: 8, addr: '10.0.0.0' }]), 1);
  });

  it('handles per-CPU values as one value per possible CPU', () => {
    const map = create({ type: 'percpu_hash', name: 'weir_t_pcpu', keySize: 4, valueSize: 4, maxEntries: 8 });
    assert.throws(
      () => new TypedMap(map, u32(), u32()),
      (e) => isCode(e, 'ERR_BPF_CODEC') && /perCpu/.test(String(e)),
    );
    const m = new TypedMap(map, u32(), perCpu(u32()));
    const n = numPossibleCpus();
    const values = Array.from({ length: n }, (_, i) => i + 100);
    m.update(1, values);
    assert.deepEqual(m.lookup(1), values);
    assert.deepEqual(m.lookupBatch(), [[1, values]]);
    const arr = new TypedMap(
      create({ type: 'percpu_array', name: 'weir_t_parr', keySize: 4, valueSize: 8, maxEntries: 2 }),
      u32(),
      perCpu(u64()),
    );
    arr.update(
      1,
      Array.from({ length: n }, () => 5n),
    );
    arr.clear();
    assert.deepEqual(
      arr.lookup(1),
      Array.from({ length: n }, () => 0n),
      'arrays are zeroed by clear()',
    );
  });

  it('pins, reopens from the pin, and unpins', () => {
    const m = create({ type: 'array', name: 'weir_t_pin', keySize: 4, valueSize: 4, maxEntries: 4 });
    new TypedMap(m, u32(), u32()).update(2, 42);
    const path = join(pinDir, 'nested', 'arr');
    m.pin(path);
    const again = BpfMap.fromPin(path);
    try {
      assert.equal(again.type, MapType.array);
      assert.equal(again.name, 'weir_t_pin');
      assert.equal(again.maxEntries, 4);
      assert.equal(again.id, m.id);
      assert.equal(new TypedMap(again, u32(), u32()).lookup(2), 42);
    } finally {
      again.close();
    }
    m.unpin();
    assert.equal(existsSync(path), false);
    assert.throws(
      () => BpfMap.fromPin(path),
      (e) => isCode(e, 'ERR_BPF_SYSCALL') && /ENOENT/.test(String(e)),
    );
  });

  it('stores inner maps in a map-in-map and opens them by id', () => {
    const inner = create({ type: 'hash', name: 'weir_t_in', keySize: 4, valueSize: 4, maxEntries: 4 });
    const outer = new TypedMap(
      create({
        type: 'array_of_maps',
        name: 'weir_t_out',
        keySize: 4,
        valueSize: 4,
        maxEntries: 2,
        innerMap: inner,
      }),
      u32(),
      u32(),
    );
    new TypedMap(inner, u32(), u32()).update(1, 11);
    outer.update(0, inner.fd);
    const byId = BpfMap.fromId(outer.lookup(0) ?? 0);
    try {
      assert.equal(new TypedMap(byId, u32(), u32()).lookup(1), 11);
    } finally {
      byId.close();
    }
  });

  it('refuses use after close', () => {
    const m = BpfMap.create({ type: 'hash', name: 'weir_t_closed', keySize: 4, valueSize: 4, maxEntries: 1 });
    m.close();
    assert.throws(
      () => m.fd,
      (e) => isCode(e, 'ERR_BPF_STATE'),
    );
    assert.throws(
      () => BpfMap.create({ type: 'hash', name: 'bad name!', keySize: 4, valueSize: 4, maxEntries: 1 }),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
  });
});
