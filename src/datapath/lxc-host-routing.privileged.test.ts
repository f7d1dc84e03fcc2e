// eBPF host routing (bpf/lib/host_routing.h) with BPF_PROG_TEST_RUN: a packet weir_from_container
// forwards to a pod of the node (weir_lxc) goes through the destination's ingress stage
// (weir_to_local, a tail call) and leaves as bpf_redirect_peer into that pod, addressed as the
// node's routing would (the pod's MAC from its host veth's, TTL - 1); its verdicts, conntrack
// entries, events and metrics are those weir_to_container would have made. A packet for
// anywhere else follows the node's FIB (bpf_redirect_neigh). --host-routing legacy leaves both to
// the stack.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RingBufferReader, withNetns } from '../bpf/index.js';
import { run } from '../shared/exec.js';
import { DropReason } from './drop-reasons.js';
import { PROGRAMS, type HostRouting } from './loader.js';
import { decodeFlowEvent, type FlowEvent } from './maps/events/index.js';
import { inetChecksum } from './packet/checksum.js';
import { ethernet, ipv4, ipv6, tcp } from './packet/index.js';
import { macText } from './packet/addr.js';
import {
  DatapathHarness,
  POD_A,
  POD_B,
  TC_ACT_OK,
  TC_ACT_REDIRECT,
  TC_ACT_SHOT,
  type TestEndpoint,
} from './test-support.js';

const TCP = 6;
const A = POD_A;
const B = POD_B;
/** Off the node: routed by the test namespace's FIB out of device 2. */
const REMOTE = '203.0.113.9';
const GATEWAY = '198.51.100.2';

const frame4 = (src: string, dst: string, sport: number, dport: number, flags: string, ttl = 64) =>
  ethernet({ payload: ipv4({ src, dst, ttl, payload: tcp({ sport, dport, flags }) }) });
const frame6 = (src: string, dst: string, sport: number, dport: number, flags: string) =>
  ethernet({ payload: ipv6({ src, dst, payload: tcp({ sport, dport, flags }) }) });

interface Outcome {
  retval: number;
  data: Buffer;
  /** weir_metrics as "reason/direction: packets". */
  metrics: string[];
  events: FlowEvent[];
}

function setup(mode: HostRouting) {
  const s = {} as { h: DatapathHarness; a: TestEndpoint; b: TestEndpoint; reader: RingBufferReader };
  const got: FlowEvent[] = [];
  before(async () => {
    s.h = await DatapathHarness.create({ devices: 3, hostRouting: mode });
    s.a = s.h.addEndpoint(0, 1, A.identity);
    s.b = s.h.addEndpoint(1, 2, B.identity);
    for (const p of [A, B]) {
      s.h.dp.ipcache.upsert(p.v4, p.identity);
      s.h.dp.ipcache.upsert(p.v6, p.identity);
    }
    for (const [p, ep] of [
      [A, s.a],
      [B, s.b],
    ] as const)
      for (const ip of [p.v4, p.v6])
        s.h.dp.lxc.set({ ip, ifindex: ep.ifindex, mac: p.mac, hostMac: p.hostMac });
    s.reader = new RingBufferReader(s.h.dp.events, (r) => got.push(decodeFlowEvent(r)));
    s.reader.start();
  });
  after(async () => {
    s.reader?.close();
    await s.h?.destroy();
  });
  beforeEach(() => {
    s.h.dp.policy(1).clear();
    s.h.dp.policy(2).clear();
    s.h.dp.ct.flush();
    s.reader.drain();
    got.length = 0;
  });
  /** A packet through weir_from_container of endpoint `from`. */
  const send = (from: TestEndpoint, frame: Buffer): Outcome => {
    s.h.dp.metrics.clear();
    const r = withNetns(s.h.netns, () =>
      s.h.dp.program(PROGRAMS.fromContainer).testRun({ data: frame, ifindex: from.ifindex }),
    );
    s.reader.drain();
    const metrics = s.h.dp.metrics
      .list()
      .map((m) => `${m.reason}/${m.direction}: ${m.packets}`)
      .sort();
    return { retval: r.retval, data: r.data, metrics, events: got.splice(0) };
  };
  /** A allows TCP 80 and 81 to B at its egress; B admits A on `ingressPort` only. */
  const allow = (ingressPort = 80) => {
    for (const port of [80, 81])
      s.h.dp
        .policy(1)
        .upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port }, { cookie: 11 });
    s.h.dp
      .policy(2)
      .upsert(
        { identity: A.identity, direction: 'ingress', protocol: TCP, port: ingressPort },
        { cookie: 22 },
      );
  };
  return { s, send, allow };
}

