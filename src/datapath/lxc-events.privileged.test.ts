// Flow events of weir_from_container / weir_to_container (bpf/lib/events.h), read from the real
// weir_events ring buffer with RingBufferReader: policy verdicts of new connections, per-connection
// traces (open, TCP close with counters), drops with their reasons, and a full ring that counts
// its losses without changing any verdict.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { RingBufferReader } from '../bpf/index.js';
import { monotonicNowNs } from './clock.js';
import { DropReason } from './drop-reasons.js';
import { decodeFlowEvent, type FlowEvent } from './maps/events/index.js';
import { ETH_P, ethernet, icmp4Error, ICMP4, ipv4, rawL4, tcp, udp, type L4 } from './packet/index.js';
import { DatapathHarness, type RunResult, type TestEndpoint } from './test-support.js';

const TCP = 6;
const A = { v4: '10.0.0.1', identity: 1001 };
const B = { v4: '10.0.0.2', identity: 1002 };
const C = { v4: '10.0.0.3', identity: 1003 };
const OUTSIDE = '192.0.2.7'; // not in the ipcache: world

const v4 = (src: string, dst: string, l4: L4) => ethernet({ payload: ipv4({ src, dst, payload: l4 }) });
const seg = (sport: number, dport: number, flags: string) => tcp({ sport, dport, flags });

