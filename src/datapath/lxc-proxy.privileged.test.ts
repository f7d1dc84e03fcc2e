// L7 redirection in the datapath (bpf/lib/proxy.h), through the real programs with
// BPF_PROG_TEST_RUN: connections whose entry carries a proxy port are recorded for the proxy and
// handed to its (real, transparent) listener, later packets follow, the proxy's own upstream
// connections are told apart, and a missing listener drops (fail closed). Entries without a
// proxy port never look for a socket.
//
// BPF_PROG_TEST_RUN runs tc programs outside the tc ingress path, where bpf_sk_assign refuses to
// work (EOPNOTSUPP): a found socket that cannot be assigned under a test run drops with
// DROP_PROXY_SET_FAILED (179) here, and with DROP_PROXY_LOOKUP_FAILED (178) when there is no
// socket at all — the difference is what these tests can see. That the assignment delivers the
// connection to the proxy is proven by the lab test (test/integration/l7-redirect).
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RingBufferReader, withNetns } from '../bpf/index.js';
import { closeFd, listener } from '../proxy/transparent.js';
import { DropReason } from './drop-reasons.js';
import { decodeFlowEvent, type FlowEvent } from './maps/events/index.js';
import { ethernet, ipv4, ipv6, tcp, udp, type L4 } from './packet/index.js';
import { ProxyMark } from './proxy-marks.js';
import {
  DatapathHarness,
  TC_ACT_OK,
  TC_ACT_REDIRECT,
  TC_ACT_SHOT,
  type TestEndpoint,
} from './test-support.js';

const TCP = 6;
const A = { v4: '10.0.0.1', v6: 'fd00::1', identity: 1001 };
const B = { v4: '10.0.0.2', v6: 'fd00::2', identity: 1002 };
const LISTENING = 15001; // a transparent listener in the test namespace (v4 and v6)
const NOBODY = 15009; // no listener

const v4 = (src: string, dst: string, l4: L4) => ethernet({ payload: ipv4({ src, dst, payload: l4 }) });
const v6 = (src: string, dst: string, l4: L4) => ethernet({ payload: ipv6({ src, dst, payload: l4 }) });
const seg = (sport: number, dport: number, flags: string) => tcp({ sport, dport, flags });
const toProxy = (port: number) => ((port << 16) | ProxyMark.TO_PROXY) >>> 0;

