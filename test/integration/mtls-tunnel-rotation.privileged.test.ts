// Encryption between nodes (--encryption mtls, docs/mtls.md) in a dual-stack lab of two nodes:
//
//   - IPv6 pods: client (node1) → server (node2) over IPv6 travels in the mTLS tunnel (no marker on
//     the underlay in a request path nor in a 1 MiB echoed stream), node2's ingress policy judges
//     the proven identity (other → server over IPv6 is dropped, encrypted);
//   - `weir identity ca rotate --overlap N` with tunnels open: a long-lived connection carried by a
//     tunnel and new connections every 250 ms (IPv4 and IPv6) never fail; new tunnels after the
//     rotation present SVIDs of the new CA; after the overlap node2's tunnel listener refuses an
//     SVID of the retired CA (counted `untrusted`) and serves one of the new CA;
//   - the CA node signs an SVID only for a node that hosts a pod of the identity in the desired
//     state (ERR_AUTH_CSR_NOT_HOSTED otherwise, counted in weir_auth_svid_requests_total).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AgentClient } from '../../src/agent/client.js';
import { agentDir, agentSocket } from '../../src/agent/paths.js';
import { CertificateAuthority, makeCsr } from '../../src/auth/ca.js';
import type { CaStatus } from '../../src/auth/ca-store.js';
import { WeirError } from '../../src/shared/errors.js';
import { lastJson, ok } from '../support/cli.js';
import { inNode } from '../support/cluster-nodes.js';
import { testLab } from '../support/lab-name.js';
import {
  EncryptedLab,
  NODE2_UL,
  sleep,
  trafficScript,
  tunnelDialer,
  type TrafficResult,
  type Ids,
  type StreamResult,
} from '../support/mtls-cluster.js';

const LAB = testLab('t-mtlsr');
const MARKER = 'weir-v6-marker-41c2e8';
const OVERLAP = 15;

const lab = new EncryptedLab(LAB, {
  marker: MARKER,
  labYaml: `name: ${LAB}
nodes:
  - { name: node1, podCIDR: 10.244.0.0/24, podCIDRv6: 'fd00:10:244::/64' }
  - { name: node2, podCIDR: 10.244.1.0/24, podCIDRv6: 'fd00:10:244:1::/64' }
`,
});
const { onNode, authOf, tunnelStatus, flows, get, capture } = lab;

// Run in node1's namespace: dials node2's tunnel listener with the SVID in a JSON file.
const dialScript = (o: { svidFile: string; server: string; client: string; ids: Ids }) => `
${tunnelDialer}
import { readFileSync } from 'node:fs';
const svid = JSON.parse(readFileSync('${o.svidFile}', 'utf8'));
const r = await dial(
  svid,
  'dst-${o.ids.server}.src-${o.ids.client}.weir-hbone',
  '${o.server}:8080',
  '${o.client}:40001',
  { rejectUnauthorized: false },
);
console.log(JSON.stringify(r));
`;

