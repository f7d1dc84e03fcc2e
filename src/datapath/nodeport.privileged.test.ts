// North-south NodePort in the tc datapath (bpf/lib/nodeport.h) through BPF_PROG_TEST_RUN:
// weir_from_netdev translates a packet from outside to <node IP>:<nodePort> (snat: source to
// the node and a NAT port; dsr: destination only), with valid IP and L4 checksums, keeps a
// connection on its translation, drops without an ACTIVE backend, passes the rest untouched;
// weir_from_container translates the backend's reply back to node IP:nodePort -> client. dsr with
// a backend behind the tunnel: the frontend travels in an IPv4 option (TCP SYN, every UDP
// datagram; checksums valid), a packet with options of its own is dropped, and the backend's node
// records an arriving option so that its backend's reply leaves from that frontend.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { queryTc, withNetns } from '../bpf/index.js';
import { WeirError } from '../shared/errors.js';
import { DropReason } from './drop-reasons.js';
import { Datapath, NETDEV_PROGRAM, PROGRAMS, type LbMode } from './loader.js';
import { ServiceFlags } from './maps/lb/layout.js';
import { ethernet, ipv4, parseFrame, tcp, udp, type L4, type ParsedFrame } from './packet/index.js';
import { DatapathHarness, TC_ACT_OK, TC_ACT_SHOT, type TestEndpoint } from './test-support.js';

const NODE = '192.0.2.10';
const CLIENT = '198.51.100.7';
const BACKEND = { ip: '10.0.0.2', identity: 1002 };
const NODE_PORT = 30080;
const TARGET = 8080;
const TC_ACT_REDIRECT = 7;

const frame = (src: string, dst: string, l4: L4) => ethernet({ payload: ipv4({ src, dst, payload: l4 }) });

interface Seen {
  retval: number;
  out: ParsedFrame;
  /** weir_metrics after the run: reason -> packets. */
  counted: Map<number, bigint>;
}

function setup(lbMode: LbMode) {
  const ctx: { h?: DatapathHarness; backend?: TestEndpoint } = {};
  before(async () => {
    const h = await DatapathHarness.create({ devices: 2, lbMode });
    ctx.h = h;
    ctx.backend = h.addEndpoint(0, 2, BACKEND.identity);
    h.dp.ipcache.upsert(BACKEND.ip, BACKEND.identity);
    // Any peer may reach the backend's port (policy itself is lxc-policy's subject).
    for (const protocol of [6, 17])
      h.dp.policy(2).upsert({ identity: 0, direction: 'ingress', protocol, port: TARGET }, {});
    for (const proto of ['tcp', 'udp'] as const) {
      h.dp.lb.upsertBackend(proto === 'tcp' ? 1 : 2, { address: BACKEND.ip, port: TARGET, proto });
      h.dp.lb.upsertService(
        { address: NODE, port: NODE_PORT, proto },
        { revNatIndex: proto === 'tcp' ? 1 : 2, flags: ServiceFlags.nodePort },
        [proto === 'tcp' ? 1 : 2],
      );
    }
    h.dp.lb.upsertService(
      { address: NODE, port: 30081, proto: 'tcp' },
      { revNatIndex: 3, flags: ServiceFlags.nodePort },
      [],
    );
    // A ClusterIP-like frontend on the node IP, not a NodePort: not weir_from_netdev's business.
    h.dp.lb.upsertService({ address: NODE, port: 30082, proto: 'tcp' }, { revNatIndex: 4 }, [1]);
  });
  after(async () => ctx.h?.destroy());

  const runProg = (name: string, ifindex: number, data: Buffer): Seen => {
    const h = ctx.h as DatapathHarness;
    const prog =
      name === NETDEV_PROGRAM ? h.dp.program(NETDEV_PROGRAM) : h.dp.program(PROGRAMS.fromContainer);
    h.dp.metrics.clear();
    const res = withNetns(h.netns, () => prog.testRun({ data, ifindex }));
    const counted = new Map(h.dp.metrics.list().map((m) => [m.reason, m.packets]));
    return { retval: res.retval, out: parseFrame(res.data), counted };
  };
  return {
    ctx,
    /** A packet arriving from outside at the external device (harness device 1). */
    fromOutside: (data: Buffer) => runProg(NETDEV_PROGRAM, (ctx.h as DatapathHarness).ifindex(1), data),
    /** A packet the backend pod sends (tc ingress of its host veth). */
    fromBackend: (data: Buffer) =>
      runProg(PROGRAMS.fromContainer, (ctx.backend as TestEndpoint).ifindex, data),
    /** The translated packet delivered to the backend (its ingress: conntrack entry, policy). */
    toBackend: (data: Buffer) => {
      const h = ctx.h as DatapathHarness;
      return h.run('ingress', (ctx.backend as TestEndpoint).ifindex, data);
    },
  };
}

