// NodePort in DSR mode across nodes (a lab of two nodes, every agent --lb-mode dsr; tunnel
// routing, then native): a lab external that also sits on the nodes' underlay (a client on their
// LAN) connects to node1's NodePort; the only backend runs on node2. node1 translates the
// destination only and sends the packet on (through the tunnel, or over the underlay) with the
// frontend in an IPv4 option (Cilium's DSR "opt" dispatch); node2 records it, and its backend's
// replies leave node2 from node1 IP:nodePort straight to the client over the underlay: a capture
// at the external sees them arrive from node2's underlay device and none on its link to node1;
// nothing for the client reaches node1 (its tunnel receives nothing; natively, a capture on its
// underlay device sees nothing). The backend sees the client's own address (TCP and UDP).
import assert from 'node:assert/strict';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { capture } from '../support/capture.js';
import { cli, ok } from '../support/cli.js';
import { linkStats, nodeIP, nodePortReady } from '../support/cluster-nodes.js';
import { webNodePort, webOnNode2 } from '../support/cluster-pods.js';
import { startPeerServer } from '../support/peer-server.js';
import { connect } from '../support/service-client.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-cdsr');
const EXT_IP = '192.0.2.60';
const EXT_NS = `weir-${LAB}-ext-client`;

const labSpec = (routing: string) => `
name: ${LAB}
routing: ${routing}
nodes: [{ name: node1 }, { name: node2 }]
externals:
  - { name: client, ip: ${EXT_IP}, underlay: true }
`;

const objects = `${webOnNode2()}
${webNodePort('{ name: tcp, port: 9090, nodePort: 30090 }', '{ name: udp, port: 9091, protocol: UDP, nodePort: 30091 }')}`;

const nodeNs = (node: string) => `weir-${LAB}-${node}`;

const link = linkStats;

for (const routing of ['tunnel', 'native'] as const)
  describe(`NodePort in DSR mode across nodes (${routing} routing)`, () => {
    let dir: string;
    let node1 = '';
    let server: ChildProcessWithoutNullStreams | undefined;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'weir-cdsr-'));
      await writeFile(join(dir, 'lab.yaml'), labSpec(routing));
      await writeFile(join(dir, 'objects.yaml'), objects);
      await cli(['lab', 'down'], LAB);
      await ok(['lab', 'up', '-f', join(dir, 'lab.yaml'), '--lb-mode', 'dsr'], LAB, 240_000);
      await ok(['apply', '-f', join(dir, 'objects.yaml')], LAB, 120_000);
      node1 = await nodeIP(LAB, 'node1');
      await nodePortReady(LAB, node1, 30080);
      server = await startPeerServer(LAB, 'default/web', 30_000);
    });
    after(async () => {
      server?.kill('SIGKILL');
      await cli(['lab', 'down'], LAB);
      await rm(dir, { recursive: true, force: true });
    });

    it("node2 answers the client directly, from node1's NodePort, and its backend sees the client", async () => {
      const ul2 = await link(nodeNs('node2'), 'weir_ul');
      const tunnel1 = routing === 'tunnel' ? await link(nodeNs('node1'), 'weir_vxlan') : undefined;
      // Native routing: whatever came back to node1 would arrive on its underlay device.
      const onNode1 = routing === 'native' ? await capture(nodeNs('node1'), 'weir_ul') : undefined;
      const onUnderlay = await capture(EXT_NS, 'weir_ul');
      const onLink = await capture(EXT_NS, 'eth0');
      const http = await connect(LAB, 'ext:client', 'tcp', node1, 30080, 3, { timeoutMs: 5000 });
      const tcp = await connect(LAB, 'ext:client', 'tcp', node1, 30090, 3, { timeoutMs: 5000 });
      const udp = await connect(LAB, 'ext:client', 'udp', node1, 30091, 3, { timeoutMs: 5000 });
      const seenUnderlay = await onUnderlay.stop();
      const seenLink = await onLink.stop();
      const seenNode1 = (await onNode1?.stop()) ?? [];
      const tunnel1After = routing === 'tunnel' ? await link(nodeNs('node1'), 'weir_vxlan') : undefined;

      // Bytes came back, from the address the client dialled.
      for (const t of http) {
        assert.equal(t.peer, `${node1}:30080`, JSON.stringify(t));
        assert.match(t.body ?? '', /default\/web/, JSON.stringify(t));
      }
      // DSR: the backend's peer is the client itself (TCP and UDP).
      for (const t of [...tcp, ...udp]) {
        assert.ok(t.peer === `${node1}:30090` || t.peer === `${node1}:30091`, JSON.stringify(t));
        assert.equal(t.body?.split(':')[0], EXT_IP, JSON.stringify(t));
      }
      // The replies arrived on the external's underlay device, sent by node2's underlay device...
      const replies = seenUnderlay.filter((p) => p.src === node1 && p.dst === EXT_IP);
      for (const port of [30080, 30090, 30091])
        assert.ok(
          replies.some((p) => p.sport === port),
          `replies from ${node1}:${port} on the underlay: ${JSON.stringify(seenUnderlay.slice(0, 20))}`,
        );
      assert.ok(
        replies.every((p) => p.mac === ul2.mac),
        `sent by node2 (${ul2.mac}): ${JSON.stringify(replies.slice(0, 10))}`,
      );
      // ...and none came back over the external's link to node1.
      const back = seenLink.filter((p) => p.src === node1 && p.dst === EXT_IP);
      assert.deepEqual(back, [], 'nothing from node1 on the link to node1');
      const ul2After = await link(nodeNs('node2'), 'weir_ul');
      assert.ok(ul2After.tx - ul2.tx >= replies.length, 'node2 sent the replies on its underlay device');
      if (tunnel1 && tunnel1After) {
        // node1's tunnel carried the requests out, and nothing back.
        const out = tunnel1After.tx - tunnel1.tx;
        assert.ok(out >= 9, `node1 sent into the tunnel (${out})`);
        assert.equal(tunnel1After.rx - tunnel1.rx, 0, 'nothing came back to node1 through the tunnel');
      } else {
        assert.deepEqual(
          seenNode1.filter((p) => p.dst === EXT_IP),
          [],
          "nothing for the client arrived on node1's underlay device",
        );
      }
    });
  });
