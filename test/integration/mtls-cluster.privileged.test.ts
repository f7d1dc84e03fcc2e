// Mutual authentication between two nodes of a lab (tunnel mode), with real TCP, real TLS between
// the nodes' agents and the real CLI:
//   - `authentication: {mode: required}` on node2's server drops client (node1) → server until
//     node2's agent has handshaken with node1's listener; then the connection passes; each node's
//     `weir auth list` names the other node, and the map key carries that node's id;
//   - node2's SVIDs come from the CA on node1 through its API (issuer: the lab CA; node2 has no
//     CA directory of its own);
//   - node2's listener, dialled from node1's namespace over the underlay, refuses a rogue CA's
//     certificate, an expired SVID of the real CA and another identity's SVID, and counts each;
//   - `weir identity ca rotate`: node2 re-issues its SVID from the new CA, the pair is handshaken
//     again, the old CA is retired, and a long-lived connection and new connections made all
//     along never fail.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { IdentityCert } from '../../src/agent/auth.js';
import { agentDir } from '../../src/agent/paths.js';
import type { CaStatus } from '../../src/auth/ca-store.js';
import { repoRoot } from '../../src/shared/paths.js';
import { cli, lastJson, ok } from '../support/cli.js';
import { inNode } from '../support/cluster-nodes.js';
import { testLab } from '../support/lab-name.js';
import { AuthLab, NODE2_UL, sleep, trafficScript, type TrafficResult } from '../support/mtls-cluster.js';

const LAB = testLab('t-mtlsc');
const lab = new AuthLab(LAB);
const { onNode, authOf, probe, ids } = lab;

// Run in node1's namespace: dials node2's listener over the underlay as a rogue node would.
const rogueScript = (ids: { client: number; server: number; other: number }) => `
import { CertificateAuthority } from '${repoRoot}/dist/src/auth/ca.js';
import { authenticate } from '${repoRoot}/dist/src/auth/handshake.js';
// The test (root) forges with the real CA's key; no agent of another node ever reads it.
const real = await CertificateAuthority.open('${join(agentDir(LAB), 'ca')}');
const rogue = (await CertificateAuthority.create('rogue')).ca;
const hs = (src) => authenticate({ host: '${NODE2_UL}', port: 4250, trustDomain: 'cluster.local', caPem: real.certPem, src, dst: ${ids.server} })
  .then(() => 'accepted', (e) => e.message);
const out = {};
out.rogueCa = await hs(await rogue.issue('cluster.local', ${ids.client}, 600));
out.expired = await hs(await real.issue('cluster.local', ${ids.client}, -5));
out.otherIdentity = await hs({ ...(await real.issue('cluster.local', ${ids.other}, 600)), identity: ${ids.client} });
console.log(JSON.stringify(out));
`;