const checksumsOk = (s: Seen) => {
  assert.equal(s.out.ip?.checksumOk, true, 'IP checksum');
  assert.equal(s.out.l4?.checksumOk, true, 'L4 checksum (with the pseudo-header)');
};

describe('NodePort at weir_from_netdev, snat mode', () => {
  const t = setup('snat');

  for (const proto of ['tcp', 'udp'] as const) {
    it(`${proto}: client -> node:nodePort becomes node:NAT port -> backend, and the reply goes back`, () => {
      const sport = proto === 'tcp' ? 40000 : 40001;
      const l4 = (s: number, d: number, payload: string) =>
        proto === 'tcp'
          ? tcp({ sport: s, dport: d, flags: 'S', payload: Buffer.from(payload) })
          : udp({ sport: s, dport: d, payload: Buffer.from(payload) });
      const first = t.fromOutside(frame(CLIENT, NODE, l4(sport, NODE_PORT, 'hello')));
      assert.equal(first.retval, TC_ACT_OK);
      assert.equal(first.counted.get(0), 1n, 'counted as forwarded');
      assert.equal(first.out.ip?.src, NODE);
      assert.equal(first.out.ip?.dst, BACKEND.ip);
      assert.equal(first.out.l4?.dport, TARGET);
      const natPort = first.out.l4?.sport ?? 0;
      assert.ok(natPort >= 61000 && natPort <= 65535, `NAT port ${natPort}`);
      assert.equal(first.out.l4?.payload.toString(), 'hello');
      checksumsOk(first);

      const again = t.fromOutside(frame(CLIENT, NODE, l4(sport, NODE_PORT, 'again')));
      assert.deepEqual([again.out.ip?.src, again.out.l4?.sport], [NODE, natPort], 'same translation');

      // Delivered to the backend (its conntrack entry is the translated flow), it answers.
      assert.equal(t.toBackend(frame(NODE, BACKEND.ip, l4(natPort, TARGET, 'hello'))).verdict, 'forward');
      const reply = t.fromBackend(
        frame(
          BACKEND.ip,
          NODE,
          proto === 'tcp'
            ? tcp({ sport: TARGET, dport: natPort, flags: 'SA', payload: Buffer.from('pod') })
            : udp({ sport: TARGET, dport: natPort, payload: Buffer.from('pod') }),
        ),
      );
      assert.equal(reply.retval, TC_ACT_OK);
      assert.equal(reply.counted.get(0), 1n);
      assert.deepEqual(
        [reply.out.ip?.src, reply.out.l4?.sport, reply.out.ip?.dst, reply.out.l4?.dport],
        [NODE, NODE_PORT, CLIENT, sport],
      );
      assert.equal(reply.out.l4?.payload.toString(), 'pod');
      checksumsOk(reply);
    });
  }

  it('another client port gets another NAT port', () => {
    const a = t.fromOutside(frame(CLIENT, NODE, tcp({ sport: 41000, dport: NODE_PORT, flags: 'S' })));
    const b = t.fromOutside(frame(CLIENT, NODE, tcp({ sport: 41001, dport: NODE_PORT, flags: 'S' })));
    assert.notEqual(a.out.l4?.sport, b.out.l4?.sport);
  });

  it('ClientIP affinity: every connection of a client address goes to one backend, remembered per address', () => {
    const h = t.ctx.h as DatapathHarness;
    for (const id of [11, 12, 13])
      h.dp.lb.upsertBackend(id, { address: `10.0.1.${id}`, port: TARGET, proto: 'tcp' });
    h.dp.lb.upsertService(
      { address: NODE, port: 30083, proto: 'tcp' },
      { revNatIndex: 5, flags: ServiceFlags.nodePort | ServiceFlags.affinity, affinityTimeout: 600 },
      [11, 12, 13],
    );
    const dst = (client: string, sport: number) =>
      t.fromOutside(frame(client, NODE, tcp({ sport, dport: 30083, flags: 'S' }))).out.ip?.dst;
    const one = new Set(Array.from({ length: 12 }, (_, i) => dst(CLIENT, 44000 + i)));
    assert.equal(one.size, 1, [...one].join(' '));
    const remembered = h.dp.lb.listAffinity().filter((a) => a.revNatIndex === 5);
    assert.deepEqual(
      remembered.map((a) => [a.clientCookie, a.clientAddr, a.backendId]),
      [[0n, CLIENT, Number([...one][0]?.split('.')[3])]],
    );
    // Clients without affinity to each other spread (random picks; 8 clients all on one: 1/3^7).
    const many = new Set(Array.from({ length: 8 }, (_, i) => dst(`198.51.100.${20 + i}`, 45000)));
    assert.ok(many.size > 1, [...many].join(' '));
  });

  it('no ACTIVE backend: dropped with DROP_NO_SERVICE; TCP is answered with an RST, UDP with ICMP port unreachable', () => {
    const syn = t.fromOutside(
      frame(
        CLIENT,
        NODE,
        tcp({ sport: 42000, dport: 30081, flags: 'S', seq: 5000, payload: Buffer.from('x') }),
      ),
    );
    assert.equal(syn.retval, TC_ACT_REDIRECT, 'sent back out of the device');
    assert.equal(syn.counted.get(DropReason.NO_SERVICE), 1n);
    assert.deepEqual(
      [syn.out.ip?.src, syn.out.l4?.sport, syn.out.ip?.dst, syn.out.l4?.dport],
      [NODE, 30081, CLIENT, 42000],
    );
    assert.equal(syn.out.l4?.tcpFlags, 0x14, 'RST|ACK');
    assert.equal(syn.out.l4?.ack, 5002, 'acknowledges the SYN and its byte');
    assert.equal(syn.out.l4?.payload.length, 0);
    checksumsOk(syn);

    const ack = t.fromOutside(frame(CLIENT, NODE, tcp({ sport: 42000, dport: 30081, flags: 'A', ack: 777 })));
    assert.equal(ack.retval, TC_ACT_REDIRECT);
    assert.deepEqual(
      [ack.out.l4?.tcpFlags, ack.out.l4?.seq],
      [0x04, 777],
      'RST with the seq it acknowledged',
    );
    checksumsOk(ack);

    const rst = t.fromOutside(frame(CLIENT, NODE, tcp({ sport: 42000, dport: 30081, flags: 'R' })));
    assert.equal(rst.retval, TC_ACT_SHOT, 'an RST is never answered');
    assert.equal(rst.counted.get(DropReason.NO_SERVICE), 1n);

    const h = t.ctx.h as DatapathHarness;
    h.dp.lb.upsertService(
      { address: NODE, port: 30081, proto: 'udp' },
      { revNatIndex: 6, flags: ServiceFlags.nodePort },
      [],
    );
    const dgram = t.fromOutside(
      frame(CLIENT, NODE, udp({ sport: 42000, dport: 30081, payload: Buffer.from('a longer datagram') })),
    );
    assert.equal(dgram.retval, TC_ACT_REDIRECT, 'sent back out of the device');
    assert.equal(dgram.counted.get(DropReason.NO_SERVICE), 1n);
    assert.deepEqual([dgram.out.ip?.src, dgram.out.ip?.dst, dgram.out.ip?.proto], [NODE, CLIENT, 1]);
    assert.deepEqual([dgram.out.l4?.icmpType, dgram.out.l4?.icmpCode], [3, 3], 'port unreachable');
    checksumsOk(dgram);
  });

  it('anything that is no NodePort passes untouched and uncounted', () => {
    for (const data of [
      frame(CLIENT, NODE, tcp({ sport: 42001, dport: 30082, flags: 'S' })),
      frame(CLIENT, NODE, tcp({ sport: 42002, dport: 22, flags: 'S' })),
      frame(CLIENT, '192.0.2.11', tcp({ sport: 42003, dport: NODE_PORT, flags: 'S' })),
    ]) {
      const s = t.fromOutside(data);
      assert.equal(s.retval, TC_ACT_OK);
      assert.equal(s.counted.size, 0);
      assert.deepEqual(s.out, parseFrame(data));
    }
  });

  it('a backend reply without a NodePort translation is left alone', () => {
    assert.equal(
      t.toBackend(frame('10.0.0.9', BACKEND.ip, tcp({ sport: 5000, dport: TARGET, flags: 'S' }))).verdict,
      'forward',
    );
    const data = frame(BACKEND.ip, '10.0.0.9', tcp({ sport: TARGET, dport: 5000, flags: 'SA' }));
    const s = t.fromBackend(data);
    assert.equal(s.retval, TC_ACT_OK);
    assert.deepEqual(s.out, parseFrame(data));
  });
});

