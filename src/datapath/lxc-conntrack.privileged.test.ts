// Conntrack in weir_from_container / weir_to_container: entries, established and reply fast
// paths (no policy), related ICMP errors, timeouts, TCP close and reopen, counters, GC.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { monotonicNowNs } from './clock.js';
import { DropReason } from './drop-reasons.js';
import type { CtTuple } from './maps/ct/index.js';
import {
  ethernet,
  ICMP4,
  ICMP6,
  icmp4Echo,
  icmp4Error,
  icmp6Error,
  ipv4,
  ipv6,
  tcp,
  udp,
  type L4,
} from './packet/index.js';
import { DatapathHarness, type TestEndpoint } from './test-support.js';

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const SEC = 1_000_000_000n;

const A = { v4: '10.0.0.1', v6: 'fd00::1', identity: 1001 };
const B = { v4: '10.0.0.2', v6: 'fd00::2', identity: 1002 };
const ROUTER = '10.9.9.9';

const v4 = (src: string, dst: string, l4: L4) => ethernet({ payload: ipv4({ src, dst, payload: l4 }) });
const seg = (sport: number, dport: number, flags: string) => tcp({ sport, dport, flags });

describe('conntrack', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;
  let b: TestEndpoint;
  // Non-default timeouts prove the loader's config reaches the programs.
  const config = { ctTimeoutSyn: 30, ctTimeoutTcp: 3600, ctTimeoutClose: 5, ctTimeoutAny: 20 };

  before(async () => {
    h = await DatapathHarness.create({ config });
    a = h.addEndpoint(0, 1, A.identity);
    b = h.addEndpoint(1, 2, B.identity);
    for (const [addr, id] of [
      [A.v4, A.identity],
      [B.v4, B.identity],
      [A.v6, A.identity],
      [B.v6, B.identity],
    ] as const)
      h.dp.ipcache.upsert(addr, id);
  });
  after(async () => h?.destroy());
  beforeEach(() => {
    h.dp.policy(a.endpointId).clear();
    h.dp.policy(b.endpointId).clear();
    h.dp.ct.flush();
  });

  const allowAtoB = () =>
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: B.identity, direction: 'egress', protocol: 0 }, { cookie: 42 });
  const tupleAB = (
    sport: number,
    dport: number,
    proto = TCP,
    direction: 'egress' | 'ingress' = 'egress',
  ): CtTuple => ({
    family: 4,
    src: A.v4,
    dst: B.v4,
    sport,
    dport,
    proto,
    direction,
  });
  const lifetimeLeft = (t: CtTuple) => {
    const e = h.dp.ct.get(t);
    assert.ok(e, 'entry exists');
    return (e.lifetimeNs - monotonicNowNs()) / SEC;
  };

  it('a new connection creates an entry with the initiator tuple, identity, cookie and SYN timeout', () => {
    allowAtoB();
    const frame = v4(A.v4, B.v4, seg(40000, 80, 'S'));
    assert.equal(h.run('egress', a.ifindex, frame).verdict, 'forward');
    const [c, ...rest] = h.dp.ct.list();
    assert.equal(rest.length, 0);
    assert.ok(c);
    assert.deepEqual(
      {
        src: c.src,
        dst: c.dst,
        sport: c.sport,
        dport: c.dport,
        proto: c.proto,
        direction: c.direction,
        state: c.state,
      },
      { src: A.v4, dst: B.v4, sport: 40000, dport: 80, proto: TCP, direction: 'egress', state: 'new' },
    );
    assert.equal(c.srcIdentity, A.identity);
    assert.equal(c.cookie, 42);
    assert.equal(c.packetsFwd, 1n);
    assert.equal(c.bytesFwd, BigInt(frame.length));
    assert.equal(c.tcpFlagsFwd, 0x02);
    const left = lifetimeLeft(tupleAB(40000, 80));
    assert.ok(left > 28n && left <= 30n, `SYN timeout ${left}s`);
  });

  it('established traffic skips policy; the reply passes at the other hook and establishes', () => {
    allowAtoB();
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S'))).verdict, 'forward');
    h.dp.policy(a.endpointId).clear();
    // The reply arrives at A's ingress, where no policy allows B.
    assert.equal(h.run('ingress', a.ifindex, v4(B.v4, A.v4, seg(80, 40000, 'SA'))).verdict, 'forward');
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'A'))).verdict, 'forward');
    const e = h.dp.ct.get(tupleAB(40000, 80));
    assert.equal(e?.packetsFwd, 2n);
    assert.equal(e?.packetsRev, 1n);
    assert.equal(e?.tcpFlagsRev, 0x12);
    assert.equal(e?.state, 2);
    const left = lifetimeLeft(tupleAB(40000, 80));
    assert.ok(left > 3590n && left <= 3600n, `established timeout ${left}s`);
    // Without the entry the same reply is a new, unallowed connection.
    h.dp.ct.flush();
    assert.equal(h.run('ingress', a.ifindex, v4(B.v4, A.v4, seg(80, 40000, 'SA'))).reason, DropReason.POLICY);
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'A'))).reason, DropReason.POLICY);
  });

  it('each side of a local connection has its own entry; replies match the right one', () => {
    allowAtoB();
    h.dp
      .policy(b.endpointId)
      .upsert({ identity: A.identity, direction: 'ingress', protocol: TCP, port: 80 }, {});
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S'))).verdict, 'forward');
    assert.equal(h.run('ingress', b.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S'))).verdict, 'forward');
    const ingress = h.dp.ct.get(tupleAB(40000, 80, TCP, 'ingress'));
    assert.equal(ingress?.srcIdentity, A.identity);
    // B has no egress policy: its reply passes because of the ingress entry.
    assert.equal(h.run('egress', b.ifindex, v4(B.v4, A.v4, seg(80, 40000, 'SA'))).verdict, 'forward');
    assert.equal(h.run('ingress', a.ifindex, v4(B.v4, A.v4, seg(80, 40000, 'SA'))).verdict, 'forward');
    assert.equal(h.dp.ct.get(tupleAB(40000, 80, TCP, 'ingress'))?.packetsRev, 1n);
    assert.equal(h.dp.ct.get(tupleAB(40000, 80, TCP, 'egress'))?.packetsRev, 1n);
    // But B cannot open its own connection to A.
    assert.equal(h.run('egress', b.ifindex, v4(B.v4, A.v4, seg(5555, 80, 'S'))).reason, DropReason.POLICY);
  });

  it('ICMP echo: the reply of a request passes, an unsolicited reply does not', () => {
    h.dp.policy(a.endpointId).upsert({ identity: B.identity, direction: 'egress', protocol: ICMP }, {});
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, icmp4Echo({ id: 77 }))).verdict, 'forward');
    assert.equal(
      h.run('ingress', a.ifindex, v4(B.v4, A.v4, icmp4Echo({ id: 77, reply: true }))).verdict,
      'forward',
    );
    assert.equal(
      h.run('ingress', a.ifindex, v4(B.v4, A.v4, icmp4Echo({ id: 78, reply: true }))).reason,
      DropReason.POLICY,
    );
    const left = lifetimeLeft({ ...tupleAB(77, 0, ICMP) });
    assert.ok(left > 18n && left <= 20n, `non-TCP timeout ${left}s`);
  });

  it('ICMP errors about a tracked connection pass as related; others are dropped', () => {
    h.dp.policy(a.endpointId).upsert({ identity: 0, direction: 'egress', protocol: UDP, port: 53 }, {});
    const sent = ipv4({
      src: A.v4,
      dst: '10.1.2.3',
      payload: udp({ sport: 5000, dport: 53, payload: Buffer.alloc(20) }),
    });
    assert.equal(h.run('egress', a.ifindex, ethernet({ payload: sent })).verdict, 'forward');
    const unreach = (quoted: Buffer) =>
      v4(ROUTER, A.v4, icmp4Error({ type: ICMP4.DEST_UNREACH, code: 3, quoted }));
    assert.equal(h.run('ingress', a.ifindex, unreach(sent)).verdict, 'forward');
    const ttl = v4(ROUTER, A.v4, icmp4Error({ type: ICMP4.TIME_EXCEEDED, quoted: sent }));
    assert.equal(h.run('ingress', a.ifindex, ttl).verdict, 'forward');
    const other = ipv4({ src: A.v4, dst: '10.1.2.3', payload: udp({ sport: 5001, dport: 53 }) });
    assert.equal(h.run('ingress', a.ifindex, unreach(other)).reason, DropReason.POLICY);
    // Even where policy allows ICMP, an error opens nothing.
    h.dp.policy(a.endpointId).upsert({ identity: 0, direction: 'ingress', protocol: ICMP }, {});
    assert.equal(h.run('ingress', a.ifindex, unreach(other)).reason, DropReason.POLICY);
    // A's own error about a packet B sent it (B->A tracked at A's ingress) passes at A's egress.
    h.dp.policy(a.endpointId).upsert({ identity: B.identity, direction: 'ingress', protocol: UDP }, {});
    const fromB = ipv4({ src: B.v4, dst: A.v4, payload: udp({ sport: 6000, dport: 7 }) });
    assert.equal(h.run('ingress', a.ifindex, ethernet({ payload: fromB })).verdict, 'forward');
    const mine = v4(A.v4, B.v4, icmp4Error({ type: ICMP4.DEST_UNREACH, code: 3, quoted: fromB }));
    assert.equal(h.run('egress', a.ifindex, mine).verdict, 'forward');
    // A truncated quote is a broken header.
    const short = v4(ROUTER, A.v4, icmp4Error({ type: ICMP4.DEST_UNREACH, quoted: sent, quoteBytes: 24 }));
    assert.equal(h.run('ingress', a.ifindex, short).reason, DropReason.CT_INVALID_HDR);
  });

  it('IPv6: reply and related packet-too-big', () => {
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 443 }, {});
    const sent = ipv6({ src: A.v6, dst: B.v6, payload: tcp({ sport: 41000, dport: 443, flags: 'S' }) });
    assert.equal(h.run('egress', a.ifindex, ethernet({ payload: sent })).verdict, 'forward');
    const reply = ethernet({
      payload: ipv6({ src: B.v6, dst: A.v6, payload: tcp({ sport: 443, dport: 41000, flags: 'SA' }) }),
    });
    assert.equal(h.run('ingress', a.ifindex, reply).verdict, 'forward');
    const ptb = ethernet({
      payload: ipv6({
        src: 'fd00::99',
        dst: A.v6,
        payload: icmp6Error({ type: ICMP6.PKT_TOOBIG, mtu: 1280, quoted: sent }),
      }),
    });
    assert.equal(h.run('ingress', a.ifindex, ptb).verdict, 'forward');
    const unrelated = ipv6({ src: A.v6, dst: B.v6, payload: tcp({ sport: 41001, dport: 443 }) });
    const bad = ethernet({
      payload: ipv6({
        src: 'fd00::99',
        dst: A.v6,
        payload: icmp6Error({ type: ICMP6.DEST_UNREACH, quoted: unrelated }),
      }),
    });
    assert.equal(h.run('ingress', a.ifindex, bad).reason, DropReason.POLICY);
    assert.equal(h.dp.ct.list().find((c) => c.family === 6)?.state, 'established');
  });

  it('an expired entry counts as absent: policy decides again and a new entry replaces it', () => {
    allowAtoB();
    h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S')));
    const t = tupleAB(40000, 80);
    const e = h.dp.ct.get(t);
    assert.ok(e);
    h.dp.ct.set(t, { ...e, lifetimeNs: monotonicNowNs() - SEC });
    h.dp.policy(a.endpointId).clear();
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'A'))).reason, DropReason.POLICY);
    assert.equal(h.run('ingress', a.ifindex, v4(B.v4, A.v4, seg(80, 40000, 'A'))).reason, DropReason.POLICY);
    allowAtoB();
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'A'))).verdict, 'forward');
    assert.equal(h.dp.ct.get(t)?.packetsFwd, 1n, 'a fresh entry');
    assert.ok(lifetimeLeft(t) > 28n);
  });

  it('RST or FIN both ways close the connection; a new SYN then needs policy again', () => {
    allowAtoB();
    h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S')));
    h.run('ingress', a.ifindex, v4(B.v4, A.v4, seg(80, 40000, 'SA')));
    h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'FA')));
    assert.equal(h.dp.ct.get(tupleAB(40000, 80))?.state, 2, 'one FIN does not close');
    h.run('ingress', a.ifindex, v4(B.v4, A.v4, seg(80, 40000, 'FA')));
    assert.equal(h.dp.ct.get(tupleAB(40000, 80))?.state, 3);
    const left = lifetimeLeft(tupleAB(40000, 80));
    assert.ok(left > 3n && left <= 5n, `close timeout ${left}s`);
    // The last ACK still passes; a reopening SYN is judged by policy again.
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'A'))).verdict, 'forward');
    h.dp.policy(a.endpointId).clear();
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S'))).reason, DropReason.POLICY);
    // Allowed again, the SYN takes the closing entry over (rewritten in place): a new connection.
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: B.identity, direction: 'egress', protocol: 0 }, { cookie: 43 });
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S'))).verdict, 'forward');
    const fresh = h.dp.ct.get(tupleAB(40000, 80));
    assert.deepEqual(
      [
        fresh?.state,
        fresh?.packetsFwd,
        fresh?.packetsRev,
        fresh?.bytesRev,
        fresh?.tcpFlagsRev,
        fresh?.cookie,
      ],
      [1, 1n, 0n, 0n, 0, 43],
    );
    assert.ok(lifetimeLeft(tupleAB(40000, 80)) <= 30n, 'the SYN timeout');
    h.run('ingress', a.ifindex, v4(B.v4, A.v4, seg(80, 40000, 'SA')));
    assert.equal(h.dp.ct.get(tupleAB(40000, 80))?.state, 2, 'its answer establishes it');
    h.dp.policy(a.endpointId).clear();

    allowAtoB();
    h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40001, 80, 'S')));
    h.run('ingress', a.ifindex, v4(B.v4, A.v4, seg(80, 40001, 'R')));
    assert.equal(h.dp.ct.get(tupleAB(40001, 80))?.state, 3);
  });

  it('a mid-stream TCP packet allowed by policy opens an entry with the SYN timeout', () => {
    allowAtoB();
    assert.equal(h.run('egress', a.ifindex, v4(A.v4, B.v4, seg(40002, 80, 'PA'))).verdict, 'forward');
    assert.equal(h.dp.ct.get(tupleAB(40002, 80))?.state, 1);
    assert.ok(lifetimeLeft(tupleAB(40002, 80)) <= 30n);
  });

  it('gc deletes expired entries only; flush deletes all', () => {
    allowAtoB();
    h.run('egress', a.ifindex, v4(A.v4, B.v4, udp({ sport: 1, dport: 53 })));
    h.run('egress', a.ifindex, v4(A.v4, B.v4, udp({ sport: 2, dport: 53 })));
    const old = tupleAB(1, 53, UDP);
    const e = h.dp.ct.get(old);
    assert.ok(e);
    h.dp.ct.set(old, { ...e, lifetimeNs: 1n });
    assert.equal(h.dp.ct.list().filter((c) => c.expired).length, 1);
    assert.equal(h.dp.ct.gc(), 1);
    assert.deepEqual(
      h.dp.ct.list().map((c) => c.sport),
      [2],
    );
    assert.equal(h.dp.ct.flush(), 1);
    assert.equal(h.dp.ct.list().length, 0);
  });

  it('collect deletes expired entries and returns them with their final counters', () => {
    allowAtoB();
    const query = v4(A.v4, B.v4, udp({ sport: 3, dport: 53, payload: Buffer.alloc(30) }));
    const answer = v4(B.v4, A.v4, udp({ sport: 53, dport: 3, payload: Buffer.alloc(100) }));
    h.run('egress', a.ifindex, query);
    h.run('ingress', a.ifindex, answer);
    h.run('egress', a.ifindex, v4(A.v4, B.v4, udp({ sport: 4, dport: 53 })));
    const old = tupleAB(3, 53, UDP);
    const e = h.dp.ct.get(old);
    assert.ok(e);
    h.dp.ct.set(old, { ...e, lifetimeNs: 1n });
    const gone = h.dp.ct.collect();
    assert.equal(gone.length, 1);
    assert.deepEqual(
      [gone[0]?.sport, gone[0]?.packetsFwd, gone[0]?.bytesFwd, gone[0]?.packetsRev, gone[0]?.bytesRev],
      [3, 1n, BigInt(query.length), 1n, BigInt(answer.length)],
    );
    assert.equal(gone[0]?.cookie, 42);
    assert.equal(gone[0]?.expired, true);
    assert.deepEqual(
      h.dp.ct.list().map((c) => c.sport),
      [4],
    );
    assert.deepEqual(h.dp.ct.collect(), []);
  });

  it('collectUnclosed deletes every expired entry and returns only those not seen closing', () => {
    allowAtoB();
    for (const sport of [5, 6, 7]) h.run('egress', a.ifindex, v4(A.v4, B.v4, udp({ sport, dport: 53 })));
    for (const [sport, state] of [
      [5, 3],
      [6, 2],
    ] as const) {
      const t = tupleAB(sport, 53, UDP);
      const e = h.dp.ct.get(t);
      assert.ok(e);
      h.dp.ct.set(t, { ...e, state, lifetimeNs: 1n });
    }
    const r = h.dp.ct.collectUnclosed();
    assert.equal(r.removed, 2);
    assert.deepEqual(
      r.unclosed.map((c) => [c.sport, c.state, c.expired]),
      [[6, 'established', true]],
    );
    assert.deepEqual(
      h.dp.ct.list().map((c) => c.sport),
      [7],
    );
    assert.deepEqual(h.dp.ct.collectUnclosed(), { removed: 0, unclosed: [] });
  });

  it('liveTuples: the tuples of the entries not expired, as list() reads them', () => {
    allowAtoB();
    for (const sport of [8, 9]) h.run('egress', a.ifindex, v4(A.v4, B.v4, udp({ sport, dport: 53 })));
    const old = tupleAB(8, 53, UDP);
    const e = h.dp.ct.get(old);
    assert.ok(e);
    h.dp.ct.set(old, { ...e, lifetimeNs: 1n });
    const live = h.dp.ct.list().filter((c) => !c.expired);
    assert.ok(live.some((c) => c.sport === 9));
    assert.deepEqual(
      h.dp.ct.liveTuples(),
      live.map((c) => ({
        family: c.family,
        src: c.src,
        dst: c.dst,
        sport: c.sport,
        dport: c.dport,
        proto: c.proto,
        direction: c.direction,
        ...(c.fromProxy ? { fromProxy: true } : {}),
      })),
    );
  });
});
