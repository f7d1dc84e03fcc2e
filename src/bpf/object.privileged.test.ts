import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isCode } from '../shared/errors.js';
import { checkLayout } from './btf.js';
import { bytes, cstruct, u16, u32, u64, u8, pad } from './codec.js';
import { VerifierError } from './errors.js';
import { BpfMap, MapType, TypedMap, perCpu } from './map.js';
import { BpfObject } from './object.js';
import { ProgType, skbContext } from './program.js';
import {
  basicsObject,
  ensureBpffs,
  icmpEchoPacket,
  ipChecksum,
  testPinDir,
  verifierFailObject,
} from './test-support.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const pinDir = testPinDir();

function loadBasics(config: Record<string, number> = {}): BpfObject {
  const o = BpfObject.open(basicsObject);
  try {
    o.setConfig(config);
    o.load();
  } catch (err) {
    o.close();
    throw err;
  }
  return o;
}

describe('BpfObject', () => {
  before(ensureBpffs);
  after(() => rmSync(pinDir, { recursive: true, force: true }));

  it('loads programs and maps and reports their kernel shape', () => {
    const o = loadBasics();
    try {
      const names = o
        .programs()
        .map((p) => p.name)
        .sort();
      assert.deepEqual(names, ['weir_connect4', 'weir_lpm_lookup', 'weir_ringbuf_emit', 'weir_tc_count']);
      const p = o.program('weir_tc_count');
      assert.equal(p.type, ProgType.sched_cls);
      assert.ok(p.fd > 0 && p.id > 0);
      const counters = o.map('counters');
      assert.equal(counters.type, MapType.array);
      assert.equal(counters.keySize, 4);
      assert.equal(counters.valueSize, 8);
      assert.equal(counters.maxEntries, 5);
      assert.ok(o.maps().some((m) => m.name.endsWith('.bss')));
      assert.throws(
        () => o.program('nope'),
        (e) => isCode(e, 'ERR_BPF_NOT_FOUND'),
      );
      assert.throws(
        () => o.map('nope'),
        (e) => isCode(e, 'ERR_BPF_NOT_FOUND'),
      );
      assert.throws(
        () => o.setConfig({ cfg_drop: 1 }),
        (e) => isCode(e, 'ERR_BPF_STATE'),
      );
    } finally {
      o.close();
    }
    assert.throws(
      () => o.program('weir_tc_count'),
      (e) => isCode(e, 'ERR_BPF_STATE'),
    );
  });

  it('runs a program with BPF_PROG_TEST_RUN: verdict, packet out, duration, counters', () => {
    const o = loadBasics();
    try {
      const pkt = icmpEchoPacket();
      const r = o.program('weir_tc_count').testRun({ data: pkt, repeat: 5 });
      assert.equal(r.retval, TC_ACT_OK);
      assert.deepEqual(r.data, pkt, 'packet unchanged without cfg_tos');
      assert.ok(r.durationNs > 0, `duration ${r.durationNs}`);
      const counters = new TypedMap(o.map('counters'), u32(), u64());
      assert.equal(counters.lookup(0), 5n, 'packets');
      assert.equal(counters.lookup(1), 5n, 'icmp echo requests');
      const perCpuPackets = new TypedMap(o.map('pcpu_packets'), u32(), perCpu(u64()));
      const slots = perCpuPackets.lookup(0);
      assert.ok(slots);
      assert.equal(
        slots.reduce((a, b) => a + b, 0n),
        5n,
      );
    } finally {
      o.close();
    }
  });

  it('changes the verdict and rewrites the packet through volatile const config', () => {
    const o = loadBasics({ cfg_drop: 1, cfg_tos: 0x28 });
    try {
      const pkt = icmpEchoPacket();
      const r = o.program('weir_tc_count').testRun({ data: pkt, ctxIn: skbContext({ mark: 7 }) });
      assert.equal(r.retval, TC_ACT_SHOT);
      assert.equal(r.data[15], 0x28, 'TOS rewritten');
      assert.equal(r.data.readUInt16BE(24), ipChecksum(r.data.subarray(14, 34)), 'IP checksum fixed up');
      assert.equal(r.ctxOut?.readUInt32LE(8), 7, 'mark carried through the context');
    } finally {
      o.close();
    }
  });

  it('refuses unknown or ill-sized config before changing anything', () => {
    const o = BpfObject.open(basicsObject);
    try {
      assert.throws(
        () => o.setConfig({ cfg_drop: 1, no_such_var: 1 }),
        (e) =>
          isCode(e, 'ERR_BPF_NOT_FOUND') &&
          (e as { location: { field?: string } }).location.field === 'no_such_var',
      );
      assert.throws(
        () => o.setConfig({ cfg_tos: 256 }),
        (e) => isCode(e, 'ERR_BPF_CODEC'),
      );
      assert.throws(
        () => o.setConfig({ last_len: 1 }),
        (e) => isCode(e, 'ERR_BPF_NOT_FOUND'),
        '.bss is not config',
      );
      o.load();
      // The failed setConfig calls above left cfg_drop at its default.
      assert.equal(o.program('weir_tc_count').testRun({ data: icmpEchoPacket() }).retval, TC_ACT_OK);
    } finally {
      o.close();
    }
  });

  it('reads and writes .bss and .data globals through their maps', () => {
    const o = loadBasics();
    try {
      const lastLen = o.variable('last_len');
      const marker = o.variable('data_marker');
      const bss = new TypedMap(lastLen.map, u32(), bytes(lastLen.map.valueSize));
      const data = new TypedMap(marker.map, u32(), bytes(marker.map.valueSize));
      assert.equal(data.lookup(0)?.readBigUInt64LE(marker.offset), 0x1122334455667788n);
      const pkt = icmpEchoPacket({ payload: 50 });
      o.program('weir_tc_count').testRun({ data: pkt });
      assert.equal(bss.lookup(0)?.readUInt32LE(lastLen.offset), pkt.length);
      const img = Buffer.alloc(marker.map.valueSize);
      img.writeBigUInt64LE(42n, marker.offset);
      data.update(0, img);
      assert.equal(o.map('.data').name, marker.map.name);
      assert.equal(data.lookup(0)?.readBigUInt64LE(marker.offset), 42n);
    } finally {
      o.close();
    }
  });

  it('fails with ERR_BPF_VERIFIER and the full verifier log', () => {
    const o = BpfObject.open(verifierFailObject);
    let err: unknown;
    try {
      o.load();
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof VerifierError, String(err));
    assert.equal(err.code, 'ERR_BPF_VERIFIER');
    assert.equal(err.program, 'weir_oob_read');
    assert.match(err.log, /invalid access to packet/);
    assert.match(err.message, /weir_oob_read.*outside of the packet/);
    assert.ok(err.errno > 0 && err.errnoName);
    assert.throws(
      () => o.program('weir_oob_read'),
      (e) => isCode(e, 'ERR_BPF_STATE'),
      'closed after failure',
    );
  });

  it('shares a map through reuseOrPinMap between two objects', () => {
    const pin = join(pinDir, 'counters');
    const first = BpfObject.open(basicsObject);
    const second = BpfObject.open(basicsObject);
    try {
      first.reuseOrPinMap('counters', pin);
      first.load();
      assert.ok(existsSync(pin), 'pinned on load');
      new TypedMap(first.map('counters'), u32(), u64()).update(3, 99n);

      second.reuseOrPinMap('counters', pin);
      second.load();
      const shared = new TypedMap(second.map('counters'), u32(), u64());
      assert.equal(shared.lookup(3), 99n, 'second object sees the first one`s entry');
      second.program('weir_tc_count').testRun({ data: icmpEchoPacket() });
      assert.equal(new TypedMap(first.map('counters'), u32(), u64()).lookup(0), 1n, 'and the reverse');
      assert.equal(first.map('counters').id, second.map('counters').id);
    } finally {
      first.close();
      second.close();
    }
    const pinned = BpfMap.fromPin(pin);
    try {
      assert.equal(new TypedMap(pinned, u32(), u64()).lookup(3), 99n, 'the pin outlives both objects');
    } finally {
      pinned.close();
    }
    const third = BpfObject.open(basicsObject);
    try {
      third.setMapMaxEntries('counters', 8);
      assert.throws(
        () => third.reuseOrPinMap('counters', pin),
        (e) => isCode(e, 'ERR_BPF_MAP_INCOMPATIBLE'),
      );
    } finally {
      third.close();
    }
  });

  it('loads a HASH_OF_MAPS with LPM trie inner maps defined in C', () => {
    const o = loadBasics();
    const inner = BpfMap.create({
      type: 'lpm_trie',
      name: 'weir_t_inner',
      keySize: 8,
      valueSize: 4,
      maxEntries: 16,
    });
    try {
      const outer = new TypedMap(o.map('lpm_outer'), u32(), u32());
      assert.equal(o.map('lpm_outer').type, MapType.hash_of_maps);
      const lpmKey = cstruct('lpm_key', { prefixlen: u32(), addr: bytes(4) });
      new TypedMap(inner, lpmKey, u32()).update({ prefixlen: 16, addr: Buffer.from([10, 1, 0, 0]) }, 1234);
      outer.update(5, inner.fd);
      assert.equal(outer.lookup(5), inner.id, 'lookup returns the inner map id');
      const prog = o.program('weir_lpm_lookup');
      assert.equal(prog.testRun({ data: icmpEchoPacket(), ctxIn: skbContext({ mark: 5 }) }).retval, 1234);
      assert.equal(prog.testRun({ data: icmpEchoPacket(), ctxIn: skbContext({ mark: 6 }) }).retval, -1);
      const reopened = BpfMap.fromId(outer.lookup(5) ?? 0);
      try {
        assert.equal(reopened.type, MapType.lpm_trie);
      } finally {
        reopened.close();
      }
    } finally {
      inner.close();
      o.close();
    }
  });

  it('checks a TypeScript struct mirror against the object`s BTF', () => {
    const good = cstruct('layout_probe', { a: u8(), b: u32(), c: u16(), d: u64(), e: bytes(3) });
    checkLayout(good, basicsObject, 'layout_probe');
    const padded = cstruct('layout_probe', { a: u8(), b: u32(), c: u16(), d: u64(), rest: pad(3) });
    checkLayout(padded, basicsObject, 'layout_probe');
    const wrongOffset = cstruct('layout_probe', { a: u16(), b: u32(), c: u16(), d: u64(), e: bytes(3) });
    assert.throws(
      () => checkLayout(wrongOffset, basicsObject, 'layout_probe'),
      (e) => isCode(e, 'ERR_BPF_LAYOUT') && /'a' is 1 bytes in C, 2/.test((e as Error).message),
    );
    const wrongSize = cstruct('layout_probe', { a: u8(), b: u32(), c: u16(), d: u32(), e: bytes(3) });
    assert.throws(
      () => checkLayout(wrongSize, basicsObject, 'layout_probe'),
      (e) => isCode(e, 'ERR_BPF_LAYOUT') && /size is 32 in C, 20/.test((e as Error).message),
    );
    const missing = cstruct('layout_probe', { a: u8(), b: u32(), c: u16(), d: u64() });
    assert.throws(
      () => checkLayout(missing, basicsObject, 'layout_probe'),
      (e) => isCode(e, 'ERR_BPF_LAYOUT') && /'e'/.test((e as Error).message),
    );
    assert.throws(
      () => checkLayout(good, basicsObject, 'no_such_struct'),
      (e) => isCode(e, 'ERR_BPF_NOT_FOUND'),
    );
  });
});