describe(
  'mTLS tunnels: IPv6 pods, CA rotation with tunnels open, SVIDs only for hosted identities',
  {
    timeout: 600_000,
  },
  () => {
    before(async () => {
      await lab.up();
      assert.match(lab.ips6.server ?? '', /^fd00:10:244:1::/, `server's IPv6: ${JSON.stringify(lab.ips6)}`);
      assert.match(lab.ips6.client ?? '', /^fd00:10:244::/);
    });
    after(lab.down);

    it('carries IPv6 pod TCP between the nodes in the tunnel, and the policy judges it', async (t) => {
      const cap = await capture();
      let answer = '';
      let stream: StreamResult = { sent: 0, got: 0 };
      try {
        answer = await get('default/client', lab.ips6.server ?? '');
        stream = await lab.stream('default/client', lab.ips6.server ?? '', 1 << 20);
        await sleep(300);
      } finally {
        const seen = await cap.stop();
        t.diagnostic(JSON.stringify(seen));
        assert.ok(
          answer.startsWith('default/server') && answer.endsWith(' 200'),
          `curl over IPv6: ${answer}`,
        );
        assert.equal(stream.error, undefined, `stream: ${JSON.stringify(stream)}`);
        assert.equal(stream.got, stream.sent, 'every byte came back through the tunnel');
        assert.ok(seen.tunnelFrames > 20, `tunnel frames on the underlay: ${JSON.stringify(seen)}`);
        assert.equal(seen.markerFrames, 0, `no plaintext on the underlay: ${JSON.stringify(seen)}`);
      }
      const t1 = await tunnelStatus('node1');
      assert.ok(
        t1?.tunnels.some((x) => x.src === lab.ids.client && x.dst === lab.ids.server && x.peer === NODE2_UL),
        `node1 holds the tunnel client -> server: ${JSON.stringify(t1?.tunnels)}`,
      );
      const denied = await get('default/other', lab.ips6.server ?? '', 12);
      assert.ok(!denied.endsWith('200'), `other -> server over IPv6 gets no answer: ${denied}`);
      const f2 = await flows('node2');
      assert.ok(
        f2.some(
          (f) =>
            f.weir.type === 'policy-verdict' &&
            f.source.identity === lab.ids.client &&
            f.IP?.destination === lab.ips6.server &&
            f.verdict === 'FORWARDED' &&
            f.IP?.encrypted === true,
        ),
        "node2's ingress verdict of client -> server over IPv6 judged the proven identity, encrypted",
      );
      const drops = f2.filter(
        (f) =>
          f.verdict === 'DROPPED' &&
          f.source.identity === lab.ids.other &&
          f.IP?.destination === lab.ips6.server,
      );
      assert.ok(drops.length > 0, 'node2 dropped other -> server over IPv6');
      assert.ok(
        drops.every((f) => f.drop_reason_desc === 'POLICY_DENIED' && f.IP?.encrypted === true),
        JSON.stringify(drops[0]),
      );
    });

    it('a CA rotation with tunnels open: nothing fails, new tunnels take new-CA SVIDs, the old CA is refused after the overlap', async (t) => {
      // An SVID of the CA before the rotation, as a node that missed the rotation would hold (the
      // test is root: it signs with the CA's key, which no other agent reads).
      const oldCa = await CertificateAuthority.open(join(agentDir(LAB), 'ca'));
      const old = await oldCa.issue('cluster.local', lab.ids.client, 600);
      await writeFile(
        join(lab.dir, 'old.json'),
        JSON.stringify({ certPem: old.certPem, keyPem: old.keyPem }),
      );
      await writeFile(
        join(lab.dir, 'traffic.mjs'),
        trafficScript(lab.ips6.server ?? '', [lab.ips.server ?? '', lab.ips6.server ?? ''], OVERLAP + 12),
      );
      const traffic = ok(
        ['lab', 'exec', 'default/client', '--', process.execPath, join(lab.dir, 'traffic.mjs')],
        LAB,
        180_000,
      );
      void traffic.catch(() => undefined);
      await sleep(3000);
      const rotated = JSON.parse(
        await ok(['identity', 'ca', 'rotate', '--overlap', String(OVERLAP), '-o', 'json'], LAB),
      ) as CaStatus;
      const signing = rotated.cas.find((c) => c.role === 'signing');
      assert.ok(signing);
      // node1's new tunnels present SVIDs of the new CA (a few seconds: every node trusts it first).
      let t1 = await tunnelStatus('node1');
      for (
        let i = 0;
        i < 30 && !t1?.tunnels.some((x) => x.src === lab.ids.client && x.issuer === signing.subject);
        i++
      ) {
        await sleep(500);
        t1 = await tunnelStatus('node1');
      }
      t.diagnostic(
        `new-CA tunnel seen ${Date.now() - new Date(rotated.retireAt ?? 0).getTime() + OVERLAP * 1000} ms after the rotation`,
      );
      assert.ok(
        t1?.tunnels.some(
          (x) => x.src === lab.ids.client && x.dst === lab.ids.server && x.issuer === signing.subject,
        ),
        `node1's tunnel client -> server presents a new-CA SVID: ${JSON.stringify(t1?.tunnels)} (new CA ${signing.subject})`,
      );
      assert.ok(
        t1?.tunnels.every((x) => x.issuer === signing.subject),
        `no tunnel in use with an old SVID: ${JSON.stringify(t1?.tunnels)}`,
      );
      assert.ok(Date.now() < new Date(rotated.retireAt ?? 0).getTime(), 'before the old CA retired');
      // After the overlap: one CA on both nodes (and in both proxies a second later).
      while (Date.now() < new Date(rotated.retireAt ?? 0).getTime() + 3000) await sleep(500);
      assert.equal((await authOf('node1')).trusted, 1);
      assert.equal((await authOf('node2')).trusted, 1);
      const res = lastJson<TrafficResult>(await traffic);
      t.diagnostic(JSON.stringify(res));
      assert.deepEqual(res.errors, []);
      assert.equal(res.freshFailed, 0, 'no new connection failed');
      assert.ok(res.fresh >= 30, `${res.fresh} new connections`);
      assert.equal(res.longFailed, 0);
      assert.ok(res.longLived >= 100, `${res.longLived} lines echoed on the long-lived connection`);
      // The retired CA's SVID is refused by node2's tunnel listener and counted; the new CA's served.
      const now = await CertificateAuthority.open(join(agentDir(LAB), 'ca'));
      const fresh = await now.issue('cluster.local', lab.ids.client, 600);
      await writeFile(
        join(lab.dir, 'new.json'),
        JSON.stringify({ certPem: fresh.certPem, keyPem: fresh.keyPem }),
      );
      const before = (await tunnelStatus('node2'))?.refused.untrusted ?? 0;
      const dial = async (file: string) => {
        const script = join(lab.dir, `dial-${file}.mjs`);
        await writeFile(
          script,
          dialScript({
            svidFile: join(lab.dir, file),
            server: lab.ips.server ?? '',
            client: lab.ips.client ?? '',
            ids: lab.ids,
          }),
        );
        return lastJson<string>((await inNode(LAB, 'node1', [process.execPath, script])).stdout);
      };
      const withOld = await dial('old.json');
      const withNew = await dial('new.json');
      assert.notEqual(withOld, 'status 200', `the retired CA's SVID is refused: ${withOld}`);
      assert.equal(withNew, 'status 200', `the new CA's SVID is served (the dialer works): ${withNew}`);
      const after = (await tunnelStatus('node2'))?.refused.untrusted ?? 0;
      assert.ok(after > before, `node2 counted the retired CA's SVID untrusted: ${before} -> ${after}`);
      assert.ok(
        (await get('default/client', lab.ips6.server ?? '')).endsWith(' 200'),
        'client -> server answers',
      );
    });

    it('signs an SVID only for a node that hosts a pod of the identity', async () => {
      const api = new AgentClient(agentSocket(LAB), 10_000);
      const ask = async (node: string, identity: number) => {
        const { csrPem } = await makeCsr('cluster.local', identity);
        try {
          await api.call('POST', '/v1/auth/svids', { node, identity, csrPem, ttlSeconds: 600 });
          return 'signed';
        } catch (err) {
          return err instanceof WeirError ? `${err.code}: ${err.message}` : String(err);
        }
      };
      // node2 runs server, not client nor other (node1's pods).
      assert.equal(await ask('node2', lab.ids.server), 'signed');
      const refused = await ask('node2', lab.ids.client);
      assert.match(refused, /^ERR_AUTH_CSR_NOT_HOSTED: node 'node2' hosts no pod of identity \d+/);
      assert.match(await ask('node2', lab.ids.other), /^ERR_AUTH_CSR_NOT_HOSTED/);
      assert.equal(await ask('node1', lab.ids.client), 'signed');
      const metrics = await ok(['agent', 'metrics'], LAB);
      const count = (result: string) =>
        Number(
          new RegExp(`weir_auth_svid_requests_total\\{result="${result}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0,
        );
      assert.ok(count('not-hosted') >= 2, `refusals counted: ${count('not-hosted')}`);
      assert.ok(count('signed') >= 3, `node2's own requests and the test's signed: ${count('signed')}`);
      // node2's own SVID (of its pod's identity) keeps coming from the CA.
      const cert = JSON.parse(
        await onNode('node2', ['identity', 'cert', 'get', String(lab.ids.server), '-o', 'json']),
      ) as {
        identity: number;
      };
      assert.equal(cert.identity, lab.ids.server);
    });
  },
);
