// Mutual authentication between two nodes of a lab with native routing (`--routing native`, no
// tunnel device): remote pods' ipcache entries still carry their node's underlay address (the
// peer's node id of weir_auth keys), while forwarding stays native. With real TCP, real TLS between
// the nodes' agents and the real CLI:
//   - no weir_vxlan on either node; node1's ipcache names node2's underlay address for the server;
//   - `authentication: {mode: required}` on node2's server drops client (node1) → server (189,
//     counted, a flow naming the rule) until node2's agent has handshaken with node1's listener;
//     then the connection passes, over the underlay device; each node's `weir auth list` names the
//     other node and the map key carries that node's id.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { authNodeId } from '../../src/auth/node-id.js';
import type { Flow } from '../../src/observe/flow.js';
import { run } from '../../src/shared/exec.js';
import { cli, ok } from '../support/cli.js';
import { crossNodePods } from '../support/cluster-pods.js';
import { testLab } from '../support/lab-name.js';
import { NODE1_UL, NODE2_UL, authRequiredPolicy, nodeCommands, sleep } from '../support/mtls-cluster.js';

const LAB = testLab('t-mtlsn');
const { onNode, authOf, probe } = nodeCommands(LAB);
const policy = authRequiredPolicy;

async function txPackets(node: string, dev: string): Promise<number> {
  const out = await run(['ip', '-n', `weir-${LAB}-${node}`, '-s', '-j', 'link', 'show', dev]);
  return (JSON.parse(out.stdout) as { stats64: { tx: { packets: number } } }[])[0]?.stats64.tx.packets ?? 0;
}

describe('mutual authentication between two nodes, native routing', { timeout: 600_000 }, () => {
  let dir = '';
  const ids: Record<string, number> = {};
  let serverIp = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-mtlsn-'));
    await writeFile(join(dir, 'pods.yaml'), crossNodePods);
    await writeFile(join(dir, 'policy.yaml'), policy);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '--nodes', '2', '--routing', 'native', '--no-cluster-dns'], LAB, 240_000);
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB);
    await ok(['apply', '-f', join(dir, 'policy.yaml')], LAB);
    for (const node of ['node1', 'node2']) {
      const eps = JSON.parse(await onNode(node, ['endpoint', 'list', '-o', 'json'])) as {
        pod: string;
        identity: number;
        ips: string[];
      }[];
      for (const e of eps) {
        ids[e.pod] = e.identity;
        if (e.pod === 'server') serverIp = e.ips[0] ?? '';
      }
    }
    assert.ok(ids.client && ids.server && ids.other && serverIp, JSON.stringify(ids));
  });

  after(async () => {
    await cli(['lab', 'down'], LAB);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("no tunnel device; the ipcache names the remote pod's node all the same", async () => {
    for (const node of ['node1', 'node2']) {
      const r = await run(['ip', '-n', `weir-${LAB}-${node}`, 'link', 'show', 'weir_vxlan'], {
        check: false,
      });
      assert.notEqual(r.code, 0, `${node} has no weir_vxlan with native routing`);
    }
    // The remote pods' entries carry their node's underlay address (the node id of weir_auth).
    const rows = JSON.parse(await onNode('node1', ['bpf', 'ipcache', 'list', '-o', 'json'])) as {
      prefix: string;
      tunnelEndpoint?: string;
    }[];
    assert.equal(
      rows.find((r) => r.prefix === `${serverIp}/32`)?.tunnelEndpoint,
      NODE2_UL,
      JSON.stringify(rows),
    );
  });

  it('drops client (node1) → server (node2) until the nodes handshook, then allows over the underlay; both nodes list the pair with the other node', async (t) => {
    const since = new Date(Date.now() - 1000).toISOString();
    const t0 = Date.now();
    assert.equal(await probe('default/client', 'default/server'), false, 'the first attempt is dropped');
    let tries = 1;
    let connected = false;
    while (!connected && tries < 30) {
      await sleep(250);
      tries++;
      connected = await probe('default/client', 'default/server');
    }
    assert.ok(connected, `connected after ${tries} attempts`);
    t.diagnostic(`connected at attempt ${tries}, ${Date.now() - t0} ms after the first SYN`);

    // The drop: 189 on node2, a flow naming the rule.
    const r = await cli(
      [
        'observe',
        '-o',
        'json',
        '--node',
        'node2',
        '--since',
        since,
        '--verdict',
        'DROPPED',
        '--pod',
        'default/server',
      ],
      LAB,
    );
    assert.equal(r.code, 0, r.stderr);
    const drop = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Flow)
      .find((f) => f.weir.type === 'drop' && f.drop_reason === 189);
    assert.ok(drop, `a drop flow: ${r.stdout}`);
    assert.equal(drop.drop_reason_desc, 'AUTH_REQUIRED');
    assert.equal(drop.source.pod_name, 'client');
    assert.equal(drop.ingress_denied_by?.[0]?.rule, 'CiliumNetworkPolicy default/server-auth ingress[0]');

    const s2 = await authOf('node2');
    const p2 = s2.pairs.find((p) => p.srcIdentity === ids.client && p.dstIdentity === ids.server);
    assert.ok(p2, `node2's pairs: ${JSON.stringify(s2.pairs)}`);
    assert.equal(p2.remoteNodeId, authNodeId(NODE1_UL));
    assert.equal(p2.node, 'node1');
    assert.ok(s2.handshakes.ok >= 1, 'node2 dialled');
    const s1 = await authOf('node1');
    const p1 = s1.pairs.find((p) => p.srcIdentity === ids.client && p.dstIdentity === ids.server);
    assert.ok(p1, `node1's pairs: ${JSON.stringify(s1.pairs)}`);
    assert.equal(p1.remoteNodeId, authNodeId(NODE2_UL));
    assert.equal(p1.node, 'node2');
    assert.ok(s1.counters.accepted >= 1, "node1's listener accepted node2");
    assert.match(
      await onNode('node1', ['auth', 'list']),
      new RegExp(`${ids.client}\\s+${ids.server}\\s+node2`),
    );
    assert.match(
      await onNode('node2', ['auth', 'list']),
      new RegExp(`${ids.client}\\s+${ids.server}\\s+node1`),
    );

    // The allowed connection travels natively: node1's underlay device sends it.
    const before = await txPackets('node1', 'weir_ul');
    for (let i = 0; i < 3; i++) assert.equal(await probe('default/client', 'default/server'), true);
    assert.ok((await txPackets('node1', 'weir_ul')) - before >= 6, 'over the underlay device');
    // `other` has no rule at all.
    assert.equal(await probe('default/other', 'default/server'), false);
  });
});