const summary = (e: FlowEvent) => ({
  type: e.type,
  ...(e.trace ? { trace: e.trace } : {}),
  direction: e.direction,
  reason: e.reason,
  reply: e.reply,
  ifindex: e.ifindex,
  endpointId: e.endpointId,
  srcIdentity: e.srcIdentity,
  dstIdentity: e.dstIdentity,
  cookie: e.cookie,
});

describe('eBPF host routing (--host-routing bpf)', () => {
  const { s, send, allow } = setup('bpf');

  it("delivers an allowed SYN into the destination pod after its ingress stage, addressed as the node's routing would", () => {
    allow();
    const out = send(s.a, frame4(A.v4, B.v4, 40000, 80, 'S'));
    assert.equal(out.retval, TC_ACT_REDIRECT, 'bpf_redirect_peer into the destination');
    assert.equal(macText(out.data.subarray(0, 6)), B.mac, 'to the pod');
    assert.equal(macText(out.data.subarray(6, 12)), B.hostMac, 'from its host veth');
    const ip = out.data.subarray(14, 34);
    assert.equal(ip[8], 63, 'TTL - 1');
    assert.equal(inetChecksum(ip), 0, 'the IPv4 header checksum still holds');
    // Both stages counted, as weir_from_container + weir_to_container would have.
    assert.deepEqual(out.metrics, ['0/egress: 1', '0/ingress: 1']);
    const a = { ifindex: s.a.ifindex, endpointId: 1 };
    const b = { ifindex: s.b.ifindex, endpointId: 2 };
    const ids = { srcIdentity: A.identity, dstIdentity: B.identity, reply: false, reason: 0 };
    assert.deepEqual(out.events.map(summary), [
      { type: 'policy-verdict', direction: 'egress', ...a, ...ids, cookie: 11 },
      { type: 'trace', trace: 'open', direction: 'egress', ...a, ...ids, cookie: 11 },
      { type: 'policy-verdict', direction: 'ingress', ...b, ...ids, cookie: 22 },
      { type: 'trace', trace: 'open', direction: 'ingress', ...b, ...ids, cookie: 22 },
    ]);
    const dirs = s.h.dp.ct
      .list()
      .filter((e) => e.src === A.v4 && e.dst === B.v4)
      .map((e) => e.direction)
      .sort();
    assert.deepEqual(dirs, ['egress', 'ingress'], 'one conntrack entry per side, as through the stack');
  });

  it('routes the reply back the same way, as a reply of both entries, without events', () => {
    allow();
    assert.equal(send(s.a, frame4(A.v4, B.v4, 40001, 80, 'S')).retval, TC_ACT_REDIRECT);
    const out = send(s.b, frame4(B.v4, A.v4, 80, 40001, 'SA'));
    assert.equal(out.retval, TC_ACT_REDIRECT);
    assert.equal(macText(out.data.subarray(0, 6)), A.mac);
    assert.equal(macText(out.data.subarray(6, 12)), A.hostMac);
    assert.deepEqual(out.metrics, ['0/egress: 1', '0/ingress: 1']);
    assert.deepEqual(out.events, []);
    const est = s.h.dp.ct.list().filter((e) => e.src === A.v4 && e.sport === 40001);
    assert.equal(est.length, 2);
    for (const e of est) assert.equal(e.packetsRev, 1n, `${e.direction} entry saw the reply`);
  });

  it("judges a reply anew at the destination when only the sender's side still tracks it", () => {
    allow();
    assert.equal(send(s.a, frame4(A.v4, B.v4, 40003, 80, 'S')).retval, TC_ACT_REDIRECT);
    // A's entry is gone (evicted, flushed): B's stage still sees a reply, A's must not take the
    // sender's word for it, and A admits nothing from B.
    const tuple = { family: 4, src: A.v4, dst: B.v4, sport: 40003, dport: 80, proto: TCP } as const;
    assert.ok(s.h.dp.ct.delete({ ...tuple, direction: 'egress' }));
    const out = send(s.b, frame4(B.v4, A.v4, 80, 40003, 'SA'));
    assert.equal(out.retval, TC_ACT_SHOT);
    assert.deepEqual(out.metrics, ['0/egress: 1', `${DropReason.POLICY}/ingress: 1`]);
    const b = s.h.dp.ct.list().find((e) => e.sport === 40003 && e.direction === 'ingress');
    assert.equal(b?.packetsRev, 1n, "B's entry saw its reply");
  });

  it("drops what the destination's ingress policy denies, in the destination's name", () => {
    allow(80);
    const out = send(s.a, frame4(A.v4, B.v4, 40002, 81, 'S'));
    assert.equal(out.retval, TC_ACT_SHOT);
    assert.deepEqual(out.metrics, [`0/egress: 1`, `${DropReason.POLICY}/ingress: 1`]);
    const verdict = out.events.find((e) => e.type === 'policy-verdict' && e.direction === 'ingress');
    assert.deepEqual(verdict && summary(verdict), {
      type: 'policy-verdict',
      direction: 'ingress',
      reason: DropReason.POLICY,
      reply: false,
      ifindex: s.b.ifindex,
      endpointId: 2,
      srcIdentity: A.identity,
      dstIdentity: B.identity,
      cookie: 0,
    });
    assert.ok(
      out.events.some((e) => e.type === 'drop' && e.endpointId === 2 && e.reason === DropReason.POLICY),
      'and a drop event of the destination',
    );
  });

  it('keeps the egress verdict first: a denied egress never reaches the destination', () => {
    s.h.dp
      .policy(2)
      .upsert({ identity: A.identity, direction: 'ingress', protocol: TCP, port: 80 }, { cookie: 22 });
    const out = send(s.a, frame4(A.v4, B.v4, 40003, 80, 'S'));
    assert.equal(out.retval, TC_ACT_SHOT);
    assert.deepEqual(out.metrics, [`${DropReason.POLICY}/egress: 1`]);
    assert.ok(out.events.every((e) => e.endpointId === 1));
  });

  it('routes IPv6 the same way (hop limit - 1)', () => {
    allow();
    const out = send(s.a, frame6(A.v6, B.v6, 40004, 80, 'S'));
    assert.equal(out.retval, TC_ACT_REDIRECT);
    assert.equal(macText(out.data.subarray(0, 6)), B.mac);
    assert.equal(out.data[14 + 7], 63);
    assert.deepEqual(out.metrics, ['0/egress: 1', '0/ingress: 1']);
  });

  it('leaves a packet whose TTL would expire to the stack (ICMP time exceeded), judged once', () => {
    allow();
    const out = send(s.a, frame4(A.v4, B.v4, 40005, 80, 'S', 1));
    assert.equal(out.retval, TC_ACT_OK);
    assert.deepEqual(out.metrics, ['0/egress: 1']);
  });

  it("sends a packet for off the node out of the FIB's device (bpf_redirect_neigh)", async () => {
    const ns = s.h.netns;
    await run(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await run(['ip', '-n', ns, 'link', 'set', 'weirdp2', 'up']);
    await run(['ip', '-n', ns, 'link', 'set', 'weirdq2', 'up']);
    await run(['ip', '-n', ns, 'addr', 'add', '198.51.100.1/24', 'dev', 'weirdp2']);
    await run(['ip', '-n', ns, 'route', 'add', '203.0.113.0/24', 'via', GATEWAY, 'dev', 'weirdp2']);
    s.h.dp.ipcache.upsert(REMOTE, 2);
    s.h.dp.policy(1).upsert({ identity: 2, direction: 'egress', protocol: TCP, port: 443 }, { cookie: 5 });
    const out = send(s.a, frame4(A.v4, REMOTE, 40006, 443, 'S'));
    assert.equal(out.retval, TC_ACT_REDIRECT);
    assert.equal(out.data[14 + 8], 63, 'TTL - 1');
    assert.equal(inetChecksum(out.data.subarray(14, 34)), 0);
    assert.deepEqual(out.metrics, ['0/egress: 1']);
    // No route: the stack decides (and answers with an ICMP unreachable).
    const none = send(s.a, frame4(A.v4, '192.0.2.1', 40007, 443, 'S'));
    assert.equal(none.retval, TC_ACT_OK);
    assert.deepEqual(none.metrics, ['0/egress: 1']);
    s.h.dp.ipcache.delete(REMOTE);
  });
});

describe('legacy host routing (--host-routing legacy)', () => {
  const { s, send, allow } = setup('legacy');

  it("forwards to the node's stack: the destination's weir_to_container judges it", () => {
    allow();
    const frame = frame4(A.v4, B.v4, 40000, 80, 'S');
    const out = send(s.a, frame);
    assert.equal(out.retval, TC_ACT_OK);
    assert.deepEqual(out.data, frame, 'untouched');
    assert.deepEqual(out.metrics, ['0/egress: 1']);
    assert.ok(out.events.every((e) => e.endpointId === 1));
    assert.deepEqual(
      s.h.dp.ct.list().map((e) => e.direction),
      ['egress'],
    );
  });
});