describe('NodePort at weir_from_netdev, dsr mode', () => {
  const t = setup('dsr');

  it('the backend sees the client; its reply leaves as node:nodePort -> client', () => {
    const first = t.fromOutside(frame(CLIENT, NODE, tcp({ sport: 43000, dport: NODE_PORT, flags: 'S' })));
    assert.equal(first.retval, TC_ACT_OK);
    assert.deepEqual(
      [first.out.ip?.src, first.out.l4?.sport, first.out.ip?.dst, first.out.l4?.dport],
      [CLIENT, 43000, BACKEND.ip, TARGET],
    );
    checksumsOk(first);
    assert.equal(
      t.toBackend(frame(CLIENT, BACKEND.ip, tcp({ sport: 43000, dport: TARGET, flags: 'S' }))).verdict,
      'forward',
    );
    const reply = t.fromBackend(frame(BACKEND.ip, CLIENT, tcp({ sport: TARGET, dport: 43000, flags: 'SA' })));
    assert.deepEqual(
      [reply.out.ip?.src, reply.out.l4?.sport, reply.out.ip?.dst, reply.out.l4?.dport],
      [NODE, NODE_PORT, CLIENT, 43000],
    );
    checksumsOk(reply);
  });

  it('udp: same, with the checksum fixed', () => {
    const first = t.fromOutside(
      frame(CLIENT, NODE, udp({ sport: 43001, dport: NODE_PORT, payload: Buffer.from('q') })),
    );
    assert.deepEqual(
      [first.out.ip?.src, first.out.ip?.dst, first.out.l4?.dport],
      [CLIENT, BACKEND.ip, TARGET],
    );
    checksumsOk(first);
  });
});

