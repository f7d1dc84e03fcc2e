// Tunnel mode (bpf/lib/overlay.h) with BPF_PROG_TEST_RUN: what weir_from_container forwards to an
// address whose ipcache entry names a tunnel endpoint is redirected into the node's VXLAN device
// (weir_tunnel), and only then; weir_from_overlay refuses a packet without a tunnel key;
// weir_to_overlay gives the node's own packets their key from the ipcache, or drops them; the
// identity a tunnel packet brought into the stack (skb->mark) is the peer weir_to_container
// judges. A test run cannot carry a received tunnel key: the VNI itself is checked on the wire by
// test/integration/vxlan.privileged.test.ts.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pinRoot } from '../shared/paths.js';
import { DropReason } from './drop-reasons.js';
import { Datapath } from './loader.js';
import { ethernet, ipv4, ipv6, tcp } from './packet/index.js';
import {
  DatapathHarness,
  TC_ACT_OK,
  TC_ACT_REDIRECT,
  TC_ACT_SHOT,
  type TestEndpoint,
} from './test-support.js';

const TCP = 6;
const A = { v4: '10.244.1.2', v6: 'fd00:10:244:1::2', identity: 1001 };
const REMOTE = {
  cidr: '10.244.2.0/24',
  cidr6: 'fd00:10:244:2::/64',
  pod: '10.244.2.7',
  pod6: 'fd00:10:244:2::7',
};
const NODE2 = '192.168.250.2';
const OFF_CLUSTER = '203.0.113.9';
/** MARK_MAGIC_IDENTITY with identity 1001 (bits 0-15 in the mark's 16-31). */
const markOf = (identity: number) => 0x0f00 | ((identity & 0xffff) << 16) | ((identity >> 16) & 0xff);

const syn4 = (src: string, dst: string, sport = 40000) =>
  ethernet({ payload: ipv4({ src, dst, payload: tcp({ sport, dport: 80, flags: 'S' }) }) });
const syn6 = (src: string, dst: string) =>
  ethernet({ payload: ipv6({ src, dst, payload: tcp({ sport: 40000, dport: 80, flags: 'S' }) }) });

