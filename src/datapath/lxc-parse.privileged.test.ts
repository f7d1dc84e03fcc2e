// What weir_from_container / weir_to_container make of unusual packets: ARP and neighbour
// discovery pass, other ethertypes and broken headers drop with their reason (never forward),
// IPv6 extension headers are skipped, fragments follow their first fragment's verdict.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { withNetns } from '../bpf/index.js';
import { DropReason } from './drop-reasons.js';
import { PROGRAMS } from './loader.js';
import {
  arp,
  ETH_P,
  ethernet,
  fragment4,
  fragment6,
  icmp4,
  icmp6,
  icmp6Echo,
  ipv4,
  ipv6,
  ndpNeighborAdvert,
  ndpNeighborSolicit,
  rawL4,
  tcp,
  truncate,
  udp,
  type L4,
} from './packet/index.js';
import { DatapathHarness, type TestEndpoint } from './test-support.js';

const TCP = 6;
const UDP = 17;
const A = { v4: '10.0.0.1', v6: 'fd00::1', identity: 1001 };
const B = { v4: '10.0.0.2', v6: 'fd00::2', identity: 1002 };

const v4 = (l4: L4, extra: Partial<Parameters<typeof ipv4>[0]> = {}) =>
  ethernet({ payload: ipv4({ src: A.v4, dst: B.v4, payload: l4, ...extra }) });
const v6 = (l4: L4, extra: Partial<Parameters<typeof ipv6>[0]> = {}) =>
  ethernet({ payload: ipv6({ src: A.v6, dst: B.v6, payload: l4, ...extra }) });

