// Tunnel mode between the nodes of a lab (the default of `weir lab up --nodes N`, as Cilium's):
// each node's VXLAN device (external) carries its pods' IPv4 and IPv6 traffic to the other nodes with the
// sender's identity in the VNI; the receiving node judges it with that identity, as a
// CiliumNetworkPolicy selecting by labels says. The packets are seen going through the devices,
// each node's ipcache names the other nodes' pods with their node's underlay address, and
// `weir observe` on the receiving node shows the verdict.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { crossNodePods, serverFromClient } from '../support/cluster-pods.js';
import { linkStats, onNode as onNodeOf, probe8080 } from '../support/cluster-nodes.js';

const LAB = testLab('t-tunnel');

const manifests = `${crossNodePods}---
apiVersion: v1
kind: Service
metadata: { name: server, namespace: default }
spec: { selector: { app: server }, ports: [{ port: 80, targetPort: 8080, protocol: TCP }] }
---
${serverFromClient}`;

const onNode = (node: string, args: string[]) => onNodeOf(LAB, node, args);

const probe = (from: string, to: string) => probe8080(LAB, from, to, 1500);

/** Packets the node's VXLAN device sent (tx) and received (rx). */
function vxlanPackets(node: string): Promise<{ tx: number; rx: number }> {
  return linkStats(`weir-${LAB}-${node}`, 'weir_vxlan');
}

describe('tunnel mode between nodes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-tunnel-test-'));
    await writeFile(join(dir, 'all.yaml'), manifests);
    await cli(['lab', 'down'], LAB);
    // Two nodes (node k: 10.244.<k-1>.0/24), dual-stack.
    await writeFile(
      join(dir, 'lab.yaml'),
      `nodes:\n  - { podCIDRv6: "fd00:10:244:0::/64" }\n  - { podCIDRv6: "fd00:10:244:1::/64" }\n`,
    );
    await ok(['lab', 'up', '-f', join(dir, 'lab.yaml'), '--lab', LAB], LAB, 240_000);
    await ok(['apply', '-f', join(dir, 'all.yaml')], LAB);
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('carries pod traffic through the VXLAN devices; node2 judges it with the sender identity', async () => {
    const before1 = await vxlanPackets('node1');
    const before2 = await vxlanPackets('node2');
    assert.ok(await probe('default/client', 'default/server'), 'client -> server is allowed');
    const after1 = await vxlanPackets('node1');
    const after2 = await vxlanPackets('node2');
    assert.ok(
      after1.tx - before1.tx >= 3,
      `node1 encapsulated the connection (${after1.tx - before1.tx} packets)`,
    );
    assert.ok(after2.rx - before2.rx >= 3, `node2 received it from its tunnel (${after2.rx - before2.rx})`);
    assert.ok(after2.tx - before2.tx >= 2, 'the answers went back through the tunnel');
    assert.ok(!(await probe('default/other', 'default/server')), 'other -> server is denied');
    // IPv6 pods over the IPv4 underlay, judged alike.
    assert.ok(await probe('default/client', 'fd00:10:244:1::2'), 'client -> server over IPv6 is allowed');
    assert.ok(!(await probe('default/other', 'fd00:10:244:1::2')), 'other -> server over IPv6 is denied');

    const flows = (await onNode('node2', ['observe', '--verdict', 'DROPPED', '-o', 'json']))
      .split('\n')
      .filter(Boolean)
      .map(
        (l) =>
          JSON.parse(l) as { drop_reason_desc?: string; source?: { pod_name?: string; labels?: string[] } },
      );
    assert.ok(
      flows.some(
        (f) =>
          f.drop_reason_desc === 'POLICY_DENIED' &&
          f.source?.pod_name === 'other' &&
          f.source.labels?.includes('k8s:app=other'),
      ),
      'node2 shows the POLICY_DENIED drop of default/other',
    );
  });

  it('a ClusterIP on node1 reaches its backend on node2 through the tunnel', async () => {
    const svc = JSON.parse(await ok(['get', 'svc', 'server', '-o', 'json'], LAB)) as {
      spec: { clusterIP: string };
    };
    const r = await cli(
      [
        'lab',
        'probe',
        '--from',
        'default/client',
        '--to',
        svc.spec.clusterIP,
        '--port',
        '80/TCP',
        '--timeout',
        '1500',
      ],
      LAB,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      await onNode('node1', ['service', 'list']),
      /default\/server\s+1 => 10\.244\.1\.2:8080\/TCP/,
    );
  });

  it("each node's ipcache names the other node's pods with that node's underlay address", async () => {
    const ipcache = JSON.parse(await onNode('node1', ['bpf', 'ipcache', 'list', '-o', 'json'])) as {
      prefix: string;
      identity: number;
      tunnelEndpoint?: string;
    }[];
    const eps = JSON.parse(await onNode('node2', ['endpoint', 'list', '-o', 'json'])) as {
      pod: string;
      identity: number;
      ips: string[];
    }[];
    const server = eps.find((e) => e.pod === 'server');
    assert.ok(server);
    const entry = ipcache.find((e) => e.prefix === `${server.ips[0]}/32`);
    assert.equal(entry?.identity, server.identity, "node2's server with its identity");
    assert.equal(entry?.tunnelEndpoint, '198.18.0.12', 'behind node2');
    const cidr = ipcache.find((e) => e.prefix === '10.244.1.0/24');
    assert.equal(cidr?.tunnelEndpoint, '198.18.0.12', "node2's pod CIDR goes to node2");
    assert.equal(ipcache.find((e) => e.prefix === '198.18.0.12/32')?.tunnelEndpoint, undefined);
  });
});
