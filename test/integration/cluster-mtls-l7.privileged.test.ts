// Encryption between nodes for the node proxy's own upstreams (docs/mtls.md, "The proxy's own
// upstreams"): with `--encryption mtls`, node1's client has an egress HTTP rule towards node2's
// server, so node1's proxy judges each request and opens the upstream itself. That upstream must
// travel in the mTLS tunnel with the client's identity, as the client's own connection would: the
// allowed request gets the server's answer, the denied one node1's proxy's 403, an AF_PACKET
// capture of the underlay never sees the marker in the request path, node2's verdict judges the
// client's identity (encrypted); with node2's proxy gone the request fails (5xx) and nothing goes
// out in plain VXLAN (fail closed).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { agentPidFile } from '../../src/agent/paths.js';
import { proxyPid } from '../../src/agent/proxy-manager.js';
import { ok } from '../support/cli.js';
import { serverFromClient } from '../support/cluster-pods.js';
import { testLab } from '../support/lab-name.js';
import { EncryptedLab, NODE2_UL, sleep } from '../support/mtls-cluster.js';

const LAB = testLab('t-mtl7');
const MARKER = 'weir-l7-upstream-marker-5d81e2';

const lab = new EncryptedLab(LAB, {
  marker: MARKER,
  policies: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-egress-l7 }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toEndpoints: [{ matchLabels: { app: server } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET, path: "/allowed/.*" }] }
---${serverFromClient}`,
});
const { tunnelStatus, flows, capture } = lab;

/** A GET of `/<prefix>/<marker>` from client: body and status code. */
const get = (ip: string, prefix: string, timeoutS = 10) =>
  lab.get('default/client', ip, timeoutS, `${prefix}/`);

describe(
  "the proxy's own upstreams to another node's pod go through the mTLS tunnel",
  { timeout: 600_000 },
  () => {
    before(lab.up);
    after(lab.down);

    it('the allowed request is answered through the tunnel, the denied one gets 403; no plaintext', async () => {
      const server = lab.ips.server ?? '';
      // node1's proxy listens once it has the policy: wait for the first answer.
      let allowed = '';
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && !allowed.endsWith(' 200')) {
        allowed = await get(server, 'allowed');
        if (!allowed.endsWith(' 200')) await sleep(500);
      }
      assert.ok(allowed.endsWith(' 200'), `the allowed GET is answered: ${allowed}`);
      const before = (await tunnelStatus('node1'))?.proxyUpstreams.carried ?? 0;
      const cap = await capture();
      let again = '';
      let denied = '';
      try {
        again = await get(server, 'allowed');
        denied = await get(server, 'denied');
        await sleep(300);
      } finally {
        const seen = await cap.stop();
        assert.ok(again.startsWith('default/server') && again.endsWith(' 200'), `allowed: ${again}`);
        assert.ok(denied.endsWith(' 403'), `denied by node1's proxy: ${denied}`);
        assert.ok(
          seen.tunnelFrames > 0,
          `the upstream went in the tunnel (TCP 15008): ${JSON.stringify(seen)}`,
        );
        assert.equal(seen.markerFrames, 0, `no frame holds the request path: ${JSON.stringify(seen)}`);
        assert.equal(seen.vxlanFrames, 0, `nothing in plain VXLAN: ${JSON.stringify(seen)}`);
      }
      // The control: UDP keeps plain VXLAN, so a datagram with the marker is seen (from `other`: the
      // client's egress allows only TCP 8080): the capture would have caught a plaintext request.
      const control = await capture();
      try {
        for (let i = 0; i < 3; i++) {
          await ok(
            ['lab', 'exec', 'default/other', '--', 'bash', '-c', `echo ${MARKER} > /dev/udp/${server}/9999`],
            LAB,
          );
          await sleep(200);
        }
        await sleep(300);
      } finally {
        const seen = await control.stop();
        assert.ok(
          seen.markerFrames > 0 && seen.vxlanFrames > 0,
          `the UDP control was seen: ${JSON.stringify(seen)}`,
        );
      }
      const t1 = await tunnelStatus('node1');
      assert.ok(
        (t1?.proxyUpstreams.carried ?? 0) > before,
        `node1's proxy handed its upstream to the tunnel: ${JSON.stringify(t1?.proxyUpstreams)}`,
      );
      assert.ok(
        t1?.tunnels.some((t) => t.src === lab.ids.client && t.peer === NODE2_UL),
        `node1 holds a tunnel of the client's identity to node2: ${JSON.stringify(t1?.tunnels)}`,
      );
      // node2 judged the identity the certificate proved, and says the connection was encrypted.
      const f2 = await flows('node2');
      assert.ok(
        f2.some(
          (f) =>
            f.weir.type === 'policy-verdict' &&
            f.source.identity === lab.ids.client &&
            f.destination.pod_name === 'server' &&
            f.verdict === 'FORWARDED' &&
            f.IP?.encrypted === true,
        ),
        "node2's ingress verdict judged the client's identity, encrypted",
      );
      // node1's proxy judged both requests (its L7 records).
      const l7 = (await flows('node1')).filter((f) => f.l7?.http?.url?.includes(MARKER));
      assert.ok(
        l7.some((f) => f.verdict === 'FORWARDED'),
        'node1 forwarded the allowed request',
      );
      assert.ok(
        l7.some((f) => f.verdict === 'DROPPED'),
        'node1 denied the other',
      );
    });

    it("fails closed: with node2's proxy gone the upstream fails, nothing goes out in plain VXLAN", async () => {
      const server = lab.ips.server ?? '';
      const agent2 = Number(readFileSync(agentPidFile(LAB, 'node2'), 'utf8'));
      const proxy2 = proxyPid(LAB, 'node2');
      assert.ok(agent2 && proxy2, 'node2 runs an agent and a proxy');
      const cap = await capture();
      let whileDown = '';
      process.kill(agent2, 'SIGSTOP');
      try {
        process.kill(proxy2, 'SIGKILL');
        while (proxyPid(LAB, 'node2') === proxy2) await sleep(50);
        whileDown = await get(server, 'allowed', 12);
      } finally {
        process.kill(agent2, 'SIGCONT');
      }
      const seen = await cap.stop();
      assert.match(whileDown, / 5\d\d$/, `the upstream failed: ${whileDown}`);
      assert.equal(seen.markerFrames, 0, `no plaintext: ${JSON.stringify(seen)}`);
      assert.equal(seen.vxlanFrames, 0, `no plain VXLAN: ${JSON.stringify(seen)}`);
      // node2's agent restarts its proxy; the upstream goes through a new tunnel.
      let back = '';
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline && !back.endsWith(' 200')) {
        await sleep(500);
        back = await get(server, 'allowed', 5);
      }
      assert.ok(back.endsWith(' 200'), `answered again after node2's proxy restarted: ${back}`);
    });
  },
);
