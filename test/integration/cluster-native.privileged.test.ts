// Native routing (`routing: native`, no tunnel) on a lab of two nodes: what another node sends
// arrives on the node's underlay device, where the agent attaches weir_from_netdev. NodePort
// (snat) from a lab external to node1 reaches the only backend, on node2: node1 routes the
// translated packet over the underlay and translates node2's replies back as they arrive on its
// underlay device. An egress L7 rule of a pod of node1 towards node2's pod: node1's proxy judges the
// requests (200 for the allowed path, 403 for the other) and its upstream connection's replies,
// arriving on the underlay device, reach the proxy's socket.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ProxyManagerStatus } from '../../src/agent/proxy-manager.js';
import { run } from '../../src/shared/exec.js';
import { cli, ok } from '../support/cli.js';
import { linkStats, nodeIP, nodePortReady } from '../support/cluster-nodes.js';
import { webNodePort, webOnNode2 } from '../support/cluster-pods.js';
import { connect } from '../support/service-client.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-cnat');
const EXT_IP = '192.0.2.70';

const labSpec = `
name: ${LAB}
routing: native
nodes: [{ name: node1 }, { name: node2 }]
externals:
  - { name: client, ip: ${EXT_IP} }
`;

const objects = `
apiVersion: v1
kind: Pod
metadata: { name: client1, namespace: default, labels: { role: client } }
spec: { nodeName: node1, containers: [{ name: c }] }
---${webOnNode2('{ name: web, containerPort: 80 }')}${webNodePort()}---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-l7, namespace: default }
spec:
  endpointSelector: { matchLabels: { role: client } }
  egress:
    - toEndpoints: [{ matchLabels: { app: web } }]
      toPorts:
        - ports: [{ port: "80", protocol: TCP }]
          rules: { http: [{ method: GET, path: /allowed }] }
`;

const packets = (node: string, dev: string) => linkStats(`weir-${LAB}-${node}`, dev);

describe('native routing: NodePort and egress L7 towards another node', () => {
  let dir: string;
  let node1 = '';
  let webIP = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-cnat-'));
    await writeFile(join(dir, 'lab.yaml'), labSpec);
    await writeFile(join(dir, 'objects.yaml'), objects);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '-f', join(dir, 'lab.yaml')], LAB, 240_000);
    await ok(['apply', '-f', join(dir, 'objects.yaml')], LAB, 120_000);
    node1 = await nodeIP(LAB, 'node1');
    const pod = JSON.parse(await ok(['get', 'pod', 'web', '-o', 'json'], LAB)) as {
      status: { podIP: string };
    };
    webIP = pod.status.podIP;
    assert.equal(
      (await run(['ip', '-n', `weir-${LAB}-node1`, 'link', 'show', 'weir_vxlan'], { check: false })).code ===
        0,
      false,
      'no tunnel device with native routing',
    );
    await nodePortReady(LAB, node1, 30080);
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it("NodePort (snat) on node1 reaches node2's backend over the underlay, replies translated back", async () => {
    const ul1 = await packets('node1', 'weir_ul');
    const tries = await connect(LAB, 'ext:client', 'tcp', node1, 30080, 3, { timeoutMs: 5000 });
    const ul1After = await packets('node1', 'weir_ul');
    for (const t of tries) {
      assert.equal(t.peer, `${node1}:30080`, JSON.stringify(t));
      assert.match(t.body ?? '', /default\/web/, JSON.stringify(t));
    }
    assert.ok(ul1After.tx - ul1.tx >= 9, `node1 forwarded over the underlay (${ul1After.tx - ul1.tx})`);
    assert.ok(ul1After.rx - ul1.rx >= 6, `the replies came back over it (${ul1After.rx - ul1.rx})`);
  });

  it("an egress L7 rule towards node2's pod: node1's proxy judges, its upstream's replies reach it", async () => {
    const status = async () =>
      JSON.parse(await ok(['proxy', 'status', '--node', 'node1', '-o', 'json'], LAB)) as ProxyManagerStatus;
    const script = ['/allowed', '/denied', '/allowed']
      .map((p) => `curl -s -o /dev/null -m 10 -w '%{http_code}\\n' http://${webIP}${p}`)
      .join('; ');
    const before1 = (await status()).proxy?.redirects.egress ?? 0;
    const codes = (await ok(['lab', 'exec', 'default/client1', '--', 'sh', '-c', script], LAB))
      .trim()
      .split('\n');
    assert.deepEqual(codes, ['200', '403', '200']);
    assert.equal((await status()).proxy?.redirects.egress, before1 + 3, "through node1's proxy");
  });
});