describe('flow events', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;
  let reader: RingBufferReader;
  const got: FlowEvent[] = [];

  before(async () => {
    h = await DatapathHarness.create({ devices: 1 });
    a = h.addEndpoint(0, 1, A.identity);
    for (const [addr, id] of [
      [A.v4, A.identity],
      [B.v4, B.identity],
      [C.v4, C.identity],
    ] as const)
      h.dp.ipcache.upsert(addr, id);
    reader = new RingBufferReader(h.dp.events, (r) => got.push(decodeFlowEvent(r)));
    reader.start();
  });
  after(async () => {
    reader?.close();
    await h?.destroy();
  });
  beforeEach(() => {
    h.dp.policy(a.endpointId).clear();
    h.dp.ct.flush();
    reader.drain();
    got.length = 0;
  });

  /** Runs one packet and returns its verdict and the events it produced (read synchronously). */
  const run = (hook: 'egress' | 'ingress', frame: Buffer): { res: RunResult; events: FlowEvent[] } => {
    const res = h.run(hook, a.ifindex, frame);
    reader.drain();
    return { res, events: got.splice(0) };
  };
  const allowAtoB = (cookie = 42) =>
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 80 }, { cookie });

  it('an allowed SYN: one allowed verdict with the cookie, then one TRACE_OPEN', () => {
    allowAtoB();
    const before = monotonicNowNs();
    const frame = v4(A.v4, B.v4, seg(40000, 80, 'S'));
    const { res, events } = run('egress', frame);
    assert.equal(res.verdict, 'forward');
    assert.deepEqual(
      events.map((e) => [e.type, e.trace]),
      [
        ['policy-verdict', undefined],
        ['trace', 'open'],
      ],
    );
    for (const e of events) {
      assert.deepEqual(
        {
          direction: e.direction,
          reason: e.reason,
          family: e.family,
          proto: e.proto,
          src: e.src,
          dst: e.dst,
          sport: e.sport,
          dport: e.dport,
          srcIdentity: e.srcIdentity,
          dstIdentity: e.dstIdentity,
          cookie: e.cookie,
          endpointId: e.endpointId,
          ifindex: e.ifindex,
          tcpFlags: e.tcpFlags,
          len: e.len,
          reply: e.reply,
          related: e.related,
        },
        {
          direction: 'egress',
          reason: 0,
          family: 4,
          proto: TCP,
          src: A.v4,
          dst: B.v4,
          sport: 40000,
          dport: 80,
          srcIdentity: A.identity,
          dstIdentity: B.identity,
          cookie: 42,
          endpointId: 1,
          ifindex: a.ifindex,
          tcpFlags: 0x02,
          len: frame.length,
          reply: false,
          related: false,
        },
      );
      assert.ok(e.ktimeNs >= before && e.ktimeNs <= monotonicNowNs(), 'monotonic timestamp');
    }
    const open = events[1];
    assert.equal(open?.packetsFwd, 1n);
    assert.equal(open?.bytesFwd, BigInt(frame.length));
  });

  it('established packets and replies emit nothing; FIN both ways emits one TRACE_CLOSE', () => {
    allowAtoB(7);
    const sent: number[] = [];
    const send = (hook: 'egress' | 'ingress', frame: Buffer) => {
      const { res, events } = run(hook, frame);
      assert.equal(res.verdict, 'forward');
      sent.push(frame.length);
      return events;
    };
    assert.equal(send('egress', v4(A.v4, B.v4, seg(40001, 80, 'S'))).length, 2);
    assert.deepEqual(send('ingress', v4(B.v4, A.v4, seg(80, 40001, 'SA'))), []);
    assert.deepEqual(send('egress', v4(A.v4, B.v4, seg(40001, 80, 'A'))), []);
    assert.deepEqual(send('egress', v4(A.v4, B.v4, seg(40001, 80, 'PA'))), []);
    assert.deepEqual(send('egress', v4(A.v4, B.v4, seg(40001, 80, 'FA'))), [], 'one FIN is not a close');
    // The responder's FIN closes it: seen on a reply.
    const closing = v4(B.v4, A.v4, seg(80, 40001, 'FA'));
    const events = send('ingress', closing);
    assert.equal(events.length, 1);
    const [c] = events;
    assert.ok(c);
    assert.equal(c.type, 'trace');
    assert.equal(c.trace, 'close');
    assert.equal(c.reply, true);
    assert.equal(c.direction, 'ingress');
    // The packet's tuple (a reply: responder -> initiator) and identities.
    assert.deepEqual([c.src, c.sport, c.dst, c.dport], [B.v4, 80, A.v4, 40001]);
    assert.deepEqual([c.srcIdentity, c.dstIdentity], [B.identity, A.identity]);
    assert.equal(c.cookie, 7);
    assert.equal(c.tcpFlags, 0x11);
    // The entry's counters at close, initiator -> responder as fwd.
    const fwd = [0, 2, 3, 4].reduce((s, i) => s + (sent[i] ?? 0), 0);
    const rev = (sent[1] ?? 0) + (sent[5] ?? 0);
    assert.deepEqual(
      [c.packetsFwd, c.bytesFwd, c.packetsRev, c.bytesRev],
      [4n, BigInt(fwd), 2n, BigInt(rev)],
    );
    // The last ACK after the close: nothing more.
    assert.deepEqual(send('egress', v4(A.v4, B.v4, seg(40001, 80, 'A'))), []);
  });

  it('an RST closes at once (TRACE_CLOSE on the initiator side, not a reply)', () => {
    allowAtoB();
    run('egress', v4(A.v4, B.v4, seg(40002, 80, 'S')));
    run('ingress', v4(B.v4, A.v4, seg(80, 40002, 'SA')));
    const { events } = run('egress', v4(A.v4, B.v4, seg(40002, 80, 'R')));
    assert.equal(events.length, 1);
    assert.deepEqual(
      [events[0]?.trace, events[0]?.reply, events[0]?.packetsFwd, events[0]?.packetsRev],
      ['close', false, 2n, 1n],
    );
    // A second RST on the closed entry reports nothing.
    assert.deepEqual(run('ingress', v4(B.v4, A.v4, seg(80, 40002, 'R'))).events, []);
  });

  it('a default-denied SYN: a denied verdict (133) and a drop (133), no trace', () => {
    const frame = v4(A.v4, C.v4, seg(40003, 443, 'S'));
    const { res, events } = run('egress', frame);
    assert.equal(res.reason, DropReason.POLICY);
    assert.deepEqual(
      events.map((e) => [e.type, e.reason, e.cookie]),
      [
        ['policy-verdict', 133, 0],
        ['drop', 133, 0],
      ],
    );
    const drop = events[1];
    assert.deepEqual(
      [drop?.srcIdentity, drop?.dstIdentity, drop?.dst, drop?.dport],
      [A.identity, C.identity, C.v4, 443],
    );
    assert.equal(drop?.tcpFlags, 0x02);
    assert.equal(drop?.len, frame.length);
    assert.equal(h.dp.ct.list().length, 0);
  });

  it('an explicit deny: verdict and drop carry the deny rule cookie and reason 181', () => {
    allowAtoB(42);
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: 0, direction: 'ingress', protocol: TCP, port: 22 }, { deny: true, cookie: 99 });
    h.dp.policy(a.endpointId).upsert({ identity: 0, direction: 'ingress', protocol: 0 }, { cookie: 5 });
    const { res, events } = run('ingress', v4(OUTSIDE, A.v4, seg(5555, 22, 'S')));
    assert.equal(res.reason, DropReason.POLICY_DENY);
    assert.deepEqual(
      events.map((e) => [e.type, e.reason, e.cookie, e.direction, e.srcIdentity, e.dstIdentity]),
      [
        ['policy-verdict', 181, 99, 'ingress', 2, A.identity],
        ['drop', 181, 99, 'ingress', 2, A.identity],
      ],
    );
    // The allow-all still admits another port, with its own cookie.
    const ok = run('ingress', v4(OUTSIDE, A.v4, seg(5555, 8080, 'S'))).events;
    assert.deepEqual(
      ok.map((e) => [e.type, e.reason, e.cookie]),
      [
        ['policy-verdict', 0, 5],
        ['trace', 0, 5],
      ],
    );
  });

  it('malformed packets: a drop with the parser reason, the tuple as far as parsed', () => {
    const short = v4(A.v4, B.v4, rawL4(TCP, Buffer.alloc(10)));
    const { res, events } = run('egress', short);
    assert.equal(res.reason, DropReason.CT_INVALID_HDR);
    assert.equal(events.length, 1);
    assert.deepEqual(
      [events[0]?.type, events[0]?.reason, events[0]?.src, events[0]?.dst, events[0]?.dport],
      ['drop', 135, A.v4, B.v4, 0],
    );
    assert.deepEqual([events[0]?.srcIdentity, events[0]?.dstIdentity], [A.identity, B.identity]);
    // Not IP at all: no addresses, the endpoint still known.
    const vlan = ethernet({ payload: Buffer.alloc(46), type: ETH_P.VLAN });
    const l2 = run('egress', vlan).events;
    assert.deepEqual(
      l2.map((e) => [e.type, e.reason, e.family, e.src, e.endpointId, e.srcIdentity]),
      [['drop', DropReason.UNSUPPORTED_L3, 0, undefined, 1, A.identity]],
    );
  });

  it('an unrelated ICMP error: a drop flagged RELATED (an ICMP error), no verdict', () => {
    const quoted = ipv4({ src: A.v4, dst: B.v4, payload: udp({ sport: 5000, dport: 53 }) });
    const err = v4(B.v4, A.v4, icmp4Error({ type: ICMP4.DEST_UNREACH, code: 3, quoted }));
    const { res, events } = run('ingress', err);
    assert.equal(res.reason, DropReason.POLICY);
    assert.deepEqual(
      events.map((e) => [e.type, e.reason, e.related, e.proto]),
      [['drop', 133, true, 1]],
    );
  });

  it('records also arrive from the event loop (no drain call)', async () => {
    allowAtoB();
    h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40009, 80, 'S')));
    const end = Date.now() + 5000;
    while (got.length < 2 && Date.now() < end) await sleep(5);
    assert.deepEqual(
      got.map((e) => e.type),
      ['policy-verdict', 'trace'],
    );
  });
});