describe('parsing, malformed packets and fragments', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;

  before(async () => {
    h = await DatapathHarness.create({ devices: 1 });
    a = h.addEndpoint(0, 1, A.identity);
    h.dp.ipcache.upsert(B.v4, B.identity);
    h.dp.ipcache.upsert(B.v6, B.identity);
  });
  after(async () => h?.destroy());
  beforeEach(() => {
    h.dp.policy(a.endpointId).clear();
    // Allow TCP 80 and UDP 53 to B; everything else is denied by default.
    for (const [protocol, port] of [
      [TCP, 80],
      [UDP, 53],
    ] as const)
      h.dp.policy(a.endpointId).upsert({ identity: B.identity, direction: 'egress', protocol, port }, {});
    h.dp.ct.flush();
  });

  const egress = (frame: Buffer) => h.run('egress', a.ifindex, frame);
  const both = (frame: Buffer) => [h.run('egress', a.ifindex, frame), h.run('ingress', a.ifindex, frame)];

  it('ARP and IPv6 neighbour discovery pass without policy, unchanged', () => {
    const req = ethernet({
      type: ETH_P.ARP,
      dst: 'ff:ff:ff:ff:ff:ff',
      payload: arp({ senderIp: A.v4, targetIp: B.v4 }),
    });
    for (const r of both(req)) {
      assert.equal(r.verdict, 'forward');
      assert.deepEqual(r.data, req);
    }
    const ns = v6(ndpNeighborSolicit(B.v6), { dst: 'ff02::1:ff00:2', hopLimit: 255 });
    const na = v6(ndpNeighborAdvert(A.v6), { src: B.v6, dst: A.v6, hopLimit: 255 });
    for (const r of [...both(ns), ...both(na)]) assert.equal(r.verdict, 'forward');
    // Link-scoped IPv6 (MLD reports, DAD, link-local peers) stays on the pod's link: no policy.
    const mldReport = v6(icmp6({ type: 143, code: 0 }), { src: 'fe80::1', dst: 'ff02::16', hopLimit: 1 });
    const dad = v6(ndpNeighborSolicit('fe80::1'), { src: '::', dst: 'ff02::1:ff00:1', hopLimit: 255 });
    const linkLocalUdp = v6(udp({ sport: 5000, dport: 9 }), { src: 'fe80::1', dst: 'fe80::2' });
    for (const r of [...both(mldReport), ...both(dad), ...both(linkLocalUdp)])
      assert.equal(r.verdict, 'forward');
    // Other ICMPv6, and anything routed, is policy-checked.
    assert.equal(egress(v6(icmp6Echo({ id: 1 }))).reason, DropReason.POLICY);
    assert.equal(egress(v6(icmp6({ type: 143, code: 0 }), { dst: 'ff05::16' })).reason, DropReason.POLICY);
    assert.equal(h.dp.ct.list().length, 0);
  });

  it('drops other ethertypes (143)', () => {
    const tagged = ethernet({ type: ETH_P.VLAN, payload: Buffer.alloc(46) });
    for (const r of both(tagged)) assert.equal(r.reason, DropReason.UNSUPPORTED_L3);
    assert.equal(
      egress(ethernet({ type: 0x88cc, payload: Buffer.alloc(46) })).reason,
      DropReason.UNSUPPORTED_L3,
    );
  });

  it('broken IPv4 headers are invalid (134)', () => {
    const ok = tcp({ sport: 1, dport: 80 });
    const cases: [string, Buffer][] = [
      ['IHL 4', v4(ok, { ihl: 4 })],
      ['total length beyond the packet', v4(ok, { totalLength: 200 })],
      ['total length below the header', v4(ok, { totalLength: 16 })],
      // (A frame cut inside the first 20 bytes of the IP header cannot be tested here: the
      // kernel's test run refuses it with EINVAL before the program runs.)
      ['options beyond the packet (IHL 15)', truncate(v4(ok, { ihl: 15, totalLength: 40 }), 14 + 40)],
      [
        'IPv6 version nibble in an IPv4 frame',
        ethernet({ type: ETH_P.IP, payload: ipv6({ src: A.v6, dst: B.v6, payload: ok }) }),
      ],
    ];
    for (const [what, frame] of cases) {
      for (const r of both(frame)) assert.equal(r.reason, DropReason.INVALID, what);
    }
  });

  it('truncated or malformed L4 headers are invalid CT headers (135)', () => {
    const cut = (l4: L4, keep: number) => {
      const pkt = ipv4({ src: A.v4, dst: B.v4, payload: l4 });
      const short = Buffer.from(pkt.subarray(0, 20 + keep));
      short.writeUInt16BE(short.length, 2); // consistent IP length: only L4 is short
      return ethernet({
        payload: ipv4({ src: A.v4, dst: B.v4, payload: short.subarray(20), protocol: pkt[9] }),
      });
    };
    const cases: [string, Buffer][] = [
      ['TCP header cut at 12 bytes', cut(tcp({ sport: 1, dport: 80 }), 12)],
      ['TCP doff 3', v4(tcp({ sport: 1, dport: 80, doff: 3 }))],
      ['TCP doff beyond the segment', v4(tcp({ sport: 1, dport: 80, doff: 15 }))],
      ['UDP header cut at 6 bytes', cut(udp({ sport: 1, dport: 53 }), 6)],
      ['UDP length 4', v4(udp({ sport: 1, dport: 53, length: 4 }))],
      ['UDP length beyond the packet', v4(udp({ sport: 1, dport: 53, length: 400 }))],
      ['ICMP header cut at 4 bytes', cut(icmp4({ type: 8 }), 4)],
      [
        'TCP cut in IPv6',
        ethernet({ payload: ipv6({ src: A.v6, dst: B.v6, protocol: TCP, payload: Buffer.alloc(10) }) }),
      ],
    ];
    for (const [what, frame] of cases) {
      for (const r of both(frame)) assert.equal(r.reason, DropReason.CT_INVALID_HDR, what);
    }
    assert.equal(h.dp.ct.list().length, 0);
  });

  it('broken IPv6 headers are invalid (134)', () => {
    const ok = tcp({ sport: 1, dport: 80 });
    const nine = Array.from({ length: 9 }, () => ({ type: 'dest' as const }));
    const cases: [string, Buffer][] = [
      ['payload length beyond the packet', v6(ok, { payloadLength: 500 })],
      ['payload length 0 (jumbogram)', v6(ok, { payloadLength: 0 })],
      ['nine extension headers', v6(ok, { ext: nine })],
      ['extension header beyond the payload', v6(ok, { ext: [{ type: 'hop' }], payloadLength: 4 })],
      ['IPv6 header only, payload length 20', truncate(v6(ok), 14 + 40)],
    ];
    for (const [what, frame] of cases) {
      for (const r of both(frame)) assert.equal(r.reason, DropReason.INVALID, what);
    }
  });

  it('skips IPv6 extension headers to judge the real ports', () => {
    const ext = [
      { type: 'hop' as const },
      { type: 'routing' as const },
      { type: 'dest' as const, options: Buffer.alloc(10) },
    ];
    assert.equal(egress(v6(tcp({ sport: 1, dport: 80 }), { ext })).verdict, 'forward');
    assert.equal(egress(v6(tcp({ sport: 1, dport: 81 }), { ext })).reason, DropReason.POLICY);
    const eight = Array.from({ length: 8 }, () => ({ type: 'dest' as const }));
    assert.equal(egress(v6(udp({ sport: 1, dport: 53 }), { ext: eight })).verdict, 'forward');
  });

  it('IPv4 options and Ethernet padding are fine', () => {
    const withOptions = v4(tcp({ sport: 2, dport: 80 }), { options: Buffer.from([0x94, 0x04, 0, 0]) });
    assert.equal(egress(withOptions).verdict, 'forward');
    const small = v4(udp({ sport: 3, dport: 53 }));
    const padded = Buffer.concat([small, Buffer.alloc(60 - small.length)]);
    assert.equal(egress(padded).verdict, 'forward');
  });

  it('unknown L4 protocols are judged by protocol alone', () => {
    const gre = v4(rawL4(47, Buffer.alloc(8)));
    assert.equal(egress(gre).reason, DropReason.POLICY);
    h.dp.policy(a.endpointId).upsert({ identity: B.identity, direction: 'egress', protocol: 47 }, {});
    assert.equal(egress(gre).verdict, 'forward');
  });

  it('IPv4 fragments: allowed flows pass whole, orphans drop (157), denied flows drop entirely', () => {
    const datagram = (dport: number, id: number) =>
      ipv4({ src: A.v4, dst: B.v4, id, payload: udp({ sport: 7000, dport, payload: Buffer.alloc(200, 1) }) });
    const frames = (pkt: Buffer) => fragment4(pkt, 64).map((f) => ethernet({ payload: f }));
    const allowed = frames(datagram(53, 100));
    assert.equal(allowed.length, 4);
    for (const f of allowed) {
      const r = egress(f);
      assert.equal(r.verdict, 'forward');
      assert.deepEqual(r.data, f);
    }
    assert.equal(h.dp.ct.list().length, 1);
    assert.equal(h.dp.ct.list()[0]?.packetsFwd, 4n);

    const orphans = frames(datagram(53, 101)).slice(1);
    for (const f of orphans) assert.equal(egress(f).reason, DropReason.FRAG_NOSUPPORT);

    // First fragment of a denied flow: policy. Its later fragments borrow its ports: policy too.
    const denied = frames(datagram(54, 102));
    for (const f of denied) assert.equal(egress(f).reason, DropReason.POLICY);
    // A later fragment cannot pick up another flow's verdict by reusing the id of an allowed one
    // with other addresses.
    const spoof = ethernet({
      payload: ipv4({
        src: A.v4,
        dst: '10.0.0.3',
        id: 100,
        fragOffset: 64,
        protocol: UDP,
        payload: Buffer.alloc(64),
      }),
    });
    assert.equal(egress(spoof).reason, DropReason.FRAG_NOSUPPORT);
  });

  it('IPv6 fragments: the Fragment header is followed, later fragments borrow the ports', () => {
    const datagram = (dport: number) =>
      ipv6({ src: A.v6, dst: B.v6, payload: udp({ sport: 7000, dport, payload: Buffer.alloc(200, 1) }) });
    const allowed = fragment6(datagram(53), 64, 500).map((f) => ethernet({ payload: f }));
    for (const f of allowed) assert.equal(egress(f).verdict, 'forward');
    const orphans = fragment6(datagram(53), 64, 501)
      .slice(1)
      .map((f) => ethernet({ payload: f }));
    for (const f of orphans) assert.equal(egress(f).reason, DropReason.FRAG_NOSUPPORT);
    const denied = fragment6(datagram(54), 64, 502).map((f) => ethernet({ payload: f }));
    for (const f of denied) assert.equal(egress(f).reason, DropReason.POLICY);
    // An atomic fragment (offset 0, no M) is a whole packet.
    const atomic = v6(udp({ sport: 1, dport: 53 }), { ext: [{ type: 'fragment', id: 9 }] });
    assert.equal(egress(atomic).verdict, 'forward');
  });

  it('counts each verdict in weir_metrics by reason and direction, with its bytes', () => {
    const ok = v4(tcp({ sport: 9, dport: 80 }));
    assert.equal(h.run('egress', a.ifindex, ok).reason, 0);
    assert.deepEqual(h.dp.metrics.get(0, 'egress'), { packets: 1n, bytes: BigInt(ok.length) });
    const denied = v4(tcp({ sport: 9, dport: 81 }), { src: B.v4, dst: A.v4 });
    assert.equal(h.run('ingress', a.ifindex, denied).reason, DropReason.POLICY);
    assert.deepEqual(h.dp.metrics.get(DropReason.POLICY, 'ingress'), {
      packets: 1n,
      bytes: BigInt(denied.length),
    });
    // Repeated runs accumulate (run() itself clears the map before each packet).
    h.dp.metrics.clear();
    withNetns(h.netns, () =>
      h.dp.program(PROGRAMS.fromContainer).testRun({ data: ok, ifindex: a.ifindex, repeat: 5 }),
    );
    assert.deepEqual(h.dp.metrics.get(0, 'egress'), { packets: 5n, bytes: BigInt(5 * ok.length) });
  });
});
