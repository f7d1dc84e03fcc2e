// Tunnel mode without a lab (bpf/lib/overlay.h): two node namespaces joined by a veth underlay, a
// VXLAN device in external mode in each (src/lab/vxlan.ts), one pod per node, each node's own
// datapath attached through the loader's API and its maps written directly. Real TCP between the
// pods crosses the tunnel; the receiving node judges it with the identity the VNI carried (its
// ipcache knows the sender's address only as "world" behind the tunnel endpoint), under eBPF host
// routing and legacy routing; the node's own packets arrive as the remote node's; a third
// namespace on the underlay, a plain UDP socket on port 8472, receives what the tunnel sends it
// and shows the VNI is the sender's identity. Native routing (no tunnel, underlay routes, the
// identity from the ipcache) works with the same programs. The topology: test/support/two-nodes.ts.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { RingBufferReader, macIn } from '../../src/bpf/index.js';
import { DropReason } from '../../src/datapath/drop-reasons.js';
import { Datapath, type HostRouting } from '../../src/datapath/loader.js';
import { decodeFlowEvent, type FlowEvent } from '../../src/datapath/maps/events/index.js';
import { addTunnelRoute, VXLAN_PORT, vxlanDevice } from '../../src/lab/index.js';
import { run } from '../../src/shared/exec.js';
import { ethernet, ipv4, tcp } from '../../src/datapath/packet/index.js';
import { testLab } from '../support/lab-name.js';
import { ipIn, TwoNodes } from '../support/two-nodes.js';

const TCP = 6;
const PORT = 8080;
const WORLD = 2;
const REMOTE_NODE = 6;
const HOST = 1;
const base = `weir-${testLab('tun')}`;
const sniffNs = `${base}-sniff`;
/** A pod address of a "node" that is only a UDP socket (the sniffer): what the tunnel sends it. */
const SNIFFED = { ip: '10.244.3.2', underlay: '192.168.251.2' };

const serverJs = `require('net').createServer((s) => s.end('weir-ok')).listen(${PORT}, '::')`;
const clientJs = (host: string) =>
  `const s = require('net').connect(${PORT}, '${host}'); let d = '';` +
  `s.setTimeout(1500, () => process.exit(2)); s.on('data', (c) => (d += c));` +
  `s.on('end', () => process.exit(d === 'weir-ok' ? 0 : 3)); s.on('error', () => process.exit(4));`;
// Prints the first datagram on the VXLAN port as hex, then exits.
const sniffJs =
  `const s = require('dgram').createSocket('udp4'); s.on('message', (m) => { console.log(m.toString('hex'));` +
  ` process.exit(0); }); s.bind(${VXLAN_PORT}, () => console.log('ready'));`;

/** Polls `ok` (every 50 ms, at most 3 s): counters of packets sent by another process. */
async function waitFor(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 60 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(ok(), what);
}

