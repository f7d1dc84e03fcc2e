// East-west service translation at tc (bpf/lib/lb_nat.h) through BPF_PROG_TEST_RUN: what no
// socket hook translated is DNATed by weir_from_container (valid checksums, IPv4 and IPv6 with
// extension headers), keeps its backend for the connection, is judged by policy as the
// pod -> backend flow, and its replies get the frontend back as their source in
// weir_to_container; a frontend without ACTIVE backends is refused at once (TCP: RST, UDP: ICMP
// port unreachable).
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { withNetns } from '../bpf/index.js';
import { DropReason } from './drop-reasons.js';
import { PROGRAMS } from './loader.js';
import {
  ethernet,
  ipText,
  ipv4,
  ipv6,
  parseFrame,
  tcp,
  udp,
  type L4,
  type ParsedFrame,
} from './packet/index.js';
import { DatapathHarness, TC_ACT_OK, TC_ACT_SHOT, type TestEndpoint } from './test-support.js';

const TC_ACT_REDIRECT = 7;
const TCP = 6;
const UDP = 17;

const CLIENT = { v4: '10.0.0.1', v6: 'fd00::1', identity: 1001 };
const B1 = { v4: '10.0.0.2', v6: 'fd00::2', identity: 1002 };
const B2 = { v4: '10.0.0.3', v6: 'fd00::3', identity: 1003 };
const VIP = { v4: '10.96.0.10', v6: 'fd00:10:96::10' };
const EMPTY = { v4: '10.96.0.11', v6: 'fd00:10:96::11' };

const v4 = (src: string, dst: string, l4: L4) => ethernet({ payload: ipv4({ src, dst, payload: l4 }) });
/** IPv6 with a hop-by-hop and a destination options header: the L4 header is not at a fixed offset. */
const v6 = (src: string, dst: string, l4: L4) =>
  ethernet({ payload: ipv6({ src, dst, payload: l4, ext: [{ type: 'hop' }, { type: 'dest' }] }) });

interface Seen {
  retval: number;
  out: ParsedFrame;
  counted: Map<number, bigint>;
}

