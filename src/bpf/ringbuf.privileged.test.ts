import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { isCode } from '../shared/errors.js';
import { bytes, u32 } from './codec.js';
import { TypedMap } from './map.js';
import { BpfObject } from './object.js';
import { RingBufferConsumer, RingBufferReader } from './ringbuf.js';
import { basicsObject, icmpEchoPacket } from './test-support.js';

/** Resolves when `cond` holds, polling on timers (so it fails, not hangs, after `ms`). */
async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await sleep(5);
  }
}

describe('RingBufferReader', () => {
  let obj: BpfObject;
  before(() => {
    obj = BpfObject.open(basicsObject);
    obj.load();
  });
  after(() => obj.close());

  it('delivers records in order without blocking the event loop', async () => {
    const got: Buffer[] = [];
    const reader = new RingBufferReader(obj.map('events'), (r) => got.push(r));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    try {
      reader.start();
      // Nothing is produced yet: the loop must keep ticking while the reader waits.
      await sleep(300);
      assert.ok(ticks >= 15, `event loop ticked only ${ticks} times in 300 ms`);
      assert.equal(got.length, 0);

      const prog = obj.program('weir_ringbuf_emit');
      const sent: Buffer[] = [];
      for (let i = 0; i < 40; i++) {
        const pkt = icmpEchoPacket({ payload: 10 + i });
        pkt.writeUInt32BE(0xa0000000 + i, 0); // distinct first bytes per record
        sent.push(pkt);
        assert.equal(prog.testRun({ data: pkt }).retval, 0);
      }
      const ticksBefore = ticks;
      await waitFor(() => got.length === 40, 5000);
      assert.ok(ticks >= ticksBefore, 'timers still run');
      got.forEach((rec, i) => {
        const pkt = sent[i] ?? Buffer.alloc(0);
        assert.equal(rec.length, 16, 'struct event');
        assert.equal(rec.readUInt32LE(0), i, 'sequence in order');
        assert.equal(rec.readUInt32LE(4), pkt.length, 'skb length');
        assert.deepEqual(rec.subarray(8, 16), pkt.subarray(0, 8), 'packet head intact');
      });
      assert.equal(reader.records, 40);
      assert.equal(reader.bytes, 40 * 16);
    } finally {
      clearInterval(timer);
      reader.close();
    }
    // After close nothing more is delivered and the handle does not keep node alive.
    obj.program('weir_ringbuf_emit').testRun({ data: icmpEchoPacket() });
    await sleep(50);
    assert.equal(got.length, 40);
    assert.throws(
      () => reader.start(),
      (e) => isCode(e, 'ERR_BPF_STATE'),
    );
  });

  it('consumes by mmap without copies, in order, across the end of the ring', () => {
    // 24 bytes a record (8 of header): 2000 records a round fill 48 of the ring's 64 KiB, so
    // three rounds wrap past its end twice.
    const seqs: number[] = [];
    const lens: number[] = [];
    let views = new Set<Uint8Array>();
    const consumer = new RingBufferConsumer(obj.map('events'), (data, offset, length) => {
      views.add(data);
      assert.equal(offset % 8, 0, 'records start 8-byte aligned');
      lens.push(length);
      seqs.push(
        data[offset]! | (data[offset + 1]! << 8) | (data[offset + 2]! << 16) | (data[offset + 3]! << 24),
      );
    });
    consumer.start();
    try {
      consumer.drain(); // what earlier tests left unread
      seqs.length = 0;
      lens.length = 0;
      const prog = obj.program('weir_ringbuf_emit');
      const pkt = icmpEchoPacket();
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 2000; i++) assert.equal(prog.testRun({ data: pkt }).retval, 0, 'reserved');
        views = new Set();
        assert.equal(consumer.drain(), 2000);
        assert.equal(views.size, 1, 'one view over the mapping for the whole drain');
      }
      assert.equal(consumer.drain(), 0, 'nothing left');
      assert.equal(seqs.length, 6000);
      seqs.forEach((s, i) => assert.equal(s, (seqs[0] as number) + i, `record ${i} in order`));
      assert.ok(lens.every((l) => l === 16));
      assert.equal(consumer.records - 6000, consumer.bytes / 16 - 6000, 'bytes counted with records');
    } finally {
      consumer.close();
    }
  });

  it('with flushMs, reads what was submitted without a wake-up after one that woke it', async () => {
    const flags = obj.variable('ringbuf_flags');
    const bss = new TypedMap(flags.map, u32(), bytes(flags.map.valueSize));
    const setFlags = (v: bigint) => {
      const img = bss.lookup(0) as Buffer;
      img.writeBigUInt64LE(v, flags.offset);
      bss.update(0, img);
    };
    const BPF_RB_NO_WAKEUP = 1n;
    const prog = obj.program('weir_ringbuf_emit');
    const pkt = icmpEchoPacket();
    const counts = { plain: 0, flushed: 0 };
    const plain = new RingBufferConsumer(obj.map('events'), () => void counts.plain++);
    const flushed = new RingBufferConsumer(obj.map('events'), () => void counts.flushed++, { flushMs: 40 });
    try {
      plain.drain(); // what earlier tests left unread
      // Without flushMs: records submitted without a wake-up wait for the next wake-up.
      plain.start();
      await sleep(50); // libuv registers the fd with epoll on its next turn (with the ring empty)
      setFlags(BPF_RB_NO_WAKEUP);
      for (let i = 0; i < 5; i++) prog.testRun({ data: pkt });
      await sleep(150);
      assert.equal(counts.plain, 0, 'no wake-up, no read');
      setFlags(0n);
      prog.testRun({ data: pkt }); // the ring is not caught up: the adaptive wake-up stays silent
      await sleep(150);
      assert.equal(counts.plain, 0);
      assert.equal(plain.drain(), 6, 'all still in the ring');
      plain.close();

      // With flushMs: one record that wakes the reader, then quiet ones within the window.
      flushed.start();
      await sleep(50);
      prog.testRun({ data: pkt });
      setFlags(BPF_RB_NO_WAKEUP);
      for (let i = 0; i < 10; i++) {
        prog.testRun({ data: pkt });
        await sleep(5);
      }
      await waitFor(() => counts.flushed === 11, 2000);
      await sleep(150);
      assert.equal(counts.flushed, 11, 'each record once');
      assert.equal(flushed.drain(), 0, 'nothing left');
    } finally {
      setFlags(0n);
      plain.close();
      flushed.close();
    }
  });

  it('refuses maps that are not ring buffers', () => {
    assert.throws(
      () => new RingBufferReader(obj.map('counters'), () => {}),
      (e) => isCode(e, 'ERR_BPF_CODEC'),
    );
  });

  it('stops and surfaces an error thrown by the record handler', () => {
    const reader = new RingBufferReader(obj.map('events'), () => {
      throw new Error('handler failed');
    });
    reader.start();
    try {
      obj.program('weir_ringbuf_emit').testRun({ data: icmpEchoPacket() });
      assert.throws(() => reader.drain(), /handler failed/);
    } finally {
      reader.close();
    }
  });
});
