// Encryption between nodes for the node proxy's own upstreams (docs/mtls.md, "The proxy's own
// upstreams"): with `--encryption mtls`, node1's client has an egress HTTP rule towards node2's
// server, so node1's proxy judges each request and opens the upstream itself. That upstream must
// travel in the mTLS tunnel with the client's identity, as the client's own connection would: the
// allowed request gets the server's answer, the denied one node1's proxy's 403, an AF_PACKET
// capture of the underlay never sees the marker in the request path, node2's verdict judges the
// client's identity (encrypted); with node2's proxy gone the request fails (5xx) and nothing goes
// out in plain VXLAN (fail closed).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ok } from '../support/cli.js';
import { serverFromClient } from '../support/cluster-pods.js';
import { testLab } from '../support/lab-name.js';
import { EncryptedLab, NODE2_UL, encryptedToServer, sleep } from '../support/mtls-cluster.js';
import { lastOf } from '../support/poll.js';

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
const { tunnelStatus, flows, capture, inTunnel } = lab;

/** A GET of `/<prefix>/<marker>` from client: body and status code. */
const get = (ip: string, prefix: string, timeoutS = 10) =>
  lab.get('default/client', ip, timeoutS, `${prefix}/`);
const answered = (r: string) => r.endsWith(' 200');

describe(
  "the proxy's own upstreams to another node's pod go through the mTLS tunnel",
  { timeout: 600_000 },
  () => {
    before(lab.up);
    after(lab.down);

    it('the allowed request is answered through the tunnel, the denied one gets 403; no plaintext', async () => {
      const server = lab.ips.server ?? '';
      // node1's proxy listens once it has the policy: wait for the first answer.
      const allowed = await lastOf(() => get(server, 'allowed'), answered, 60_000);
      assert.ok(allowed.endsWith(' 200'), `the allowed GET is answered: ${allowed}`);
      const before = (await tunnelStatus('node1'))?.proxyUpstreams.carried ?? 0;
      const [again, denied] = await inTunnel("node1's proxy's upstream", async () => [
        await get(server, 'allowed'),
        await get(server, 'denied'),
      ]);
      assert.ok(again.startsWith('default/server') && again.endsWith(' 200'), `allowed: ${again}`);
      assert.ok(denied.endsWith(' 403'), `denied by node1's proxy: ${denied}`);
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
        f2.some((f) => encryptedToServer(f, lab.ids.client) && f.verdict === 'FORWARDED'),
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
      const cap = await capture();
      const { value: whileDown } = await lab.withProxyDown('node2', () => get(server, 'allowed', 12));
      const seen = await cap.stop();
      assert.match(whileDown, / 5\d\d$/, `the upstream failed: ${whileDown}`);
      assert.equal(seen.markerFrames, 0, `no plaintext: ${JSON.stringify(seen)}`);
      assert.equal(seen.vxlanFrames, 0, `no plain VXLAN: ${JSON.stringify(seen)}`);
      // node2's agent restarts its proxy; the upstream goes through a new tunnel.
      const back = await lastOf(() => get(server, 'allowed', 5), answered, 90_000, { waitFirst: true });
      assert.ok(back.endsWith(' 200'), `answered again after node2's proxy restarted: ${back}`);
    });
  },
);
