// The staged datapath (bpf/lib/stages.h) with BPF_PROG_TEST_RUN: the first packet of a new
// connection goes from its entry program (weir_from_container, weir_to_container, weir_to_local)
// to the policy stage of its direction through weir_calls, which judges it (verdict event,
// conntrack entry) and delivers it; established packets finish in the entry program and never
// need the stage. A slot without its stage, or a stage whose per-CPU state is not this packet's,
// drops the packet (Missed tail call, 151), with its drop event and metrics: fail closed.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RingBufferReader, skbContext, withNetns } from '../bpf/index.js';
import { DropReason } from './drop-reasons.js';
import {
  CALLS,
  LOCAL_PROGRAM,
  POLICY_PROGRAMS,
  PROGRAMS,
  STAGE_PROGRAMS,
  type StageProgram,
} from './loader.js';
import { macText } from './packet/addr.js';
import { decodeFlowEvent, type FlowEvent } from './maps/events/index.js';
import { ethernet, ipv4, ipv6, tcp } from './packet/index.js';
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
/** Not in weir_lxc: the node's stack would route it (no host routing delivery). */
const C = { v4: '10.0.0.3', identity: 1003 };

const frame4 = (src: string, dst: string, sport: number, dport: number, flags: string) =>
  ethernet({ payload: ipv4({ src, dst, payload: tcp({ sport, dport, flags }) }) });
const frame6 = (src: string, dst: string, sport: number, dport: number, flags: string) =>
  ethernet({ payload: ipv6({ src, dst, payload: tcp({ sport, dport, flags }) }) });

interface Outcome {
  retval: number;
  /** weir_metrics as "reason/direction: packets", sorted. */
  metrics: string[];
  events: FlowEvent[];
}

