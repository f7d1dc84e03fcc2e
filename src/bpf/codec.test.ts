import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCode } from '../shared/errors.js';
import {
  array,
  be16,
  be32,
  bytes,
  cstruct,
  encodeValue,
  formatIPv6,
  ipv4,
  ipv6,
  pad,
  parseIPv6,
  perCpuArray,
  s32,
  u16,
  u32,
  u64,
  u8,
} from './codec.js';

describe('codec', () => {
  it('encodes integers in host (little endian) or network order', () => {
    assert.deepEqual([...encodeValue(u32(), 0x01020304)], [4, 3, 2, 1]);
    assert.deepEqual([...encodeValue(be32(), 0x01020304)], [1, 2, 3, 4]);
    assert.deepEqual([...encodeValue(be16(), 8080)], [0x1f, 0x90]);
    assert.deepEqual([...encodeValue(u16(), 8080)], [0x90, 0x1f]);
    assert.equal(s32().decode(encodeValue(s32(), -5), 0), -5);
    assert.equal(u64().decode(encodeValue(u64(), 2n ** 63n + 1n), 0), 2n ** 63n + 1n);
  });

  it('rejects values that do not fit', () => {
    assert.throws(
      () => encodeValue(u8(), 256),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
    assert.throws(
      () => encodeValue(u32(), -1),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
    assert.throws(
      () => encodeValue(u32(), 1.5),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
    assert.throws(
      () => encodeValue(u64(), -1n),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
    assert.throws(
      () => encodeValue(bytes(2), Buffer.alloc(3)),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
    assert.throws(
      () => encodeValue(ipv4(), '10.0.0.256'),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
    assert.throws(
      () => encodeValue(ipv6(), '10.0.0.1'),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
  });

  it('converts IP addresses to network-order bytes and back', () => {
    assert.deepEqual([...encodeValue(ipv4(), '10.1.2.3')], [10, 1, 2, 3]);
    assert.equal(ipv4().decode(Buffer.from([192, 168, 0, 1]), 0), '192.168.0.1');
    const cases: [string, string][] = [
      ['fd00::1', 'fd00::1'],
      ['::', '::'],
      ['::1', '::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:DB8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['::ffff:10.0.0.1', '::ffff:a00:1'],
      ['fe80::', 'fe80::'],
    ];
    for (const [input, canonical] of cases) {
      assert.equal(formatIPv6(parseIPv6(input)), canonical, input);
    }
    assert.deepEqual([...parseIPv6('::ffff:10.0.0.1').subarray(10)], [0xff, 0xff, 10, 0, 0, 1]);
  });

  it('lays out C structs with natural alignment and zeroed padding', () => {
    const s = cstruct('layout_probe', { a: u8(), b: u32(), c: u16(), d: u64(), e: bytes(3) });
    assert.deepEqual(s.offsets, { a: 0, b: 4, c: 8, d: 16, e: 24 });
    assert.equal(s.size, 32);
    assert.equal(s.align, 8);
    const buf = Buffer.alloc(32, 0xee);
    s.encode({ a: 1, b: 2, c: 3, d: 4n, e: Buffer.from([5, 6, 7]) }, buf, 0);
    assert.equal(buf.subarray(1, 4).toString('hex'), '000000', 'implicit padding is zeroed');
    assert.deepEqual(s.decode(buf, 0), { a: 1, b: 2, c: 3, d: 4n, e: Buffer.from([5, 6, 7]) });
  });

  it('supports explicit padding, arrays and nesting', () => {
    const inner = cstruct('inner', { x: u16(), y: u8() });
    const s = cstruct('outer', { p: pad(2), i: inner, list: array(u32(), 2), port: be16() });
    assert.deepEqual(s.offsets, { p: 0, i: 2, list: 8, port: 16 });
    assert.equal(s.size, 20);
    const v = { i: { x: 7, y: 8 }, list: [1, 2], port: 443 };
    assert.deepEqual(s.decode(encodeValue(s, v), 0), v);
    assert.throws(
      () => encodeValue(s, { i: { x: 7, y: 8 }, list: [1, 2] } as never),
      (e) => isCode(e, 'ERR_BPF_CODEC') && /port/.test((e as Error).message),
    );
  });

  it('pads every per-CPU slot to 8 bytes', () => {
    const c = perCpuArray(u32(), 3);
    assert.equal(c.size, 24);
    const b = encodeValue(c, [1, 2, 3]);
    assert.equal(b.readUInt32LE(8), 2);
    assert.deepEqual(c.decode(b, 0), [1, 2, 3]);
  });
});
