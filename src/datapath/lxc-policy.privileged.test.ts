// weir_from_container / weir_to_container: policy verdicts for new connections, through the
// real programs (BPF_PROG_TEST_RUN) with maps filled as the agent would.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DropReason } from './drop-reasons.js';
import { EndpointFlags } from './maps/endpoints/layout.js';
import { portRangePrefixes } from '../shared/port-prefix.js';
import { ethernet, icmp4Echo, icmp6Echo, ipv4, ipv6, sctp, tcp, udp, type L4 } from './packet/index.js';
import { DatapathHarness, type TestEndpoint } from './test-support.js';

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const ICMPV6 = 58;
const SCTP = 132;
const IDENTITY_WORLD = 2;

const A = { v4: '10.0.0.1', v6: 'fd00::1', identity: 1001 };
const B = { v4: '10.0.0.2', v6: 'fd00::2', identity: 1002 };

const v4 = (src: string, dst: string, l4: L4) => ethernet({ payload: ipv4({ src, dst, payload: l4 }) });
const v6 = (src: string, dst: string, l4: L4) => ethernet({ payload: ipv6({ src, dst, payload: l4 }) });
const syn = (dport: number, sport = 40000) => tcp({ sport, dport, flags: 'S' });

describe('policy verdicts', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;
  let b: TestEndpoint;

  before(async () => {
    h = await DatapathHarness.create();
    a = h.addEndpoint(0, 1, A.identity);
    b = h.addEndpoint(1, 2, B.identity);
    for (const [addr, id] of [
      [A.v4, A.identity],
      [B.v4, B.identity],
      [A.v6, A.identity],
      [B.v6, B.identity],
      ['192.168.0.0/16', 16777217],
      ['fd99::/64', 16777218],
    ] as const)
      h.dp.ipcache.upsert(addr, id);
  });
  after(async () => h?.destroy());
  beforeEach(() => {
    h.dp.policy(a.endpointId).clear();
    h.dp.policy(b.endpointId).clear();
    h.dp.ct.flush();
  });

  const egressA = (frame: Buffer) => h.run('egress', a.ifindex, frame);
  const ingressB = (frame: Buffer) => h.run('ingress', b.ifindex, frame);

  it('default-denies a new connection with no entry (133), both hooks', () => {
    assert.equal(egressA(v4(A.v4, B.v4, syn(80))).reason, DropReason.POLICY);
    assert.equal(ingressB(v4(A.v4, B.v4, syn(80))).reason, DropReason.POLICY);
    assert.equal(h.dp.ct.list().length, 0);
  });

  it('an L3 allow (any protocol) forwards TCP, UDP, SCTP, ICMP to that identity only, unchanged', () => {
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: B.identity, direction: 'egress', protocol: 0 }, { cookie: 7 });
    const frame = v4(A.v4, B.v4, syn(80));
    const res = egressA(frame);
    assert.equal(res.verdict, 'forward');
    assert.deepEqual(res.data, frame);
    assert.equal(egressA(v4(A.v4, B.v4, udp({ sport: 5353, dport: 53 }))).verdict, 'forward');
    assert.equal(egressA(v4(A.v4, B.v4, sctp({ sport: 9, dport: 3868 }))).verdict, 'forward');
    assert.equal(egressA(v4(A.v4, B.v4, icmp4Echo({ id: 9 }))).verdict, 'forward');
    // Another identity, and the other direction, are not covered.
    assert.equal(egressA(v4(A.v4, '10.0.0.3', syn(80))).reason, DropReason.POLICY);
    assert.equal(h.run('ingress', a.ifindex, v4(B.v4, A.v4, syn(80))).reason, DropReason.POLICY);
  });

  it('ingress policy of the receiving endpoint uses the source identity', () => {
    h.dp
      .policy(b.endpointId)
      .upsert({ identity: A.identity, direction: 'ingress', protocol: TCP, port: 80 }, {});
    assert.equal(ingressB(v4(A.v4, B.v4, syn(80))).verdict, 'forward');
    assert.equal(ingressB(v4('10.0.0.3', B.v4, syn(80))).reason, DropReason.POLICY);
    assert.equal(ingressB(v4(A.v4, B.v4, syn(81))).reason, DropReason.POLICY);
  });

  it('exact port, port range, any port and any protocol', () => {
    const pm = h.dp.policy(a.endpointId);
    pm.upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 443 }, {});
    for (const block of portRangePrefixes(8080, 8090)) {
      pm.upsert({ identity: B.identity, direction: 'egress', protocol: TCP, ...block }, {});
    }
    pm.upsert({ identity: B.identity, direction: 'egress', protocol: UDP }, {});
    assert.equal(egressA(v4(A.v4, B.v4, syn(443))).verdict, 'forward');
    assert.equal(egressA(v4(A.v4, B.v4, syn(444))).reason, DropReason.POLICY);
    for (const port of [8080, 8085, 8088, 8090])
      assert.equal(egressA(v4(A.v4, B.v4, syn(port))).verdict, 'forward', `port ${port}`);
    for (const port of [8079, 8091, 8096])
      assert.equal(egressA(v4(A.v4, B.v4, syn(port))).reason, DropReason.POLICY, `port ${port}`);
    assert.equal(egressA(v4(A.v4, B.v4, udp({ sport: 1, dport: 9999 }))).verdict, 'forward');
    assert.equal(egressA(v4(A.v4, B.v4, sctp({ sport: 1, dport: 9999 }))).reason, DropReason.POLICY);
  });

  it('identity ANY entries apply to every peer, world included', () => {
    h.dp.policy(a.endpointId).upsert({ identity: 0, direction: 'egress', protocol: UDP, port: 53 }, {});
    assert.equal(egressA(v4(A.v4, B.v4, udp({ sport: 1, dport: 53 }))).verdict, 'forward');
    assert.equal(egressA(v4(A.v4, '8.8.8.8', udp({ sport: 1, dport: 53 }))).verdict, 'forward');
    assert.equal(egressA(v4(A.v4, '8.8.8.8', udp({ sport: 1, dport: 54 }))).reason, DropReason.POLICY);
  });

  it('peers come from the ipcache by longest prefix; unknown addresses are world (2)', () => {
    const pm = h.dp.policy(a.endpointId);
    pm.upsert({ identity: IDENTITY_WORLD, direction: 'egress', protocol: TCP, port: 443 }, { cookie: 2 });
    pm.upsert({ identity: 16777217, direction: 'egress', protocol: TCP, port: 5432 }, { cookie: 3 });
    assert.equal(egressA(v4(A.v4, '1.1.1.1', syn(443))).verdict, 'forward');
    assert.equal(h.dp.ct.list()[0]?.cookie, 2);
    assert.equal(
      egressA(v4(A.v4, '192.168.7.7', syn(443))).reason,
      DropReason.POLICY,
      'a CIDR identity is not world',
    );
    assert.equal(egressA(v4(A.v4, '192.168.7.7', syn(5432))).verdict, 'forward');
    h.dp.ipcache.upsert('192.168.7.0/24', 16777299);
    assert.equal(
      egressA(v4(A.v4, '192.168.7.7', syn(5432, 40001))).reason,
      DropReason.POLICY,
      'the longer prefix wins',
    );
    h.dp.ipcache.delete('192.168.7.0/24');
  });

  it('deny wins over allow, across the exact-identity and ANY lookups (181)', () => {
    const pm = h.dp.policy(a.endpointId);
    // L2 deny (any identity, TCP 22) beats an L1 allow of everything to B.
    pm.upsert({ identity: B.identity, direction: 'egress', protocol: 0 }, { cookie: 1 });
    pm.upsert({ identity: 0, direction: 'egress', protocol: TCP, port: 22 }, { deny: true, cookie: 2 });
    assert.equal(egressA(v4(A.v4, B.v4, syn(22))).reason, DropReason.POLICY_DENY);
    assert.equal(egressA(v4(A.v4, B.v4, syn(23))).verdict, 'forward');
    // L1 deny (B, any port of UDP) beats an L2 allow of UDP 53 to anyone.
    pm.upsert({ identity: 0, direction: 'egress', protocol: UDP, port: 53 }, {});
    pm.upsert({ identity: B.identity, direction: 'egress', protocol: UDP }, { deny: true });
    assert.equal(egressA(v4(A.v4, B.v4, udp({ sport: 1, dport: 53 }))).reason, DropReason.POLICY_DENY);
    assert.equal(egressA(v4(A.v4, '10.0.0.3', udp({ sport: 1, dport: 53 }))).verdict, 'forward');
    assert.equal(h.dp.ct.list().filter((c) => c.dport === 53 && c.dst === B.v4).length, 0);
  });

  it('the more specific protocol/port gives the cookie; on a tie the exact identity does', () => {
    const pm = h.dp.policy(a.endpointId);
    pm.upsert({ identity: B.identity, direction: 'egress', protocol: TCP }, { cookie: 11 });
    pm.upsert({ identity: 0, direction: 'egress', protocol: TCP, port: 80 }, { cookie: 22 });
    egressA(v4(A.v4, B.v4, syn(80)));
    egressA(v4(A.v4, B.v4, syn(81)));
    const cookieOf = (dport: number) => h.dp.ct.list().find((c) => c.dport === dport)?.cookie;
    assert.equal(cookieOf(80), 22);
    assert.equal(cookieOf(81), 11);
    pm.upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 82 }, { cookie: 33 });
    pm.upsert({ identity: 0, direction: 'egress', protocol: TCP, port: 82 }, { cookie: 44 });
    egressA(v4(A.v4, B.v4, syn(82)));
    assert.equal(cookieOf(82), 33);
  });

  it('ICMP echo is judged by protocol with port 0', () => {
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: B.identity, direction: 'egress', protocol: ICMP, port: 0 }, {});
    h.dp.policy(a.endpointId).upsert({ identity: B.identity, direction: 'egress', protocol: ICMPV6 }, {});
    assert.equal(egressA(v4(A.v4, B.v4, icmp4Echo({ id: 1234 }))).verdict, 'forward');
    assert.equal(egressA(v6(A.v6, B.v6, icmp6Echo({ id: 1234 }))).verdict, 'forward');
    assert.equal(egressA(v4(A.v4, '10.0.0.3', icmp4Echo({ id: 1 }))).reason, DropReason.POLICY);
    assert.equal(egressA(v4(A.v4, B.v4, syn(80))).reason, DropReason.POLICY);
  });

  it('IPv6: identities, ports and deny precedence as for IPv4', () => {
    const pm = h.dp.policy(a.endpointId);
    pm.upsert({ identity: B.identity, direction: 'egress', protocol: TCP, port: 80 }, { cookie: 5 });
    pm.upsert({ identity: 16777218, direction: 'egress', protocol: 0 }, {});
    pm.upsert({ identity: 0, direction: 'egress', protocol: UDP, port: 123 }, { deny: true });
    pm.upsert({ identity: 16777218, direction: 'egress', protocol: UDP }, {});
    const res = egressA(v6(A.v6, B.v6, syn(80)));
    assert.equal(res.verdict, 'forward');
    assert.equal(h.dp.ct.list().find((c) => c.family === 6)?.cookie, 5);
    assert.equal(egressA(v6(A.v6, B.v6, syn(81))).reason, DropReason.POLICY);
    assert.equal(egressA(v6(A.v6, 'fd99::5', syn(9))).verdict, 'forward');
    assert.equal(egressA(v6(A.v6, 'fd99::5', udp({ sport: 1, dport: 123 }))).reason, DropReason.POLICY_DENY);
    assert.equal(egressA(v6(A.v6, '2001:db8::1', syn(80))).reason, DropReason.POLICY, 'unknown v6 is world');
    h.dp
      .policy(b.endpointId)
      .upsert({ identity: A.identity, direction: 'ingress', protocol: TCP, port: 80 }, {});
    assert.equal(ingressB(v6(A.v6, B.v6, syn(80))).verdict, 'forward');
  });

  it('a packet on an unknown device, or of an endpoint without a policy map, is dropped (203)', () => {
    const frame = v4(A.v4, B.v4, syn(80));
    assert.equal(h.run('egress', h.ifindex(2), frame).reason, DropReason.EP_NOT_READY);
    h.dp.endpoints.set(h.ifindex(2), { endpointId: 99, identity: 1003, flags: 0 });
    try {
      assert.equal(h.run('egress', h.ifindex(2), frame).reason, DropReason.EP_NOT_READY);
    } finally {
      h.dp.endpoints.delete(h.ifindex(2));
    }
  });

  it('a fail-closed endpoint drops new connections (240) but keeps established ones', () => {
    h.dp.policy(a.endpointId).upsert({ identity: B.identity, direction: 'egress', protocol: 0 }, {});
    assert.equal(egressA(v4(A.v4, B.v4, syn(80))).verdict, 'forward');
    h.dp.endpoints.set(a.ifindex, {
      endpointId: a.endpointId,
      identity: A.identity,
      flags: EndpointFlags.failClosed,
    });
    try {
      assert.equal(egressA(v4(A.v4, B.v4, tcp({ sport: 40000, dport: 80, flags: 'A' }))).verdict, 'forward');
      assert.equal(egressA(v4(A.v4, B.v4, syn(81))).reason, DropReason.FAIL_CLOSED);
    } finally {
      h.dp.endpoints.set(a.ifindex, { endpointId: a.endpointId, identity: A.identity, flags: 0 });
    }
  });

  it('rejects policy keys the map cannot express', () => {
    const pm = h.dp.policy(a.endpointId);
    assert.throws(() => pm.upsert({ identity: 1, direction: 'egress', protocol: 0, port: 80 }, {}), {
      code: 'ERR_DATAPATH_POLICY_KEY',
    });
    assert.throws(
      () => pm.upsert({ identity: 1, direction: 'egress', protocol: TCP, port: 81, portPrefixLen: 15 }, {}),
      { code: 'ERR_DATAPATH_POLICY_KEY' },
    );
    void SCTP;
  });
});
