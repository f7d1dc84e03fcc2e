// Mutual authentication in the pod programs (bpf/lib/auth.h), through BPF_PROG_TEST_RUN: a new
// connection allowed by an entry of an `authentication: {mode: required}` rule (POLICY_F_AUTH)
// passes only while weir_auth holds an unexpired entry for its {source, destination, node} pair;
// otherwise it drops with 189 "Authentication required", counted, its events naming the rule.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RingBufferReader } from '../bpf/index.js';
import { monotonicNowNs } from './clock.js';
import { DropReason, reasonText } from './drop-reasons.js';
import { AUTH_TYPE_MTLS } from './maps/auth/layout.js';
import { decodeFlowEvent, type FlowEvent } from './maps/events/index.js';
import { ethernet, ipv4, tcp } from './packet/index.js';
import { DatapathHarness, type TestEndpoint } from './test-support.js';

const TCP = 6;
const A = { v4: '10.0.0.1', identity: 1001 };
const B = { v4: '10.0.0.2', identity: 1002 };
const C = { v4: '10.0.0.3', identity: 1003 };
const HOUR = 3_600_000;

const syn = (src: string, dst: string, dport: number, sport = 40000) =>
  ethernet({ payload: ipv4({ src, dst, payload: tcp({ sport, dport, flags: 'S' }) }) });