describe('tunnel mode (BPF_PROG_TEST_RUN)', () => {
  let h: DatapathHarness;
  let a: TestEndpoint;
  const vxlan = 2; // device slot standing in for the VXLAN device

  before(async () => {
    h = await DatapathHarness.create({ devices: 3 });
    a = h.addEndpoint(0, 1, A.identity);
    h.dp.ipcache.upsert(A.v4, A.identity);
    h.dp.ipcache.upsert(REMOTE.cidr, 2, { tunnelEndpoint: NODE2 });
    h.dp.ipcache.upsert(REMOTE.cidr6, 2, { tunnelEndpoint: NODE2 });
    h.dp.ipcache.upsert(OFF_CLUSTER, 2);
    h.dp.policy(1).upsert({ identity: 0, direction: 'egress', protocol: 0 }, {});
  });
  after(async () => h?.destroy());
  beforeEach(() => {
    h.dp.ct.flush();
    h.dp.detachOverlay({ netns: h.netns, ifindex: h.ifindex(vxlan) });
  });

  it('keeps the tunnel endpoint in the ipcache entry, and nothing for local prefixes', () => {
    assert.deepEqual(h.dp.ipcache.entry(REMOTE.cidr), {
      prefix: REMOTE.cidr,
      identity: 2,
      tunnelEndpoint: NODE2,
    });
    assert.deepEqual(h.dp.ipcache.entry(A.v4), { prefix: `${A.v4}/32`, identity: A.identity });
    assert.throws(() => h.dp.ipcache.upsert('10.9.0.0/16', 5, { tunnelEndpoint: 'fd00::1' }), {
      code: 'ERR_DATAPATH_ADDRESS',
      message: /tunnel endpoint/,
    });
  });

  it('redirects a forwarded packet for a remote pod into the tunnel device, IPv4 and IPv6', () => {
    const ifindex = h.dp.attachOverlay({ netns: h.netns, ifindex: h.ifindex(vxlan) });
    assert.equal(h.dp.tunnelIfindex(), ifindex);
    for (const frame of [syn4(A.v4, REMOTE.pod), syn6(A.v6, REMOTE.pod6)]) {
      const out = h.runRaw('egress', a.ifindex, frame);
      assert.equal(out.retval, TC_ACT_REDIRECT, 'bpf_redirect to the VXLAN device');
      assert.equal(out.reason, 0, 'counted as forwarded by the sender’s egress');
      assert.deepEqual(out.data, frame, 'the inner packet is untouched (the device encapsulates it)');
    }
  });

  it('leaves everything else to host routing: no tunnel device, or no tunnel endpoint', () => {
    const none = h.runRaw('egress', a.ifindex, syn4(A.v4, REMOTE.pod));
    assert.equal(none.retval, TC_ACT_OK, 'no device configured: the node’s routing');
    h.dp.attachOverlay({ netns: h.netns, ifindex: h.ifindex(vxlan) });
    const off = h.runRaw('egress', a.ifindex, syn4(A.v4, OFF_CLUSTER, 40001));
    assert.equal(off.retval, TC_ACT_OK, 'no tunnel endpoint: not for the tunnel');
  });

  it('still judges egress policy first: a denied packet never reaches the tunnel', () => {
    h.dp.attachOverlay({ netns: h.netns, ifindex: h.ifindex(vxlan) });
    h.dp.policy(1).clear();
    try {
      const out = h.runRaw('egress', a.ifindex, syn4(A.v4, REMOTE.pod, 40002));
      assert.equal(out.retval, TC_ACT_SHOT);
      assert.equal(out.reason, DropReason.POLICY);
    } finally {
      h.dp.policy(1).upsert({ identity: 0, direction: 'egress', protocol: 0 }, {});
    }
  });

  it('weir_from_overlay drops a packet that came without a tunnel key', () => {
    const out = h.runRaw('from-overlay', h.ifindex(vxlan), syn4(REMOTE.pod, A.v4));
    assert.equal(out.retval, TC_ACT_SHOT);
    assert.equal(out.reason, DropReason.NO_TUNNEL_ENDPOINT);
  });

  it("weir_to_overlay keys the node's own packets from the ipcache, drops those without an endpoint", () => {
    const keyed = h.runRaw('to-overlay', h.ifindex(vxlan), syn4('10.244.1.1', REMOTE.pod));
    assert.equal(keyed.retval, TC_ACT_OK);
    assert.equal(keyed.reason, undefined, 'nothing counted');
    const lost = h.runRaw('to-overlay', h.ifindex(vxlan), syn4('10.244.1.1', OFF_CLUSTER));
    assert.equal(lost.retval, TC_ACT_SHOT);
    assert.equal(lost.reason, DropReason.NO_TUNNEL_ENDPOINT);
  });

  it('weir_to_container judges the identity a tunnel packet brought into the stack (legacy routing)', () => {
    const b = h.addEndpoint(1, 2, 1002);
    h.dp.policy(2).upsert({ identity: A.identity, direction: 'ingress', protocol: TCP, port: 80 }, {});
    // The ipcache says world for this address: only the mark can make it A's identity.
    const frame = syn4(REMOTE.pod, '10.244.1.3', 40003);
    assert.equal(h.runRaw('ingress', b.ifindex, frame).reason, DropReason.POLICY, 'no mark: the ipcache');
    h.dp.ct.flush();
    const out = h.runRaw('ingress', b.ifindex, frame, markOf(A.identity));
    assert.equal(out.retval, TC_ACT_OK);
    assert.equal(out.reason, 0, 'admitted as A');
  });

  it('keeps the tunnel device across a restart (weir_tunnel is pinned)', () => {
    const pinDir = join(pinRoot, `dptest-${randomBytes(3).toString('hex')}`);
    const first = Datapath.open({ pinDir });
    let ifindex: number;
    try {
      ifindex = first.attachOverlay({ netns: h.netns, ifindex: h.ifindex(vxlan) });
    } finally {
      first.close();
    }
    const again = Datapath.open({ pinDir });
    try {
      assert.equal(again.tunnelIfindex(), ifindex, 'a restarted agent finds it');
      again.detachOverlay({ netns: h.netns, ifindex: h.ifindex(vxlan) });
    } finally {
      again.destroy();
    }
  });
});