describe('tunnel mode: pods of two nodes through VXLAN, the VNI carrying the identity', () => {
  const dps: Datapath[] = [];
  const events: FlowEvent[] = [];
  let reader: RingBufferReader | undefined;
  let server: ChildProcess | undefined;
  let t: TwoNodes | undefined;
  let NODES: TwoNodes['nodes'];
  let PODS: TwoNodes['pods'];

  before(async () => {
    t = await TwoNodes.create(base);
    ({ nodes: NODES, pods: PODS } = t);
    // A third namespace on node 1's underlay: the sniffer.
    await run(['ip', 'netns', 'add', sniffNs]);
    await ipIn(
      NODES[0].ns,
      'link',
      'add',
      'weirsn',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      sniffNs,
    );
    await ipIn(NODES[0].ns, 'addr', 'add', '192.168.251.1/24', 'dev', 'weirsn');
    await ipIn(NODES[0].ns, 'link', 'set', 'weirsn', 'up');
    await ipIn(sniffNs, 'addr', 'add', `${SNIFFED.underlay}/24`, 'dev', 'eth0');
    await ipIn(sniffNs, 'link', 'set', 'eth0', 'up');
    server = spawn('ip', ['netns', 'exec', PODS[1].ns, process.execPath, '-e', serverJs], {
      stdio: 'ignore',
    });
    for (let i = 0; ; i++) {
      const r = await run(
        ['ip', 'netns', 'exec', PODS[1].ns, process.execPath, '-e', clientJs('127.0.0.1')],
        {
          check: false,
          timeoutMs: 5000,
        },
      );
      if (r.code === 0) break;
      if (i === 50) throw new Error('test server in pod B did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    reader?.close();
    for (const dp of dps) dp.close();
    server?.kill('SIGKILL');
    await run(['ip', 'netns', 'del', sniffNs], { check: false });
    await t?.destroy();
  });

  /** Each node's datapath in `mode`, attached through the loader's API; the maps written directly. */
  const attach = (mode: HostRouting) => {
    reader?.close();
    while (dps.length) dps.pop()?.close();
    for (const [i, n] of NODES.entries()) {
      const pod = PODS[i];
      const peer = PODS[1 - i];
      const peerNode = NODES[1 - i];
      assert.ok(pod && peer && peerNode);
      const dp = Datapath.open({ hostRouting: mode });
      dps.push(dp);
      dp.ipcache.upsert(pod.ip, pod.identity);
      dp.ipcache.upsert(pod.ip6, pod.identity);
      // The node's own address, as the agent writes it: what the node sends into the tunnel from
      // it is the node's own traffic (remote-node on the receiver), not a forwarded world source.
      dp.ipcache.upsert(n.gw, HOST);
      // The other node's pods: only "world" behind its tunnel endpoint, so that a verdict for the
      // peer's own identity can only come from the VNI.
      dp.ipcache.upsert(peerNode.podCidr, WORLD, { tunnelEndpoint: peerNode.underlay });
      dp.ipcache.upsert(peerNode.podCidr6, WORLD, { tunnelEndpoint: peerNode.underlay });
      dp.ipcache.upsert(`${SNIFFED.ip}/32`, WORLD, { tunnelEndpoint: SNIFFED.underlay });
      dp.attachEndpoint({
        netns: n.ns,
        ifname: pod.host,
        endpointId: pod.endpointId,
        identity: pod.identity,
        local: { ips: [pod.ip, pod.ip6], mac: macIn(pod.ns, 'eth0'), hostMac: macIn(n.ns, pod.host) },
      });
      // Egress: anything; ingress: set per test.
      dp.policy(pod.endpointId).upsert({ identity: 0, direction: 'egress', protocol: 0 }, {});
      assert.ok(dp.attachOverlay({ netns: n.ns, ifname: vxlanDevice }) > 0);
      assert.equal(dp.tunnelIfindex() > 0, true);
    }
    reader = new RingBufferReader(node2().events, (r) => events.push(decodeFlowEvent(r)));
    reader.start();
  };
  const node2 = () => {
    const dp = dps[1];
    assert.ok(dp);
    return dp;
  };
  /** Node 2's pod B admits only `identity` on TCP 8080; conntrack and events start afresh. */
  const admit = (identity: number) => {
    const dp = node2();
    dp.policy(PODS[1].endpointId).clear();
    dp.policy(PODS[1].endpointId).upsert({ identity, direction: 'ingress', protocol: TCP, port: PORT }, {});
    for (const d of dps) d.ct.flush();
    reader?.drain();
    events.length = 0;
  };
  const connect = async (to = PODS[1].ip) =>
    (
      await run(['ip', 'netns', 'exec', PODS[0].ns, process.execPath, '-e', clientJs(to)], {
        check: false,
        timeoutMs: 5000,
      })
    ).code === 0;

  for (const mode of ['bpf', 'legacy'] as const) {
    it(`--host-routing ${mode}: B's node judges A's connection with the identity from the VNI`, async () => {
      attach(mode);
      admit(PODS[0].identity);
      assert.equal(await connect(), true, 'B admits A by the identity the tunnel carried');
      const ct = node2().ct.list();
      assert.ok(
        ct.some((c) => c.src === PODS[0].ip && c.dst === PODS[1].ip && c.packetsRev >= 1n),
        'B’s node tracked the connection, replies included',
      );
      reader?.drain();
      const verdict = events.find((e) => e.type === 'policy-verdict' && e.reason === 0);
      assert.equal(verdict?.srcIdentity, PODS[0].identity, 'the flow shows the sender’s identity');
      assert.equal(verdict?.dstIdentity, PODS[1].identity);

      admit(1003);
      const drops = node2().metrics.get(DropReason.POLICY, 'ingress').packets;
      assert.equal(await connect(), false, 'a policy admitting another identity drops it');
      assert.ok(node2().metrics.get(DropReason.POLICY, 'ingress').packets > drops);
      reader?.drain();
      const denied = events.find((e) => e.type === 'drop' && e.reason === DropReason.POLICY);
      assert.equal(denied?.srcIdentity, PODS[0].identity);
    });
  }

  it('carries IPv6 pods over the IPv4 underlay the same way', async () => {
    attach('bpf');
    admit(PODS[0].identity);
    assert.equal(await connect(PODS[1].ip6), true, 'B admits A over IPv6 by the VNI');
    assert.ok(
      node2()
        .ct.list()
        .some((c) => c.src === PODS[0].ip6 && c.packetsRev >= 1n),
    );
    admit(1003);
    assert.equal(await connect(PODS[1].ip6), false);
  });

  it('attaches both overlay programs and detaches them again', async () => {
    const dp = node2();
    const ifindex = dp.tunnelIfindex();
    dp.detachOverlay({ netns: NODES[1].ns, ifname: vxlanDevice });
    assert.equal(dp.tunnelIfindex(), 0);
    assert.equal(await connect(), false, 'no tunnel on B’s node: its replies do not go back');
    assert.equal(dp.attachOverlay({ netns: NODES[1].ns, ifname: vxlanDevice }), ifindex);
    admit(PODS[0].identity);
    assert.equal(await connect(), true);
  });

  it("carries the node's own packets to a remote pod as the remote node's (identity 6)", async () => {
    attach('bpf');
    await addTunnelRoute(NODES[0].ns, NODES[1].podCidr, { src: NODES[0].gw });
    const fromNode = async () =>
      (
        await run(['ip', 'netns', 'exec', NODES[0].ns, process.execPath, '-e', clientJs(PODS[1].ip)], {
          check: false,
          timeoutMs: 5000,
        })
      ).code === 0;
    admit(REMOTE_NODE);
    assert.equal(await fromNode(), true, 'B admits the remote node');
    reader?.drain();
    const verdict = events.find((e) => e.type === 'policy-verdict' && e.reason === 0);
    assert.equal(verdict?.srcIdentity, REMOTE_NODE);
    admit(PODS[0].identity);
    assert.equal(await fromNode(), false, "a pod's identity is not the node's");
  });

  it('sends the VNI = the sender’s identity to the endpoint the ipcache names', async () => {
    attach('bpf');
    const sniffer = spawn('ip', ['netns', 'exec', sniffNs, process.execPath, '-e', sniffJs]);
    let out = '';
    sniffer.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const done = new Promise<void>((resolve) => sniffer.on('exit', () => resolve()));
    try {
      for (let i = 0; i < 50 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(out.includes('ready'), 'the sniffer listens');
      await run(['ip', 'netns', 'exec', PODS[0].ns, process.execPath, '-e', clientJs(SNIFFED.ip)], {
        check: false,
        timeoutMs: 5000,
      });
      await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
      const hex = out.split('\n').find((l) => /^[0-9a-f]{40,}$/.test(l));
      assert.ok(hex, `a VXLAN datagram arrived (got: ${out})`);
      const pkt = Buffer.from(hex, 'hex');
      assert.equal(pkt[0], 0x08, 'VXLAN flags: the VNI is valid');
      assert.equal(pkt.readUIntBE(4, 3), PODS[0].identity, 'VNI = the sender’s security identity');
      // The inner frame: Ethernet (14) then A's IPv4 packet to the sniffed address.
      const inner = pkt.subarray(8 + 14);
      assert.equal(inner.subarray(12, 16).join('.'), PODS[0].ip);
      assert.equal(inner.subarray(16, 20).join('.'), SNIFFED.ip);
    } finally {
      sniffer.kill('SIGKILL');
    }
  });

  it('judges what arrives on the wire by its VNI: 0 is an invalid identity, others meet policy', async () => {
    attach('bpf');
    const n1 = dps[0];
    assert.ok(n1);
    // Crafted VXLAN datagrams from the sniffer's namespace to node 1: a SYN from B's address to A.
    const inner = ethernet({
      payload: ipv4({
        src: PODS[1].ip,
        dst: PODS[0].ip,
        payload: tcp({ sport: 40000, dport: PORT, flags: 'S' }),
      }),
    });
    const datagram = (vni: number) => {
      const hdr = Buffer.alloc(8);
      hdr[0] = 0x08;
      hdr.writeUIntBE(vni, 4, 3);
      return Buffer.concat([hdr, inner]).toString('hex');
    };
    const send = (vni: number) =>
      run([
        'ip',
        'netns',
        'exec',
        sniffNs,
        process.execPath,
        '-e',
        `const s = require('dgram').createSocket('udp4'); s.send(Buffer.from('${datagram(vni)}', 'hex'), ` +
          `${VXLAN_PORT}, '192.168.251.1', () => s.close());`,
      ]);
    const count = (reason: number) => n1.metrics.get(reason, 'ingress').packets;
    const invalid = count(DropReason.UNKNOWN_SENDER);
    await send(0);
    await waitFor(() => count(DropReason.UNKNOWN_SENDER) > invalid, 'VNI 0 dropped as an invalid identity');
    // A's ingress admits nobody: a valid VNI reaches its policy, and is denied there.
    const denied = count(DropReason.POLICY);
    await send(PODS[1].identity);
    await waitFor(() => count(DropReason.POLICY) > denied, "a valid VNI is judged by A's ingress policy");
  });

  it('native routing: no tunnel, the underlay routes, the identity from the ipcache', async () => {
    attach('bpf');
    await t?.nativeRoutes();
    for (const [i, n] of NODES.entries()) {
      const dp = dps[i];
      const peer = PODS[1 - i];
      assert.ok(dp && peer);
      dp.detachOverlay({ netns: n.ns, ifname: vxlanDevice });
      dp.ipcache.upsert(peer.ip, peer.identity);
    }
    admit(PODS[0].identity);
    assert.equal(await connect(), true, 'B admits A by its ipcache identity');
    reader?.drain();
    const verdict = events.find((e) => e.type === 'policy-verdict' && e.reason === 0);
    assert.equal(verdict?.srcIdentity, PODS[0].identity);
    admit(1003);
    assert.equal(await connect(), false);
  });
});