describe('mutual authentication between two nodes', { timeout: 600_000 }, () => {
  before(lab.up);
  after(lab.down);

  it('drops client (node1) → server (node2) until the nodes handshook, then allows; both nodes list the pair with the other node', async (t) => {
    await lab.handshakeFirst(t);
    await lab.assertPairs();
    // Other traffic of the client is not affected; `other` has no rule at all.
    assert.equal(await probe('default/other', 'default/server'), false);
  });

  it("node2's SVIDs come from node1's CA through its API; node2 holds SVIDs of its own pods only", async () => {
    assert.equal(existsSync(join(agentDir(LAB, 'node2'), 'ca')), false, 'node2 has no CA directory');
    const ca = JSON.parse(await ok(['identity', 'ca', 'get', '-o', 'json'], LAB)) as CaStatus;
    const c = JSON.parse(
      await onNode('node2', ['identity', 'cert', 'get', String(ids.server), '-o', 'json']),
    ) as IdentityCert;
    assert.equal(c.spiffeId, `spiffe://cluster.local/identity/${ids.server}`);
    // Signed by node1's CA (the bundle node2 was given is that CA).
    const caCert = new X509Certificate(c.caPem);
    assert.equal(caCert.fingerprint256, ca.cas[0]?.fingerprint);
    assert.ok(new X509Certificate(c.certPem).verify(caCert.publicKey));
    // client is node1's pod: node2 has no SVID for it.
    const r = await cli(['identity', 'cert', 'get', String(ids.client)], LAB);
    assert.equal(r.code, 0, 'node1 has it');
    process.env.WEIR_NODE = 'node2';
    try {
      const r2 = await cli(['identity', 'cert', 'get', String(ids.client)], LAB);
      assert.match(r2.stderr, /ERR_AUTH_NO_SVID/);
    } finally {
      delete process.env.WEIR_NODE;
    }
  });

  it("node2's listener refuses a rogue CA, an expired SVID and another identity's SVID, and counts each", async () => {
    const script = join(lab.dir, 'rogue.mjs');
    await writeFile(script, rogueScript(ids as never));
    const before = (await authOf('node2')).counters.refused;
    const res = lastJson<Record<string, string>>(
      (await inNode(LAB, 'node1', [process.execPath, script])).stdout,
    );
    assert.match(res.rogueCa ?? '', /refused: untrusted/);
    assert.match(res.expired ?? '', /refused: expired/);
    assert.match(res.otherIdentity ?? '', /refused: wrong-identity/);
    const s = await authOf('node2');
    assert.equal(s.counters.refused.untrusted, before.untrusted + 1);
    assert.equal(s.counters.refused.expired, before.expired + 1);
    assert.equal(s.counters.refused['wrong-identity'], before['wrong-identity'] + 1);
    const prom = await onNode('node2', ['agent', 'metrics']);
    for (const [reason, n] of [
      ['untrusted', s.counters.refused.untrusted],
      ['expired', s.counters.refused.expired],
      ['wrong-identity', s.counters.refused['wrong-identity']],
    ] as const)
      assert.match(prom, new RegExp(`weir_auth_listener_connections_total\\{result="${reason}"\\} ${n}`));
  });

  it('CA rotation: SVIDs re-issued from the new CA, pairs handshaken again, the old CA retired, no connection fails', async (t) => {
    const OVERLAP = 20;
    const cert = async () =>
      JSON.parse(
        await onNode('node2', ['identity', 'cert', 'get', String(ids.server), '-o', 'json']),
      ) as IdentityCert;
    const before = await cert();
    const statusBefore = await authOf('node2');
    const pairBefore = statusBefore.pairs.find((p) => p.srcIdentity === ids.client);
    assert.ok(pairBefore);
    const failedBefore = {
      node1: (await authOf('node1')).handshakes.failed,
      node2: statusBefore.handshakes.failed,
    };
    const script = join(lab.dir, 'traffic.mjs');
    await writeFile(script, trafficScript(lab.serverIp, [lab.serverIp], OVERLAP + 14));
    const traffic = ok(['lab', 'exec', 'default/client', '--', process.execPath, script], LAB, 120_000);
    await sleep(3000);
    const rotated = JSON.parse(
      await ok(['identity', 'ca', 'rotate', '--overlap', String(OVERLAP), '-o', 'json'], LAB),
    ) as CaStatus;
    assert.deepEqual(
      rotated.cas.map((c) => c.role),
      ['signing', 'retiring'],
    );
    const r = await cli(['identity', 'ca', 'rotate', '--overlap', '10'], LAB);
    assert.match(r.stderr, /ERR_AUTH_CA_ROTATE/);
    // node2 polls the bundle: it trusts both, then re-issues its SVID from the new CA.
    let now = await cert();
    for (let i = 0; i < 30 && now.summary.issuer === before.summary.issuer; i++) {
      await sleep(500);
      now = await cert();
    }
    assert.notEqual(now.summary.issuer, before.summary.issuer, 'node2 re-issued from the new CA');
    assert.equal((await authOf('node2')).trusted, 2, 'both CAs trusted during the overlap');
    // The pair is handshaken again with new-CA certificates (its expiry moves) before retirement.
    const moved = async () =>
      (await authOf('node2')).pairs.find(
        (p) =>
          p.srcIdentity === ids.client &&
          new Date(p.expires).getTime() > new Date(pairBefore.expires).getTime(),
      );
    let m = await moved();
    for (let i = 0; i < 30 && !m; i++) {
      await sleep(500);
      m = await moved();
    }
    assert.ok(m, 'the pair was handshaken again');
    assert.ok(Date.now() < new Date(rotated.retireAt ?? 0).getTime(), 'before the old CA retired');
    // After the overlap: one CA on both nodes.
    while (Date.now() < new Date(rotated.retireAt ?? 0).getTime() + 2500) await sleep(500);
    const ca = JSON.parse(await ok(['identity', 'ca', 'get', '-o', 'json'], LAB)) as CaStatus;
    assert.equal(ca.cas.length, 1);
    assert.equal((await authOf('node1')).trusted, 1);
    assert.equal((await authOf('node2')).trusted, 1);
    const res = lastJson<TrafficResult>(await traffic);
    t.diagnostic(JSON.stringify(res));
    assert.deepEqual(res.errors, []);
    assert.equal(res.freshFailed, 0, 'no new connection failed');
    assert.ok(res.fresh >= 20, `${res.fresh} new connections`);
    assert.equal(res.longFailed, 0);
    assert.ok(res.longLived >= 100, `${res.longLived} lines echoed on the long-lived connection`);
    // No handshake failed on either node along the rotation (the re-handshakes came after every
    // node trusted the new CA), and the pair holds after the retirement.
    assert.equal((await authOf('node1')).handshakes.failed, failedBefore.node1);
    assert.equal((await authOf('node2')).handshakes.failed, failedBefore.node2);
    assert.equal(await probe('default/client', 'default/server'), true);
  });
});