describe('staged datapath: entry programs and policy stages', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;
  let b: TestEndpoint;
  let reader: RingBufferReader;
  const got: FlowEvent[] = [];

  before(async () => {
    h = await DatapathHarness.create({ devices: 2 });
    a = h.addEndpoint(0, 1, A.identity);
    b = h.addEndpoint(1, 2, B.identity);
    for (const p of [A, B]) {
      h.dp.ipcache.upsert(p.v4, p.identity);
      h.dp.ipcache.upsert(p.v6, p.identity);
    }
    h.dp.ipcache.upsert(C.v4, C.identity);
    for (const [p, ep] of [
      [A, a],
      [B, b],
    ] as const)
      for (const ip of [p.v4, p.v6])
        h.dp.lxc.set({ ip, ifindex: ep.ifindex, mac: p.mac, hostMac: p.hostMac });
    reader = new RingBufferReader(h.dp.events, (r) => got.push(decodeFlowEvent(r)));
    reader.start();
  });
  after(async () => {
    reader?.close();
    await h?.destroy();
  });
  /** Every slot as the loader fills it. */
  const fillSlots = () => {
    for (const [slot, name] of STAGE_PROGRAMS) h.dp.calls.update(slot, h.dp.program(name).fd);
  };
  beforeEach(() => {
    fillSlots();
    h.dp.policy(1).clear();
    h.dp.policy(2).clear();
    h.dp.ct.flush();
    reader.drain();
    got.length = 0;
  });

  const send = (
    program: StageProgram | (typeof PROGRAMS)[keyof typeof PROGRAMS],
    ifindex: number,
    frame: Buffer,
  ): Outcome => {
    h.dp.metrics.clear();
    const r = withNetns(h.netns, () => h.dp.program(program).testRun({ data: frame, ifindex }));
    reader.drain();
    const metrics = h.dp.metrics
      .list()
      .map((m) => `${m.reason}/${m.direction}: ${m.packets}`)
      .sort();
    return { retval: r.retval, metrics, events: got.splice(0) };
  };
  const egress = (frame: Buffer) => send(PROGRAMS.fromContainer, a.ifindex, frame);
  const ingress = (frame: Buffer) => send(PROGRAMS.toContainer, a.ifindex, frame);
  const kinds = (o: Outcome) => o.events.map((e) => `${e.type}${e.trace ? `/${e.trace}` : ''} ${e.reason}`);
  /** A may open TCP 80 to B and to C; A admits B on 8080. B admits A on 80. */
  const allow = () => {
    for (const identity of [B.identity, C.identity])
      h.dp.policy(1).upsert({ identity, direction: 'egress', protocol: TCP, port: 80 }, { cookie: 11 });
    h.dp
      .policy(1)
      .upsert({ identity: B.identity, direction: 'ingress', protocol: TCP, port: 8080 }, { cookie: 12 });
    h.dp
      .policy(2)
      .upsert({ identity: A.identity, direction: 'ingress', protocol: TCP, port: 80 }, { cookie: 22 });
  };
  const egressTuple = (sport: number) => ({
    family: 4 as const,
    src: A.v4,
    dst: C.v4,
    sport,
    dport: 80,
    proto: TCP,
    direction: 'egress' as const,
  });

  it('a new connection passes through the policy stage of each direction: verdict event, conntrack entry, trace', () => {
    allow();
    const out = egress(frame4(A.v4, C.v4, 40000, 80, 'S'));
    assert.equal(out.retval, TC_ACT_OK);
    assert.deepEqual(kinds(out), ['policy-verdict 0', 'trace/open 0']);
    assert.equal(out.events[0]?.cookie, 11);
    assert.deepEqual(out.metrics, ['0/egress: 1']);
    assert.ok(h.dp.ct.get(egressTuple(40000)), 'the egress stage made the entry');

    const inb = ingress(frame4(B.v4, A.v4, 41000, 8080, 'S'));
    assert.equal(inb.retval, TC_ACT_OK);
    assert.deepEqual(kinds(inb), ['policy-verdict 0', 'trace/open 0']);
    assert.equal(inb.events[0]?.cookie, 12);
    assert.deepEqual(inb.metrics, ['0/ingress: 1']);

    // Denied by the stage: the verdict event carries the drop, nothing is tracked.
    const denied = egress(frame4(A.v4, C.v4, 40001, 81, 'S'));
    assert.equal(denied.retval, TC_ACT_SHOT);
    assert.deepEqual(kinds(denied), [`policy-verdict ${DropReason.POLICY}`, `drop ${DropReason.POLICY}`]);
    assert.deepEqual(denied.metrics, [`${DropReason.POLICY}/egress: 1`]);
    assert.equal(h.dp.ct.get({ ...egressTuple(40001), dport: 81 }), undefined);
  });

  it('IPv6 takes the same stages', () => {
    allow();
    const out = send(PROGRAMS.fromContainer, a.ifindex, frame6(A.v6, B.v6, 40002, 80, 'S'));
    assert.equal(out.retval, TC_ACT_REDIRECT, 'both stages passed, delivered into B');
    assert.deepEqual(kinds(out), ['policy-verdict 0', 'trace/open 0', 'policy-verdict 0', 'trace/open 0']);
  });

  it('established, reply packets never need the policy stage: they pass with both slots empty', () => {
    allow();
    assert.equal(egress(frame4(A.v4, C.v4, 40010, 80, 'S')).retval, TC_ACT_OK);
    assert.equal(ingress(frame4(C.v4, A.v4, 80, 40010, 'SA')).retval, TC_ACT_OK);
    h.dp.calls.delete(CALLS.policyEgress);
    h.dp.calls.delete(CALLS.policyIngress);
    for (const [out, dir] of [
      [egress(frame4(A.v4, C.v4, 40010, 80, 'A')), 'egress'],
      [ingress(frame4(C.v4, A.v4, 80, 40010, 'PA')), 'ingress'],
      [egress(frame4(A.v4, C.v4, 40010, 80, 'PA')), 'egress'],
    ] as const) {
      assert.equal(out.retval, TC_ACT_OK);
      assert.deepEqual(out.metrics, [`0/${dir}: 1`]);
      assert.deepEqual(out.events, []);
    }
    const e = h.dp.ct.get(egressTuple(40010));
    assert.equal(e?.packetsFwd, 3n);
    assert.equal(e?.packetsRev, 2n);
  });

  it('an empty policy slot drops a new connection with Missed tail call (151): event, metrics, no entry', () => {
    allow();
    h.dp.calls.delete(CALLS.policyEgress);
    const out = egress(frame4(A.v4, C.v4, 40020, 80, 'S'));
    assert.equal(out.retval, TC_ACT_SHOT);
    assert.deepEqual(out.metrics, [`${DropReason.MISSED_TAIL_CALL}/egress: 1`]);
    assert.deepEqual(kinds(out), [`drop ${DropReason.MISSED_TAIL_CALL}`]);
    assert.deepEqual(
      {
        direction: out.events[0]?.direction,
        src: out.events[0]?.src,
        dst: out.events[0]?.dst,
        srcIdentity: out.events[0]?.srcIdentity,
        dstIdentity: out.events[0]?.dstIdentity,
        endpointId: out.events[0]?.endpointId,
      },
      {
        direction: 'egress',
        src: A.v4,
        dst: C.v4,
        srcIdentity: A.identity,
        dstIdentity: C.identity,
        endpointId: 1,
      },
    );
    assert.equal(h.dp.ct.get(egressTuple(40020)), undefined);

    h.dp.calls.delete(CALLS.policyIngress);
    const inb = ingress(frame4(B.v4, A.v4, 41020, 8080, 'S'));
    assert.equal(inb.retval, TC_ACT_SHOT);
    assert.deepEqual(inb.metrics, [`${DropReason.MISSED_TAIL_CALL}/ingress: 1`]);
    assert.deepEqual(kinds(inb), [`drop ${DropReason.MISSED_TAIL_CALL}`]);
  });

  it('host routing: the destination ingress stage missing drops there, after the sender egress stage allowed it', () => {
    allow();
    h.dp.calls.delete(CALLS.policyIngress);
    const out = egress(frame4(A.v4, B.v4, 40030, 80, 'S'));
    assert.equal(out.retval, TC_ACT_SHOT);
    assert.deepEqual(out.metrics, ['0/egress: 1', `${DropReason.MISSED_TAIL_CALL}/ingress: 1`]);
    assert.deepEqual(kinds(out), ['policy-verdict 0', 'trace/open 0', `drop ${DropReason.MISSED_TAIL_CALL}`]);
    assert.equal(out.events[2]?.endpointId, 2, "in the destination's name");
  });

  it("a stage run without its entry program's state for this packet drops (fail closed)", () => {
    allow();
    // The scratch holds the state of this SYN, but the stage is run on its own: skb->cb[0] is not
    // the nonce the entry program wrote.
    assert.equal(egress(frame4(A.v4, C.v4, 40040, 80, 'S')).retval, TC_ACT_OK);
    h.dp.ct.flush();
    for (const [name, dir] of [
      [POLICY_PROGRAMS.egress, 'egress'],
      [POLICY_PROGRAMS.ingress, 'ingress'],
    ] as const) {
      const out = send(name, a.ifindex, frame4(A.v4, C.v4, 40040, 80, 'S'));
      assert.equal(out.retval, TC_ACT_SHOT);
      assert.deepEqual(out.metrics, [`${DropReason.MISSED_TAIL_CALL}/${dir}: 1`]);
      assert.deepEqual(kinds(out), [`drop ${DropReason.MISSED_TAIL_CALL}`]);
    }
    assert.equal(h.dp.ct.get(egressTuple(40040)), undefined, 'nothing tracked');
  });
  /** weir_to_local run on its own, with skb->cb as an entry program would leave it. */
  const toLocal = (frame: Buffer, cb: number[]): Outcome & { data: Buffer } => {
    h.dp.metrics.clear();
    const r = withNetns(h.netns, () =>
      h.dp.program(LOCAL_PROGRAM).testRun({ data: frame, ctxIn: skbContext({ ifindex: a.ifindex, cb }) }),
    );
    reader.drain();
    const metrics = h.dp.metrics
      .list()
      .map((m) => `${m.reason}/${m.direction}: ${m.packets}`)
      .sort();
    return { retval: r.retval, metrics, events: got.splice(0), data: r.data };
  };
  const CB_MAGIC = 0x77656972;
  const CB_MAGIC_FLOW = 0x77656973;

  it('weir_to_local called by an entry program of an earlier weir (MACs in skb->cb) parses the packet itself and delivers it', () => {
    allow();
    const macs = Buffer.from(`${B.mac}:${B.hostMac}`.split(':').map((x) => parseInt(x, 16)));
    const cb = [b.ifindex, macs.readUInt32LE(0), macs.readUInt32LE(4), macs.readUInt32LE(8), CB_MAGIC];
    const out = toLocal(frame4(A.v4, B.v4, 40050, 80, 'S'), cb);
    assert.equal(out.retval, TC_ACT_REDIRECT, "B's ingress stage allowed it, delivered into B");
    assert.equal(macText(out.data.subarray(0, 6)), B.mac);
    assert.equal(macText(out.data.subarray(6, 12)), B.hostMac);
    assert.deepEqual(kinds(out), ['policy-verdict 0', 'trace/open 0']);
    assert.equal(out.events[0]?.endpointId, 2);
    assert.deepEqual(out.metrics, ['0/ingress: 1']);
  });

  it('weir_to_local whose scratch does not vouch for the packet (another load) leaves it to the stack, judging nothing', () => {
    allow();
    const out = toLocal(frame4(A.v4, B.v4, 40060, 80, 'S'), [b.ifindex, 12345, 0, 0, CB_MAGIC_FLOW]);
    assert.equal(out.retval, TC_ACT_OK, "the node's stack routes it; B's weir_to_container judges it");
    assert.deepEqual(out.metrics, []);
    assert.deepEqual(out.events, []);
    assert.equal(h.dp.ct.list().length, 0);
  });
});