describe('service translation at tc (no socket hook)', () => {
  let h: DatapathHarness;
  let client: TestEndpoint;

  const runProg = (hook: 'egress' | 'ingress', data: Buffer): Seen & { data: Buffer } => {
    const prog = h.dp.program(hook === 'egress' ? PROGRAMS.fromContainer : PROGRAMS.toContainer);
    h.dp.metrics.clear();
    const res = withNetns(h.netns, () => prog.testRun({ data, ifindex: client.ifindex }));
    return {
      retval: res.retval,
      data: res.data,
      out: parseFrame(res.data),
      counted: new Map(h.dp.metrics.list().map((m) => [m.reason, m.packets])),
    };
  };
  const fromClient = (data: Buffer) => runProg('egress', data);
  const toClient = (data: Buffer) => runProg('ingress', data);
  const checksumsOk = (s: Seen) => {
    if (s.out.ip?.family === 4) assert.equal(s.out.ip?.checksumOk, true, 'IP checksum');
    assert.equal(s.out.l4?.checksumOk, true, 'L4 checksum (with the pseudo-header)');
  };
  const allowAll = () => {
    for (const protocol of [TCP, UDP])
      for (const direction of ['egress', 'ingress'] as const)
        h.dp.policy(client.endpointId).upsert({ identity: 0, direction, protocol }, {});
  };

  before(async () => {
    h = await DatapathHarness.create({ devices: 1 });
    client = h.addEndpoint(0, 1, CLIENT.identity);
    for (const ep of [CLIENT, B1, B2]) {
      h.dp.ipcache.upsert(ep.v4, ep.identity);
      h.dp.ipcache.upsert(ep.v6, ep.identity);
    }
    let id = 1;
    let rev = 1;
    for (const fam of ['v4', 'v6'] as const)
      for (const proto of ['tcp', 'udp'] as const) {
        const ids = [id++, id++];
        h.dp.lb.upsertBackend(ids[0] as number, { address: B1[fam], port: 8080, proto });
        h.dp.lb.upsertBackend(ids[1] as number, { address: B2[fam], port: 8080, proto });
        h.dp.lb.upsertService({ address: VIP[fam], port: 80, proto }, { revNatIndex: rev++ }, ids);
        h.dp.lb.upsertService({ address: EMPTY[fam], port: 80, proto }, { revNatIndex: rev++ }, []);
      }
  });
  after(async () => h?.destroy());
  beforeEach(() => {
    h.dp.policy(client.endpointId).clear();
    h.dp.ct.flush();
    allowAll();
  });

  for (const fam of ['v4', 'v6'] as const) {
    const frame = fam === 'v4' ? v4 : v6;
    for (const proto of ['tcp', 'udp'] as const) {
      const l4 = (sport: number, dport: number, flags: string, payload: string) =>
        proto === 'tcp'
          ? tcp({ sport, dport, flags, payload: Buffer.from(payload) })
          : udp({ sport, dport, payload: Buffer.from(payload) });

      it(`${fam} ${proto}: pod -> ClusterIP becomes pod -> backend, the reply comes from the ClusterIP`, () => {
        const first = fromClient(frame(CLIENT[fam], VIP[fam], l4(40000, 80, 'S', 'hello')));
        assert.equal(first.retval, TC_ACT_OK);
        const backend = first.out.ip?.dst;
        assert.ok(backend === B1[fam] || backend === B2[fam], String(backend));
        assert.deepEqual(
          [first.out.ip?.src, first.out.l4?.sport, first.out.l4?.dport],
          [CLIENT[fam], 40000, 8080],
        );
        assert.equal(first.out.l4?.payload.toString(), 'hello');
        checksumsOk(first);

        // Conntrack holds the translated flow, marked with the frontend's rev-NAT index.
        const entry = h.dp.ct.list().find((c) => c.dst === backend && c.sport === 40000);
        assert.equal(entry?.direction, 'egress');
        assert.ok((entry?.revNatIndex ?? 0) > 0);

        // Every packet of the connection goes to the same backend.
        for (let i = 0; i < 8; i++) {
          const next = fromClient(frame(CLIENT[fam], VIP[fam], l4(40000, 80, 'A', `more ${i}`)));
          assert.deepEqual([next.retval, next.out.ip?.dst], [TC_ACT_OK, backend]);
          checksumsOk(next);
        }

        const reply = toClient(frame(backend as string, CLIENT[fam], l4(8080, 40000, 'SA', 'world')));
        assert.equal(reply.retval, TC_ACT_OK);
        assert.deepEqual(
          [reply.out.ip?.src, reply.out.l4?.sport, reply.out.ip?.dst, reply.out.l4?.dport],
          [VIP[fam], 80, CLIENT[fam], 40000],
        );
        assert.equal(reply.out.l4?.payload.toString(), 'world');
        checksumsOk(reply);
      });

      it(`${fam} ${proto}: a frontend without backends is refused at once (${proto === 'tcp' ? 'RST' : 'ICMP'})`, () => {
        const s = fromClient(
          frame(
            CLIENT[fam],
            EMPTY[fam],
            proto === 'tcp'
              ? tcp({ sport: 40001, dport: 80, flags: 'S', seq: 7000, payload: Buffer.from('anyone?') })
              : udp({ sport: 40001, dport: 80, payload: Buffer.from('anyone?') }),
          ),
        );
        assert.equal(s.retval, TC_ACT_REDIRECT, 'sent back to the pod');
        assert.equal(s.counted.get(DropReason.NO_SERVICE), 1n);
        assert.deepEqual([s.out.ip?.src, s.out.ip?.dst], [EMPTY[fam], CLIENT[fam]]);
        checksumsOk(s);
        assert.equal(h.dp.ct.list().length, 0, 'nothing tracked');
        if (proto === 'tcp') {
          assert.deepEqual([s.out.l4?.sport, s.out.l4?.dport], [80, 40001]);
          assert.equal(s.out.l4?.tcpFlags, 0x14, 'RST|ACK');
          assert.equal(s.out.l4?.ack, 7000 + 1 + 7, 'acknowledges the SYN and its bytes');
          assert.equal(s.out.l4?.payload.length, 0);
          return;
        }
        if (fam === 'v4') {
          assert.equal(s.out.ip?.proto, 1);
          assert.deepEqual([s.out.l4?.icmpType, s.out.l4?.icmpCode], [3, 3]);
        } else {
          assert.equal(s.out.ip?.proto, 58);
          assert.deepEqual([s.out.l4?.icmpType, s.out.l4?.icmpCode], [1, 4]);
        }
        // The quoted packet is the pod's own: its stack matches the error to the socket.
        const quote = s.out.l4?.payload as Buffer;
        const [at, len] = fam === 'v4' ? [12, 4] : [8, 16];
        assert.equal(quote.length, fam === 'v4' ? 28 : 48);
        assert.deepEqual(
          [ipText(quote.subarray(at, at + len)), ipText(quote.subarray(at + len, at + 2 * len))],
          [CLIENT[fam], EMPTY[fam]],
        );
      });
    }

    it(`${fam}: policy judges the translated flow (backend identity, target port)`, () => {
      const pm = h.dp.policy(client.endpointId);
      pm.clear();
      pm.upsert({ identity: B1.identity, direction: 'egress', protocol: TCP, port: 8080 }, { cookie: 9 });
      const seen = new Map<string, number>();
      for (let i = 0; i < 24; i++) {
        const s = fromClient(frame(CLIENT[fam], VIP[fam], tcp({ sport: 41000 + i, dport: 80, flags: 'S' })));
        const key = `${s.retval === TC_ACT_SHOT ? 'drop' : 'pass'}:${s.out.ip?.dst}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
      // Random picks over two backends: 24 connections all on one backend is 2^-23.
      assert.deepEqual([...seen.keys()].sort(), [`drop:${B2[fam]}`, `pass:${B1[fam]}`]);
      const dropped = seen.get(`drop:${B2[fam]}`) ?? 0;
      assert.equal(h.dp.ct.list().length, 24 - dropped, 'only allowed connections are tracked');
    });
  }

  it('a terminating backend keeps its connection, a fresh SYN of the same tuple goes elsewhere', () => {
    const first = fromClient(v4(CLIENT.v4, VIP.v4, tcp({ sport: 42000, dport: 80, flags: 'S' })));
    const backend = first.out.ip?.dst as string;
    const [keep, other] = backend === B1.v4 ? [1, 2] : [2, 1];
    // The backend starts terminating: no longer ACTIVE, it moves behind the active slots.
    h.dp.lb.upsertBackend(keep, { address: backend, port: 8080, proto: 'tcp', state: 'terminating' });
    h.dp.lb.upsertService({ address: VIP.v4, port: 80, proto: 'tcp' }, { revNatIndex: 1, active: 1 }, [
      other,
      keep,
    ]);
    try {
      const data = fromClient(v4(CLIENT.v4, VIP.v4, tcp({ sport: 42000, dport: 80, flags: 'A' })));
      assert.equal(data.out.ip?.dst, backend, 'the established connection stays');
      h.dp.ct.flush(); // the connection closed; the same tuple opens a new one
      const again = fromClient(v4(CLIENT.v4, VIP.v4, tcp({ sport: 42000, dport: 80, flags: 'S' })));
      assert.notEqual(again.out.ip?.dst, backend, 'no new connection to a terminating backend');
      for (let i = 0; i < 8; i++) {
        const s = fromClient(v4(CLIENT.v4, VIP.v4, tcp({ sport: 42100 + i, dport: 80, flags: 'S' })));
        assert.notEqual(s.out.ip?.dst, backend);
      }
    } finally {
      h.dp.lb.upsertBackend(keep, { address: backend, port: 8080, proto: 'tcp' });
      h.dp.lb.upsertService({ address: VIP.v4, port: 80, proto: 'tcp' }, { revNatIndex: 1 }, [1, 2]);
    }
  });

  it('a retransmitted SYN reaches the backend the first one did', () => {
    const syn = () => fromClient(v4(CLIENT.v4, VIP.v4, tcp({ sport: 42500, dport: 80, flags: 'S', seq: 1 })));
    const first = syn().out.ip?.dst;
    for (let i = 0; i < 10; i++) assert.equal(syn().out.ip?.dst, first);
  });

  it('a SYN never follows a remembered backend id that left the service', () => {
    const first = fromClient(v4(CLIENT.v4, VIP.v4, tcp({ sport: 42600, dport: 80, flags: 'S' })));
    const backend = first.out.ip?.dst as string;
    const [gone, stays] = backend === B1.v4 ? [1, 2] : [2, 1];
    // The backend leaves the service; its id now names another address, outside the service.
    h.dp.lb.upsertService({ address: VIP.v4, port: 80, proto: 'tcp' }, { revNatIndex: 1 }, [stays]);
    h.dp.lb.upsertBackend(gone, { address: '10.0.9.9', port: 8080, proto: 'tcp' });
    try {
      h.dp.ct.flush(); // the tuple opens a new connection
      const again = fromClient(v4(CLIENT.v4, VIP.v4, tcp({ sport: 42600, dport: 80, flags: 'S' })));
      assert.equal(again.out.ip?.dst, stays === 1 ? B1.v4 : B2.v4);
    } finally {
      h.dp.lb.upsertBackend(gone, { address: backend, port: 8080, proto: 'tcp' });
      h.dp.lb.upsertService({ address: VIP.v4, port: 80, proto: 'tcp' }, { revNatIndex: 1 }, [1, 2]);
    }
  });

  describe('hairpin: a pod whose Service picks the pod itself', () => {
    const SELF_VIP = '10.96.0.12';
    const LOOPBACK = '169.254.42.1';
    before(() => {
      h.dp.lb.upsertBackend(20, { address: CLIENT.v4, port: 8080, proto: 'tcp' });
      h.dp.lb.upsertService({ address: SELF_VIP, port: 80, proto: 'tcp' }, { revNatIndex: 20 }, [20]);
    });

    it('goes back into the pod from 169.254.42.1, and the answer comes back from the ClusterIP', () => {
      const syn = fromClient(v4(CLIENT.v4, SELF_VIP, tcp({ sport: 44000, dport: 80, flags: 'S' })));
      assert.equal(syn.retval, TC_ACT_REDIRECT, 'straight back into the pod');
      assert.deepEqual(
        [syn.out.ip?.src, syn.out.l4?.sport, syn.out.ip?.dst, syn.out.l4?.dport],
        [LOOPBACK, 44000, CLIENT.v4, 8080],
      );
      assert.deepEqual(
        [syn.out.dst, syn.out.src],
        ['02:00:00:00:00:01', '02:00:00:00:00:02'],
        'MACs swapped',
      );
      checksumsOk(syn);

      const answer = fromClient(v4(CLIENT.v4, LOOPBACK, tcp({ sport: 8080, dport: 44000, flags: 'SA' })));
      assert.equal(answer.retval, TC_ACT_REDIRECT);
      assert.deepEqual(
        [answer.out.ip?.src, answer.out.l4?.sport, answer.out.ip?.dst, answer.out.l4?.dport],
        [SELF_VIP, 80, CLIENT.v4, 44000],
      );
      checksumsOk(answer);

      const more = fromClient(v4(CLIENT.v4, SELF_VIP, tcp({ sport: 44000, dport: 80, flags: 'A' })));
      assert.deepEqual(
        [more.retval, more.out.ip?.src, more.out.ip?.dst],
        [TC_ACT_REDIRECT, LOOPBACK, CLIENT.v4],
      );
      const conn = h.dp.ct.list().find((c) => c.src === LOOPBACK);
      assert.deepEqual(
        [conn?.direction, conn?.dst, conn?.packetsFwd, conn?.packetsRev],
        ['egress', CLIENT.v4, 2n, 1n],
      );
    });

    it("is judged by the pod's ingress policy too (self traffic is policy-evaluated)", () => {
      const pm = h.dp.policy(client.endpointId);
      pm.clear();
      pm.upsert({ identity: 0, direction: 'egress', protocol: TCP }, {});
      const denied = fromClient(v4(CLIENT.v4, SELF_VIP, tcp({ sport: 44001, dport: 80, flags: 'S' })));
      assert.deepEqual([denied.retval, denied.counted.get(DropReason.POLICY)], [TC_ACT_SHOT, 1n]);
      pm.upsert({ identity: CLIENT.identity, direction: 'ingress', protocol: TCP, port: 8080 }, {});
      const allowed = fromClient(v4(CLIENT.v4, SELF_VIP, tcp({ sport: 44002, dport: 80, flags: 'S' })));
      assert.equal(allowed.retval, TC_ACT_REDIRECT);
    });
  });

  it('traffic to anything but a frontend is not touched', () => {
    for (const data of [
      v4(CLIENT.v4, B1.v4, tcp({ sport: 43000, dport: 8080, flags: 'S' })),
      v4(CLIENT.v4, VIP.v4, tcp({ sport: 43001, dport: 81, flags: 'S' })),
      v6(CLIENT.v6, B2.v6, udp({ sport: 43002, dport: 8080 })),
    ]) {
      const s = fromClient(data);
      assert.equal(s.retval, TC_ACT_OK);
      assert.deepEqual(s.data, data);
    }
    // A reply whose connection was not translated keeps its source.
    const reply = toClient(v4(B1.v4, CLIENT.v4, tcp({ sport: 8080, dport: 43000, flags: 'SA' })));
    assert.deepEqual([reply.retval, reply.out.ip?.src, reply.out.l4?.sport], [TC_ACT_OK, B1.v4, 8080]);
  });
});
