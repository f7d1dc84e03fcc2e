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
import { after, before, describe, it } from 'node:test';
import type { Flow } from '../../src/observe/flow.js';
import { run } from '../../src/shared/exec.js';
import { cli } from '../support/cli.js';
import { linkStats } from '../support/cluster-nodes.js';
import { testLab } from '../support/lab-name.js';
import { AuthLab, NODE2_UL } from '../support/mtls-cluster.js';

const LAB = testLab('t-mtlsn');
const lab = new AuthLab(LAB, ['--routing', 'native']);
const { onNode, probe } = lab;

/** The packets device `dev` of the lab's node `node` sent. */
const txPackets = async (node: string, dev: string) => (await linkStats(`weir-${LAB}-${node}`, dev)).tx;

describe('mutual authentication between two nodes, native routing', { timeout: 600_000 }, () => {
  before(lab.up);
  after(lab.down);

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
      rows.find((r) => r.prefix === `${lab.serverIp}/32`)?.tunnelEndpoint,
      NODE2_UL,
      JSON.stringify(rows),
    );
  });

  it('drops client (node1) → server (node2) until the nodes handshook, then allows over the underlay; both nodes list the pair with the other node', async (t) => {
    const since = new Date(Date.now() - 1000).toISOString();
    await lab.handshakeFirst(t);

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

    await lab.assertPairs();

    // The allowed connection travels natively: node1's underlay device sends it.
    const before = await txPackets('node1', 'weir_ul');
    for (let i = 0; i < 3; i++) assert.equal(await probe('default/client', 'default/server'), true);
    assert.ok((await txPackets('node1', 'weir_ul')) - before >= 6, 'over the underlay device');
    // `other` has no rule at all.
    assert.equal(await probe('default/other', 'default/server'), false);
  });
});
