// North-south NodePort end to end: a lab external (a netns outside the pod network, linked to the
// node by a veth) connects over real TCP and UDP to <node IP>:<nodePort>; weir_from_netdev on the
// node's side of that veth load-balances to a pod. In snat mode (default) the backend sees the node
// as its peer, in dsr mode (agent --lb-mode dsr) the external; either way the external sees the
// node IP:nodePort answer. Without a backend the packets are dropped and refused: TCP with an RST,
// UDP with ICMP port unreachable.
import assert from 'node:assert/strict';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, stopAgent } from '../../src/agent/spawn.js';
import { Lab } from '../../src/lab/index.js';
import { hostRoutingAgent } from '../support/host-routing.js';
import { cli, ok } from '../support/cli.js';
import { startPeerServer } from '../support/peer-server.js';
import { connect as clientConnect, type Proto, servicePod, type Try } from '../support/service-client.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-nodeport');
const EXT_IP = '192.0.2.50';

const labSpec = `
name: ${LAB}
externals:
  - { name: client, ip: ${EXT_IP} }
`;

const pod = (name: string, labels: string) => servicePod('np', name, labels);

const objects = `
apiVersion: v1
kind: Namespace
metadata: { name: np }
---
${pod('web-a', 'app: web, peer: "yes"')}
${pod('web-b', 'app: web')}
apiVersion: v1
kind: Service
metadata: { name: web, namespace: np }
spec:
  type: NodePort
  selector: { app: web }
  ports:
  - { name: http, port: 80, targetPort: http, nodePort: 30080 }
  - { name: dns, port: 53, protocol: UDP, targetPort: dns, nodePort: 30053 }
---
apiVersion: v1
kind: Service
metadata: { name: peer, namespace: np }
spec:
  type: NodePort
  selector: { peer: "yes" }
  ports:
  - { name: tcp, port: 9090, nodePort: 30090 }
  - { name: udp, port: 9091, protocol: UDP, nodePort: 30091 }
---
apiVersion: v1
kind: Service
metadata: { name: empty, namespace: np }
spec:
  type: NodePort
  selector: { app: nothing }
  ports:
  - { name: http, port: 80, targetPort: 8080, nodePort: 30099 }
  - { name: dns, port: 53, protocol: UDP, targetPort: 5353, nodePort: 30099 }
`;

/** The test's client (test/support/service-client.ts) in the lab's external. */
const connect = (proto: Proto, ip: string, port: number, n: number, timeoutMs = 2000) =>
  clientConnect(LAB, 'ext:client', proto, ip, port, n, { timeoutMs });

/** The pod name the workload's HTTP answer carries. */
const podOf = (t: Try) => /np\/web-[ab]/.exec(t.body ?? '')?.[0] ?? `error:${t.error ?? t.body}`;

describe('NodePort from outside the cluster (tc, weir_from_netdev)', () => {
  let dir: string;
  let server: ChildProcessWithoutNullStreams | undefined;
  let nodeIP: string;
  let nodeNetns: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-nodeport-'));
    await writeFile(join(dir, 'lab.yaml'), labSpec);
    await writeFile(join(dir, 'objects.yaml'), objects);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '-f', join(dir, 'lab.yaml'), '--no-agent'], LAB);
    const node = await (await Lab.open(LAB)).node();
    nodeIP = node.ip;
    nodeNetns = node.netns;
    await startAgent({ ...hostRoutingAgent(), lab: LAB, nodeNetns });
    await ok(['apply', '-f', join(dir, 'objects.yaml')], LAB);
    server = await startPeerServer(LAB, 'np/web-a', 15_000);
  });

  after(async () => {
    server?.kill('SIGKILL');
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('snat: TCP and UDP reach the backends; the answer comes from node IP:nodePort', async () => {
    const http = await connect('tcp', nodeIP, 30080, 12);
    for (const t of http) assert.equal(t.peer, `${nodeIP}:30080`, JSON.stringify(t));
    assert.deepEqual([...new Set(http.map(podOf))].sort(), ['np/web-a', 'np/web-b'], 'both backends answer');
    const dns = await connect('udp', nodeIP, 30053, 4);
    for (const t of dns) {
      assert.equal(t.peer, `${nodeIP}:30053`, JSON.stringify(t));
      assert.equal(t.body, 'hello', 'the pod echoed the datagram');
    }
  });

  it('snat: the backend sees the node IP and a NAT port as its peer', async () => {
    for (const proto of ['tcp', 'udp'] as const) {
      const [t] = await connect(proto, nodeIP, proto === 'tcp' ? 30090 : 30091, 1);
      assert.equal(t?.peer, `${nodeIP}:${proto === 'tcp' ? 30090 : 30091}`, JSON.stringify(t));
      const [addr, port] = (t?.body ?? '').split(':');
      assert.equal(addr, nodeIP, `${proto}: ${t?.body}`);
      assert.ok(Number(port) >= 61000, `${proto}: NAT port ${port}`);
    }
  });

  it('no backend: refused at once, TCP with an RST, UDP with ICMP port unreachable', async () => {
    const noService = async () => {
      const rows = JSON.parse(await ok(['bpf', 'metrics', 'list', '-o', 'json'], LAB)) as {
        name: string;
        packets: number;
      }[];
      return rows.filter((r) => r.name === 'NO_SERVICE').reduce((n, r) => n + r.packets, 0);
    };
    const before = await noService();
    const [t] = await connect('tcp', nodeIP, 30099, 1, 3000);
    assert.equal(t?.error, 'ECONNREFUSED', JSON.stringify(t));
    assert.ok((t?.ms ?? Infinity) < 1000, `refused after ${t?.ms} ms`);
    const [u] = await connect('udpc', nodeIP, 30099, 1, 3000);
    assert.equal(u?.error, 'ECONNREFUSED', JSON.stringify(u));
    assert.ok((u?.ms ?? Infinity) < 1000, `refused after ${u?.ms} ms`);
    assert.equal((await noService()) - before, 2, 'the SYN and the datagram counted as NO_SERVICE drops');
  });

  it('dsr (--lb-mode dsr): the backend sees the external; the answer still comes from node IP:nodePort', async () => {
    await stopAgent(LAB);
    await startAgent({ ...hostRoutingAgent(), lab: LAB, nodeNetns, agentArgs: ['--lb-mode', 'dsr'] });
    for (const proto of ['tcp', 'udp'] as const) {
      const nodePort = proto === 'tcp' ? 30090 : 30091;
      const tries = await connect(proto, nodeIP, nodePort, 3);
      for (const t of tries) {
        assert.equal(t.peer, `${nodeIP}:${nodePort}`, JSON.stringify(t));
        assert.equal(t.body?.split(':')[0], EXT_IP, `${proto}: ${t.body}`);
      }
    }
    const http = await connect('tcp', nodeIP, 30080, 8);
    assert.ok(
      http.every((t) => t.peer === `${nodeIP}:30080` && podOf(t).startsWith('np/')),
      JSON.stringify(http),
    );
  });
});