describe('L7 redirection to the node proxy', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;
  let b: TestEndpoint;
  let host: number;
  let reader: RingBufferReader;
  const events: FlowEvent[] = [];
  const fds: number[] = [];

  before(async () => {
    // Device 2 stands in for the node's weir_host (where weir_to_container redirects).
    h = await DatapathHarness.create({ devices: 3, hostSlot: 2 });
    host = h.ifindex(2);
    a = h.addEndpoint(0, 1, A.identity);
    b = h.addEndpoint(1, 2, B.identity);
    for (const [addr, id] of [
      [A.v4, A.identity],
      [B.v4, B.identity],
      [A.v6, A.identity],
      [B.v6, B.identity],
    ] as const)
      h.dp.ipcache.upsert(addr, id);
    withNetns(h.netns, () => {
      fds.push(listener({ family: 4, port: LISTENING }), listener({ family: 6, port: LISTENING }));
    });
    reader = new RingBufferReader(h.dp.events, (r) => events.push(decodeFlowEvent(r)));
    reader.start();
  });
  after(async () => {
    reader?.close();
    for (const fd of fds) closeFd(fd);
    await h?.destroy();
  });
  beforeEach(() => {
    h.dp.policy(a.endpointId).clear();
    h.dp.policy(b.endpointId).clear();
    h.dp.ct.flush();
    reader.drain();
    events.length = 0;
  });

  const allow = (
    ep: TestEndpoint,
    direction: 'ingress' | 'egress',
    identity: number,
    port: number,
    proxyPort = 0,
  ) =>
    h.dp
      .policy(ep.endpointId)
      .upsert({ identity, direction, protocol: TCP, port }, { proxyPort, cookie: 77 });
  const verdicts = () => {
    reader.drain();
    return events.splice(0).filter((e) => e.type === 'policy-verdict');
  };

  it('egress: a new connection on a redirected port is recorded for the proxy and handed to its listener', () => {
    allow(a, 'egress', B.identity, 80, LISTENING);
    const r = h.runRaw('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S')));
    // The listener was found (no socket at all would be 178); only the test run cannot assign it.
    assert.equal(r.reason, DropReason.PROXY_SET_FAILED);
    assert.equal(r.mark, toProxy(LISTENING), 'marked for local delivery, with the listener port');
    const [ct, ...rest] = h.dp.ct.list();
    assert.equal(rest.length, 0);
    assert.deepEqual(
      {
        src: ct?.src,
        dst: ct?.dst,
        direction: ct?.direction,
        proxyPort: ct?.proxyPort,
        fromProxy: ct?.fromProxy,
      },
      { src: A.v4, dst: B.v4, direction: 'egress', proxyPort: LISTENING, fromProxy: undefined },
    );
    const [v] = verdicts();
    assert.deepEqual(
      { reason: v?.reason, toProxy: v?.toProxy, proxyPort: v?.proxyPort, cookie: v?.cookie },
      { reason: 0, toProxy: true, proxyPort: LISTENING, cookie: 77 },
    );
    // Every later packet of the connection goes to the proxy too (no policy lookup).
    h.dp.policy(a.endpointId).clear();
    const ack = h.runRaw('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'A')));
    assert.equal(ack.reason, DropReason.PROXY_SET_FAILED);
    assert.equal(ack.mark, toProxy(LISTENING));
    assert.equal(verdicts().length, 0);
  });

  it('egress, IPv6: the same with the IPv6 listener', () => {
    h.dp
      .policy(a.endpointId)
      .upsert(
        { identity: B.identity, direction: 'egress', protocol: TCP, port: 80 },
        { proxyPort: LISTENING },
      );
    const r = h.runRaw('egress', a.ifindex, v6(A.v6, B.v6, seg(40001, 80, 'S')));
    assert.equal(r.reason, DropReason.PROXY_SET_FAILED);
    assert.equal(r.mark, toProxy(LISTENING));
    assert.equal(h.dp.ct.list()[0]?.proxyPort, LISTENING);
  });

  it('no listener on the proxy port: the connection drops (178), nothing is recorded', () => {
    allow(a, 'egress', B.identity, 80, NOBODY);
    const r = h.runRaw('egress', a.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S')));
    assert.equal(r.retval, TC_ACT_SHOT);
    assert.equal(r.reason, DropReason.PROXY_LOOKUP_FAILED);
    assert.equal(h.dp.ct.list().length, 0);
    allow(b, 'ingress', A.identity, 80, NOBODY);
    const i = h.runRaw('ingress', b.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S')));
    assert.equal(i.reason, DropReason.PROXY_LOOKUP_FAILED);
    assert.equal(i.retval, TC_ACT_SHOT);
    reader.drain();
    const drops = events.splice(0).filter((e) => e.type === 'drop');
    assert.deepEqual(
      drops.map((d) => [d.direction, d.reason]),
      [
        ['egress', DropReason.PROXY_LOOKUP_FAILED],
        ['ingress', DropReason.PROXY_LOOKUP_FAILED],
      ],
    );
  });

  it('ingress: marked with the listener port and redirected into the host device (no assignment at tc egress)', () => {
    allow(b, 'ingress', A.identity, 80, LISTENING);
    const r = h.runRaw('ingress', b.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'S')));
    assert.equal(r.retval, TC_ACT_REDIRECT);
    assert.equal(r.reason, 0);
    assert.equal(r.mark, toProxy(LISTENING));
    assert.equal(h.dp.ct.list()[0]?.proxyPort, LISTENING);
    const later = h.runRaw('ingress', b.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'A')));
    assert.equal(later.retval, TC_ACT_REDIRECT);
    assert.equal(later.mark, toProxy(LISTENING));
    // The proxy answers the client itself: this entry sees the client's side only, and its ACK
    // makes it established (the long timeout), its FIN closing.
    assert.equal(h.dp.ct.list()[0]?.state, 'established');
    h.runRaw('ingress', b.ifindex, v4(A.v4, B.v4, seg(40000, 80, 'FA')));
    assert.equal(h.dp.ct.list()[0]?.state, 'closing');
    // weir_to_proxy on the host device: the listener is found (assignment refused in a test run).
    const host1 = h.runRaw('to-proxy', host, v4(A.v4, B.v4, seg(40000, 80, 'S')), r.mark);
    assert.equal(host1.reason, DropReason.PROXY_SET_FAILED);
    const none = h.runRaw('to-proxy', host, v4(A.v4, B.v4, seg(40000, 80, 'S')), toProxy(NOBODY));
    assert.equal(none.reason, DropReason.PROXY_LOOKUP_FAILED);
    // Anything not marked for the proxy passes untouched.
    const plain = h.runRaw('to-proxy', host, v4(A.v4, B.v4, seg(40000, 80, 'S')));
    assert.deepEqual([plain.retval, plain.reason, plain.mark], [TC_ACT_OK, undefined, 0]);
  });

  it('entries without a proxy port never look for a socket, also on the proxy ports', () => {
    allow(a, 'egress', B.identity, LISTENING);
    allow(b, 'ingress', A.identity, LISTENING);
    for (const [hook, ep] of [
      ['egress', a],
      ['ingress', b],
    ] as const) {
      const r = h.runRaw(hook, ep.ifindex, v4(A.v4, B.v4, seg(40000, LISTENING, 'S')));
      assert.deepEqual([r.retval, r.reason, r.mark], [TC_ACT_OK, 0, 0], hook);
    }
    assert.ok(h.dp.ct.list().every((c) => c.proxyPort === 0));
    // UDP without a proxy port never looks for a socket either.
    h.dp
      .policy(a.endpointId)
      .upsert({ identity: B.identity, direction: 'egress', protocol: 17, port: 53 }, {});
    const plain = h.runRaw('egress', a.ifindex, v4(A.v4, B.v4, udp({ sport: 5354, dport: 53 })));
    assert.deepEqual([plain.retval, plain.mark], [TC_ACT_OK, 0]);
    // UDP with a proxy port (DNS rules) goes to the DNS proxy's UDP socket on that port: there is
    // only a TCP listener here, so the datagram drops (fail closed), never bypasses.
    h.dp
      .policy(a.endpointId)
      .upsert(
        { identity: B.identity, direction: 'egress', protocol: 17, port: 53 },
        { proxyPort: LISTENING },
      );
    const u = h.runRaw('egress', a.ifindex, v4(A.v4, B.v4, udp({ sport: 5353, dport: 53 })));
    assert.deepEqual([u.retval, u.reason], [TC_ACT_SHOT, DropReason.PROXY_LOOKUP_FAILED]);
  });

  it("the proxy's own upstream: judged, not redirected again by the ingress proxy; its replies go back to it", () => {
    allow(b, 'ingress', A.identity, 80, LISTENING);
    // The ingress proxy opens the upstream connection from the client's address.
    const up = h.runRaw('ingress', b.ifindex, v4(A.v4, B.v4, seg(50000, 80, 'S')), ProxyMark.PROXY_INGRESS);
    assert.deepEqual([up.retval, up.reason], [TC_ACT_OK, 0]);
    const [ct] = h.dp.ct.list();
    assert.deepEqual([ct?.fromProxy, ct?.proxyPort, ct?.direction], [true, 0, 'ingress']);
    const [v] = verdicts();
    assert.deepEqual([v?.fromProxy, v?.toProxy, v?.reason], [true, undefined, 0]);
    // The pod answers: the reply belongs to the proxy's upstream socket (none here: dropped,
    // never delivered to the client pod, which does not know this connection).
    const reply = h.runRaw('egress', b.ifindex, v4(B.v4, A.v4, seg(80, 50000, 'SA')));
    assert.equal(reply.reason, DropReason.PROXY_LOOKUP_FAILED);
    // A pod connection with the very same tuple is a different connection: judged anew.
    h.dp.policy(b.endpointId).clear();
    const pod = h.runRaw('ingress', b.ifindex, v4(A.v4, B.v4, seg(50000, 80, 'S')));
    assert.equal(pod.reason, DropReason.POLICY);
    // The egress proxy's upstream to a pod with ingress HTTP rules goes to the ingress listener.
    allow(b, 'ingress', A.identity, 80, LISTENING);
    const eg = h.runRaw('ingress', b.ifindex, v4(A.v4, B.v4, seg(50001, 80, 'S')), ProxyMark.PROXY_EGRESS);
    assert.deepEqual([eg.retval, eg.mark], [TC_ACT_REDIRECT, toProxy(LISTENING)]);
    const twice = h.dp.ct.list().find((c) => c.sport === 50001);
    assert.deepEqual([twice?.fromProxy, twice?.proxyPort], [true, LISTENING]);
  });

  it("a client connection and the proxy's upstream with the same tuple stay apart; the pod's answer goes to the upstream", () => {
    allow(b, 'ingress', A.identity, 80, LISTENING);
    // The client's connection, redirected at the server's ingress ...
    const client = h.runRaw('ingress', b.ifindex, v4(A.v4, B.v4, seg(50002, 80, 'S')));
    assert.equal(client.retval, TC_ACT_REDIRECT);
    // ... and an upstream of the ingress proxy that happens to have the very same tuple.
    const up = h.runRaw('ingress', b.ifindex, v4(A.v4, B.v4, seg(50002, 80, 'S')), ProxyMark.PROXY_INGRESS);
    assert.deepEqual([up.retval, up.reason], [TC_ACT_OK, 0]);
    assert.deepEqual(
      h.dp.ct
        .list()
        .map((c) => [c.fromProxy === true, c.proxyPort])
        .sort(),
      [
        [false, LISTENING],
        [true, 0],
      ],
    );
    // The server pod answers: it only ever saw the upstream, so the answer is the upstream's
    // (to the proxy's socket: none here, dropped), never delivered to the client pod.
    const answer = h.runRaw('egress', b.ifindex, v4(B.v4, A.v4, seg(80, 50002, 'SA')));
    assert.equal(answer.reason, DropReason.PROXY_LOOKUP_FAILED);
  });

  it('weir_from_netdev: a TCP packet to a pod without a proxy socket passes untouched', () => {
    const r = h.runRaw('netdev', host, v4('192.0.2.7', A.v4, seg(80, 50000, 'SA')));
    assert.deepEqual([r.retval, r.mark], [TC_ACT_OK, 0]);
  });
});