describe("NodePort dsr across nodes: the frontend in an IPv4 option (Cilium's DSR opt dispatch)", () => {
  const REMOTE = { ip: '10.244.2.7', node: '198.18.0.12' };
  const FRONTEND = '192.0.2.99'; // another node's address, as the option names it
  const vxlan = 2; // device slot standing in for the VXLAN device
  let h: DatapathHarness;
  let backend: TestEndpoint;

  before(async () => {
    h = await DatapathHarness.create({ devices: 3, lbMode: 'dsr' });
    backend = h.addEndpoint(0, 2, BACKEND.identity);
    h.dp.ipcache.upsert(BACKEND.ip, BACKEND.identity);
    h.dp.ipcache.upsert(`${REMOTE.ip}/32`, 3001, { tunnelEndpoint: REMOTE.node });
    for (const protocol of [6, 17])
      h.dp.policy(2).upsert({ identity: 0, direction: 'ingress', protocol, port: TARGET }, {});
    for (const proto of ['tcp', 'udp'] as const) {
      const id = proto === 'tcp' ? 11 : 12;
      h.dp.lb.upsertBackend(id, { address: REMOTE.ip, port: TARGET, proto });
      h.dp.lb.upsertService(
        { address: NODE, port: NODE_PORT, proto },
        { revNatIndex: id, flags: ServiceFlags.nodePort },
        [id],
      );
    }
    h.dp.attachOverlay({ netns: h.netns, ifindex: h.ifindex(vxlan) });
  });
  after(async () => h?.destroy());

  const fromOutside = (data: Buffer) => {
    const res = withNetns(h.netns, () =>
      h.dp.program(NETDEV_PROGRAM).testRun({ data, ifindex: h.ifindex(1) }),
    );
    return { retval: res.retval, data: res.data, out: parseFrame(res.data) };
  };
  /** The option bytes after the 20-byte IPv4 header of a frame, if its IHL says there are some. */
  const optionOf = (data: Buffer) => (((data[14] ?? 0) & 0x0f) > 5 ? data.subarray(34, 42) : undefined);
  const expected = (port: number, addr: string) =>
    Buffer.from([0x9a, 8, port >> 8, port & 0xff, ...addr.split('.').map(Number)]);

  it('tcp: the SYN goes into the tunnel destination-translated, the frontend in the option; later segments without', () => {
    const syn = fromOutside(frame(CLIENT, NODE, tcp({ sport: 44000, dport: NODE_PORT, flags: 'S' })));
    assert.equal(syn.retval, TC_ACT_REDIRECT, 'into the tunnel device');
    assert.deepEqual([syn.out.ip?.src, syn.out.ip?.dst, syn.out.l4?.dport], [CLIENT, REMOTE.ip, TARGET]);
    assert.deepEqual(optionOf(syn.data), expected(NODE_PORT, NODE));
    assert.equal(syn.out.ip?.headerLength, 28);
    checksumsOk({ retval: syn.retval, out: syn.out, counted: new Map() });
    const ack = fromOutside(
      frame(CLIENT, NODE, tcp({ sport: 44000, dport: NODE_PORT, flags: 'A', payload: Buffer.from('x') })),
    );
    assert.equal(ack.retval, TC_ACT_REDIRECT);
    assert.equal(optionOf(ack.data), undefined, 'only the SYN carries it');
    assert.equal(ack.out.ip?.dst, REMOTE.ip);
    checksumsOk({ retval: ack.retval, out: ack.out, counted: new Map() });
  });

  it('udp: every datagram carries it', () => {
    for (const payload of ['a', 'b']) {
      const d = fromOutside(
        frame(CLIENT, NODE, udp({ sport: 44001, dport: NODE_PORT, payload: Buffer.from(payload) })),
      );
      assert.equal(d.retval, TC_ACT_REDIRECT);
      assert.deepEqual(optionOf(d.data), expected(NODE_PORT, NODE));
      assert.equal(d.out.l4?.payload.toString(), payload);
      checksumsOk({ retval: d.retval, out: d.out, counted: new Map() });
    }
  });

  it('a client packet that already has IP options is dropped, not sent without the frontend', () => {
    const data = ethernet({
      payload: ipv4({
        src: CLIENT,
        dst: NODE,
        options: Buffer.from([0x01, 0x01, 0x01, 0x01]),
        payload: tcp({ sport: 44002, dport: NODE_PORT, flags: 'S' }),
      }),
    });
    assert.equal(fromOutside(data).retval, TC_ACT_SHOT);
  });

  it("the backend's node records the option: the reply leaves from the frontend to the client", () => {
    const opt = expected(NODE_PORT, FRONTEND);
    for (const proto of ['tcp', 'udp'] as const) {
      const sport = proto === 'tcp' ? 45000 : 45001;
      const l4 = (s: number, d: number, flags: string) =>
        proto === 'tcp'
          ? tcp({ sport: s, dport: d, flags, payload: Buffer.from('q') })
          : udp({ sport: s, dport: d, payload: Buffer.from('q') });
      const arriving = ethernet({
        payload: ipv4({ src: CLIENT, dst: BACKEND.ip, options: opt, payload: l4(sport, TARGET, 'S') }),
      });
      // Not this node's NodePort: passes on to the backend (the node's stack), recorded.
      assert.equal(fromOutside(arriving).retval, TC_ACT_OK);
      assert.equal(h.run('ingress', backend.ifindex, arriving).verdict, 'forward');
      const reply = withNetns(h.netns, () =>
        h.dp.program(PROGRAMS.fromContainer).testRun({
          data: frame(BACKEND.ip, CLIENT, l4(TARGET, sport, 'SA')),
          ifindex: backend.ifindex,
        }),
      );
      const out = parseFrame(reply.data);
      assert.deepEqual(
        [out.ip?.src, out.l4?.sport, out.ip?.dst, out.l4?.dport],
        [FRONTEND, NODE_PORT, CLIENT, sport],
        `${proto}: from the frontend the option named`,
      );
      checksumsOk({ retval: reply.retval, out, counted: new Map() });
    }
  });
});