describe('mutual authentication (weir_auth)', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;
  let b: TestEndpoint;
  let reader: RingBufferReader;
  const got: FlowEvent[] = [];

  before(async () => {
    h = await DatapathHarness.create();
    a = h.addEndpoint(0, 1, A.identity);
    b = h.addEndpoint(1, 2, B.identity);
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
    h.dp.policy(b.endpointId).clear();
    h.dp.auth.clear();
    h.dp.ct.flush();
    reader.drain();
    got.length = 0;
  });

  const egressA = (frame: Buffer) => h.run('egress', a.ifindex, frame);
  const ingressB = (frame: Buffer) => h.run('ingress', b.ifindex, frame);
  const AtoB = { srcIdentity: A.identity, dstIdentity: B.identity, remoteNodeId: 0 };

  it('no entry: 189 "Authentication required", counted, no conntrack entry; the events name the rule', () => {
    h.dp
      .policy(a.endpointId)
      .upsert(
        { identity: B.identity, direction: 'egress', protocol: TCP, port: 80 },
        { auth: true, cookie: 77 },
      );
    const res = egressA(syn(A.v4, B.v4, 80));
    assert.equal(res.verdict, 'drop');
    assert.equal(res.reason, DropReason.POLICY_AUTH_REQUIRED);
    assert.equal(res.reason, 189);
    assert.equal(reasonText(189), 'Authentication required');
    assert.equal(h.dp.ct.list().length, 0);
    reader.drain();
    const kinds = got.map((e) => [e.type, e.reason, e.cookie, e.srcIdentity, e.dstIdentity]);
    assert.deepEqual(kinds, [
      ['policy-verdict', 189, 77, A.identity, B.identity],
      ['drop', 189, 77, A.identity, B.identity],
    ]);
  });

  it('an entry for the pair: the connection passes; another pair, node or an expired entry does not', () => {
    const pm = h.dp.policy(a.endpointId);
    pm.upsert(
      { identity: B.identity, direction: 'egress', protocol: TCP, port: 80 },
      { auth: true, cookie: 1 },
    );
    pm.upsert(
      { identity: C.identity, direction: 'egress', protocol: TCP, port: 80 },
      { auth: true, cookie: 2 },
    );
    h.dp.auth.set(AtoB, new Date(Date.now() + HOUR));
    assert.equal(egressA(syn(A.v4, B.v4, 80)).verdict, 'forward');
    assert.equal(h.dp.ct.list().length, 1);
    assert.equal(
      egressA(syn(A.v4, C.v4, 80)).reason,
      DropReason.POLICY_AUTH_REQUIRED,
      'A→C not authenticated',
    );
    // The reverse pair and another node's entry are other keys.
    h.dp.auth.set(
      { srcIdentity: C.identity, dstIdentity: A.identity, remoteNodeId: 0 },
      new Date(Date.now() + HOUR),
    );
    h.dp.auth.set(
      { srcIdentity: A.identity, dstIdentity: C.identity, remoteNodeId: 3 },
      new Date(Date.now() + HOUR),
    );
    assert.equal(egressA(syn(A.v4, C.v4, 80, 40001)).reason, DropReason.POLICY_AUTH_REQUIRED);
    // Expired (the agent has not removed it yet): dropped again for new connections.
    h.dp.ct.flush();
    h.dp.auth.set(AtoB, new Date(Date.now() - 1000));
    assert.equal(egressA(syn(A.v4, B.v4, 80, 40002)).reason, DropReason.POLICY_AUTH_REQUIRED);
    const listed = h.dp.auth.list().find((e) => e.srcIdentity === A.identity && e.dstIdentity === B.identity);
    assert.equal(listed?.valid, false);
    // Renewed: passes.
    h.dp.auth.set(AtoB, new Date(Date.now() + HOUR));
    assert.equal(egressA(syn(A.v4, B.v4, 80, 40003)).verdict, 'forward');
    assert.equal(h.dp.auth.delete(AtoB), true);
    assert.equal(egressA(syn(A.v4, B.v4, 80, 40004)).reason, DropReason.POLICY_AUTH_REQUIRED);
  });

  it('ingress: the key is {source: the peer, destination: the endpoint}', () => {
    h.dp
      .policy(b.endpointId)
      .upsert({ identity: A.identity, direction: 'ingress', protocol: TCP, port: 80 }, { auth: true });
    assert.equal(ingressB(syn(A.v4, B.v4, 80)).reason, DropReason.POLICY_AUTH_REQUIRED);
    h.dp.auth.set(
      { srcIdentity: B.identity, dstIdentity: A.identity, remoteNodeId: 0 },
      new Date(Date.now() + HOUR),
    );
    assert.equal(ingressB(syn(A.v4, B.v4, 80)).reason, DropReason.POLICY_AUTH_REQUIRED, 'reverse pair');
    h.dp.auth.set(AtoB, new Date(Date.now() + HOUR));
    assert.equal(ingressB(syn(A.v4, B.v4, 80)).verdict, 'forward');
  });

  it('entries without the flag, and deny entries, never look at weir_auth', () => {
    const pm = h.dp.policy(a.endpointId);
    pm.upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 80 }, { cookie: 5 });
    assert.equal(egressA(syn(A.v4, B.v4, 80)).verdict, 'forward');
    pm.upsert({ identity: 0, direction: 'egress', protocol: TCP, port: 81 }, { deny: true, auth: true });
    h.dp.auth.set(AtoB, new Date(Date.now() + HOUR));
    assert.equal(egressA(syn(A.v4, B.v4, 81)).reason, DropReason.POLICY_DENY);
  });

  it('an established connection is not judged again when its entry goes away (conntrack)', () => {
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 80 }, { auth: true });
    h.dp.auth.set(AtoB, new Date(Date.now() + HOUR));
    assert.equal(egressA(syn(A.v4, B.v4, 80)).verdict, 'forward');
    h.dp.auth.delete(AtoB);
    const ack = ethernet({
      payload: ipv4({ src: A.v4, dst: B.v4, payload: tcp({ sport: 40000, dport: 80, flags: 'A' }) }),
    });
    assert.equal(egressA(ack).verdict, 'forward');
  });

  it('the map keeps the monotonic expiry the wrapper converts to wall clock', () => {
    const at = new Date(Date.now() + HOUR);
    h.dp.auth.set(AtoB, at);
    const raw = h.dp.auth.typed.lookupBatch();
    assert.equal(raw.length, 1);
    assert.equal(raw[0]?.[0].authType, AUTH_TYPE_MTLS);
    const left = Number((raw[0]![1].expiresNs - monotonicNowNs()) / 1_000_000n);
    assert.ok(Math.abs(left - HOUR) < 5000, `expires in ${left} ms`);
    const listed = h.dp.auth.list()[0];
    assert.ok(listed && Math.abs(listed.expires.getTime() - at.getTime()) < 5000);
  });
});
