import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCode } from '../shared/errors.js';
import { defaultMaglevSeed, maglevSeed, maglevTable, type MaglevBackend } from './maglev.js';
import { murmur3x64128 } from './murmur3.js';

const hex = (b: bigint) => b.toString(16).padStart(16, '0');
const seed = maglevSeed(defaultMaglevSeed);
const backends = (n: number, from = 0): MaglevBackend[] =>
  Array.from({ length: n }, (_, i) => ({ id: from + i + 1, name: `10.0.1.${from + i + 2}:8080/TCP` }));

function shares(table: Uint32Array): Map<number, number> {
  const out = new Map<number, number>();
  for (const id of table) out.set(id, (out.get(id) ?? 0) + 1);
  return out;
}

describe('murmur3 x64 128', () => {
  it('matches the reference vectors', () => {
    assert.deepEqual(murmur3x64128(Buffer.from(''), 0).map(hex), ['0000000000000000', '0000000000000000']);
    assert.deepEqual(murmur3x64128(Buffer.from('hello'), 0).map(hex), [
      'cbd8a7b341bd9b02',
      '5b1e906a48ae1d19',
    ]);
    assert.deepEqual(murmur3x64128(Buffer.from('hello, world'), 0).map(hex), [
      '342fac623a5ebc8e',
      '4cdcbc079642414d',
    ]);
    assert.equal(hex(murmur3x64128(Buffer.from('hello'), 1)[0]), 'a78ddff5adae8d10');
  });
});

describe('maglev table', () => {
  it('gives each of N backends its share within a few percent', () => {
    for (const n of [3, 7, 20]) {
      const m = 16381;
      const t = maglevTable(backends(n), m, seed);
      const s = shares(t);
      assert.equal(s.size, n);
      for (const [id, count] of s) {
        assert.ok(id >= 1 && id <= n);
        const dev = Math.abs(count - m / n) / (m / n);
        assert.ok(dev < 0.05, `n=${n}: backend ${id} has ${count} of ${m} (${(dev * 100).toFixed(1)}% off)`);
      }
    }
  });

  it('moves only the removed backend’s slots (minimal disruption)', () => {
    const n = 10;
    const m = 16381;
    const all = backends(n);
    const before = maglevTable(all, m, seed);
    const removed = all[4] as MaglevBackend;
    const after = maglevTable(
      all.filter((b) => b !== removed),
      m,
      seed,
    );
    let kept = 0;
    let moved = 0;
    for (let i = 0; i < m; i++) {
      if (before[i] === removed.id) continue;
      kept++;
      if (after[i] !== before[i]) moved++;
    }
    assert.ok(!after.includes(removed.id));
    // Slots of surviving backends that changed owner: ideally 0, a few % at most.
    assert.ok(moved / kept < 0.03, `moved ${moved} of ${kept} slots of surviving backends`);
    // Adding a backend takes about 1/(N+1) of the table.
    const grown = maglevTable([...all, ...backends(1, n)], m, seed);
    let changed = 0;
    for (let i = 0; i < m; i++) if (grown[i] !== before[i]) changed++;
    assert.ok(Math.abs(changed / m - 1 / (n + 1)) < 0.03, `adding one changed ${changed} of ${m}`);
  });

  it('is deterministic and independent of input order', () => {
    const a = maglevTable(backends(5), 251, seed);
    const b = maglevTable(backends(5).reverse(), 251, seed);
    assert.deepEqual(a, b);
    const other = maglevTable(backends(5), 251, maglevSeed('AAAAAAAAAAAAAAAA'));
    assert.notDeepEqual(a, other);
  });

  it('is empty without backends and refuses sizes and seeds Cilium does not take', () => {
    assert.ok(maglevTable([], 251, seed).every((x) => x === 0));
    assert.throws(
      () => maglevTable(backends(2), 1000, seed),
      (e) => isCode(e, 'ERR_SERVICE_MAGLEV_SIZE'),
    );
    assert.throws(
      () => maglevSeed('short'),
      (e) => isCode(e, 'ERR_SERVICE_MAGLEV_SEED'),
    );
  });
});