describe('flow events: a full ring', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;
  before(async () => {
    // One page: 34 records of 112 + 8 bytes of header fit.
    h = await DatapathHarness.create({ devices: 1, eventsBufferBytes: 4096 });
    a = h.addEndpoint(0, 1, A.identity);
    h.dp.ipcache.upsert(B.v4, B.identity);
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 80 }, { cookie: 1 });
  });
  after(async () => h?.destroy());

  it('counts the reservations that failed in weir_events_lost; verdicts stay right', () => {
    const N = 100;
    assert.equal(h.dp.eventsLost(), 0n);
    for (let i = 0; i < N; i++) {
      // Even ports are allowed (2 events), odd ones denied (2 events): the verdicts must not change.
      const allowed = i % 2 === 0;
      const res = h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(30000 + i, allowed ? 80 : 81, 'S')));
      assert.equal(res.verdict, allowed ? 'forward' : 'drop', `packet ${i}`);
    }
    assert.equal(h.dp.ct.list().length, N / 2);
    const lost = h.dp.eventsLost();
    const records: FlowEvent[] = [];
    const reader = new RingBufferReader(h.dp.events, (r) => records.push(decodeFlowEvent(r)));
    try {
      reader.start();
      reader.drain();
    } finally {
      reader.close();
    }
    assert.equal(records.length, Math.floor(4096 / 120));
    assert.equal(BigInt(records.length) + lost, BigInt(2 * N));
    // The ring kept the oldest records (the first packets), in order.
    assert.deepEqual(
      records.slice(0, 4).map((e) => [e.type, e.sport]),
      [
        ['policy-verdict', 30000],
        ['trace', 30000],
        ['policy-verdict', 30001],
        ['drop', 30001],
      ],
    );
  });
});
