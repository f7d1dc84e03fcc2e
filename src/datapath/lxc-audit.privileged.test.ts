// Policy audit mode in the datapath (ENDPOINT_F_AUDIT, bpf/lxc.c), by BPF_PROG_TEST_RUN on the real
// programs: a connection policy denies (no allow entry: 133; a deny entry: 181) is forwarded, with
// one policy verdict flagged EVENT_F_AUDIT carrying the drop code and the denying rule's cookie, a
// conntrack entry and its TRACE_OPEN; its later packets pass as established. Clearing the flag
// enforces at once for new connections; a fail-closed endpoint still drops while auditing.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RingBufferReader } from '../bpf/index.js';
import { DropReason } from './drop-reasons.js';
import { EndpointFlags } from './maps/endpoints/layout.js';
import { decodeFlowEvent, type FlowEvent } from './maps/events/index.js';
import { ethernet, ipv4, tcp, type L4 } from './packet/index.js';
import { DatapathHarness, type RunResult, type TestEndpoint } from './test-support.js';

const TCP = 6;
const A = { v4: '10.0.0.1', identity: 1001 };
const B = { v4: '10.0.0.2', identity: 1002 };

const v4 = (src: string, dst: string, l4: L4) => ethernet({ payload: ipv4({ src, dst, payload: l4 }) });
const seg = (sport: number, dport: number, flags: string) => tcp({ sport, dport, flags });

describe('policy audit mode (ENDPOINT_F_AUDIT)', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;
  let reader: RingBufferReader;
  const got: FlowEvent[] = [];

  before(async () => {
    h = await DatapathHarness.create({ devices: 1 });
    a = h.addEndpoint(0, 1, A.identity);
    h.dp.ipcache.upsert(A.v4, A.identity);
    h.dp.ipcache.upsert(B.v4, B.identity);
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

  const flags = (f: number) =>
    h.dp.endpoints.set(a.ifindex, { endpointId: 1, identity: A.identity, flags: f });
  const run = (hook: 'egress' | 'ingress', frame: Buffer): { res: RunResult; events: FlowEvent[] } => {
    const res = h.run(hook, a.ifindex, frame);
    reader.drain();
    return { res, events: got.splice(0) };
  };
  // Egress of A enforced: only TCP/80 to B is allowed, TCP/22 to B explicitly denied (cookie 99).
  const policy = () => {
    const pm = h.dp.policy(a.endpointId);
    pm.upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 80 }, { cookie: 7 });
    pm.upsert(
      { identity: B.identity, direction: 'egress', protocol: TCP, port: 22 },
      { deny: true, cookie: 99 },
    );
  };

  it('default deny (133) passes, flagged audit, and the connection is tracked', () => {
    policy();
    flags(EndpointFlags.audit);
    const { res, events } = run('egress', v4(A.v4, B.v4, seg(40000, 8080, 'S')));
    assert.equal(res.verdict, 'forward');
    assert.deepEqual(
      events.map((e) => [e.type, e.reason, e.audit === true, e.cookie, e.trace]),
      [
        ['policy-verdict', DropReason.POLICY, true, 0, undefined],
        ['trace', 0, false, 0, 'open'],
      ],
    );
    assert.equal(h.dp.ct.list().length, 1);
    // The next packet of the connection is established: forwarded, no new verdict.
    const next = run('egress', v4(A.v4, B.v4, seg(40000, 8080, 'A')));
    assert.equal(next.res.verdict, 'forward');
    assert.deepEqual(next.events, []);
  });

  it('an explicit deny (181) audits too, naming the deny rule', () => {
    policy();
    flags(EndpointFlags.audit);
    const { res, events } = run('egress', v4(A.v4, B.v4, seg(40001, 22, 'S')));
    assert.equal(res.verdict, 'forward');
    const [verdict] = events;
    assert.deepEqual(
      [verdict?.type, verdict?.reason, verdict?.audit, verdict?.cookie],
      ['policy-verdict', DropReason.POLICY_DENY, true, 99],
    );
  });

  it('an allowed connection is not flagged while auditing', () => {
    policy();
    flags(EndpointFlags.audit);
    const { res, events } = run('egress', v4(A.v4, B.v4, seg(40002, 80, 'S')));
    assert.equal(res.verdict, 'forward');
    assert.deepEqual(
      events.map((e) => [e.type, e.reason, e.audit === true, e.cookie]),
      [
        ['policy-verdict', 0, false, 7],
        ['trace', 0, false, 7],
      ],
    );
  });

  it('without the flag the same packets drop (enforced at once)', () => {
    policy();
    flags(EndpointFlags.audit);
    assert.equal(run('egress', v4(A.v4, B.v4, seg(40003, 8080, 'S'))).res.verdict, 'forward');
    flags(0);
    const denied = run('egress', v4(A.v4, B.v4, seg(40004, 8080, 'S')));
    assert.equal(denied.res.verdict, 'drop');
    assert.equal(denied.res.reason, DropReason.POLICY);
    assert.deepEqual(
      denied.events.map((e) => [e.type, e.audit === true]),
      [
        ['policy-verdict', false],
        ['drop', false],
      ],
    );
    assert.equal(run('egress', v4(A.v4, B.v4, seg(40005, 22, 'S'))).res.reason, DropReason.POLICY_DENY);
  });

  it('a fail-closed endpoint drops even while auditing', () => {
    policy();
    flags(EndpointFlags.audit | EndpointFlags.failClosed);
    const { res, events } = run('egress', v4(A.v4, B.v4, seg(40006, 80, 'S')));
    assert.equal(res.verdict, 'drop');
    assert.equal(res.reason, DropReason.FAIL_CLOSED);
    assert.ok(events.every((e) => e.audit !== true));
  });
});