describe('Datapath.attachNetdev / detachNetdev', () => {
  let h: DatapathHarness | undefined;
  before(async () => {
    h = await DatapathHarness.create({ devices: 1 });
  });
  after(async () => h?.destroy());

  it('puts weir_from_netdev at tc ingress of the device and takes it off again', () => {
    const d = h as DatapathHarness;
    const ifindex = d.dp.attachNetdev({ netns: d.netns, ifname: 'weirdp0' });
    assert.equal(ifindex, d.ifindex(0));
    const where = { netns: d.netns, ifindex, direction: 'ingress' as const };
    assert.equal(queryTc(where), d.dp.program(NETDEV_PROGRAM).id);
    assert.equal(queryTc({ ...where, direction: 'egress' }), undefined, 'egress untouched');
    d.dp.attachNetdev({ netns: d.netns, ifindex }); // again: replaced, still one
    assert.equal(queryTc(where), d.dp.program(NETDEV_PROGRAM).id);
    d.dp.detachNetdev({ netns: d.netns, ifindex });
    assert.equal(queryTc(where), undefined);
    d.dp.detachNetdev({ netns: d.netns, ifname: 'weirdp-gone' }); // a vanished device is no error
  });

  it('refuses an unknown lbMode', () => {
    assert.throws(
      () => Datapath.open({ lbMode: 'tunnel' as LbMode }),
      (err: unknown) => err instanceof WeirError && err.code === 'ERR_DATAPATH_CONFIG',
    );
  });
});
