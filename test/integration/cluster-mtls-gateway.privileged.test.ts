// Encryption between nodes for the node's own upstreams (docs/mtls.md, "The node's own upstreams"):
// with `--encryption mtls`, a Gateway on node1 routing to a backend pod on node2 connects from
// node1's own address, which used to cross in plain VXLAN. Now that upstream travels in the mTLS
// tunnel presented with node1's node SVID (spiffe://cluster.local/node/node1): the request (a
// marker in its path) is answered by the backend, an AF_PACKET capture of the underlay sees tunnel
// frames and neither the marker nor any VXLAN frame, node2 judges it as remote-node (as over plain
// VXLAN) with `IP.encrypted`; node2's tunnel listener refuses a node SVID from another node's
// address, one naming another node, and a forwarded source that is not the node's own address;
// the CA refuses a node SVID to a node without a record; with node2's proxy gone the request fails
// (5xx) and nothing goes out plain (fail closed).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NodeCert } from '../../src/agent/auth.js';
import { AgentClient } from '../../src/agent/client.js';
import { agentSocket } from '../../src/agent/paths.js';
import { makeCsr } from '../../src/auth/ca.js';
import { cli, lastJson, ok } from '../support/cli.js';
import { inNode } from '../support/cluster-nodes.js';
import { startEchoPods } from '../support/echo-pods.js';
import { testLab } from '../support/lab-name.js';
import { startInPod } from '../support/lines.js';
import {
  EncryptedLab,
  NODE2_UL,
  encryptedToServer,
  labCa,
  sleep,
  tunnelDialer,
} from '../support/mtls-cluster.js';
import { lastOf } from '../support/poll.js';

const LAB = testLab('t-mtgw');
const MARKER = 'weir-gw-upstream-marker-7c30a9';
const REMOTE_NODE = 6;

const policies = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-from-nodes }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEntities: [remote-node]
      toPorts:
        - ports:
            - { port: "8080", protocol: TCP }
            - { port: "3001", protocol: TCP }
            - { port: "5353", protocol: TCP }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: other-dns }
spec:
  endpointSelector: { matchLabels: { app: other } }
  egress:
    - toEndpoints: [{ matchLabels: { app: server } }]
      toPorts:
        - ports: [{ port: "5353", protocol: ANY }]
          rules: { dns: [{ matchPattern: "*.example.com" }] }
---
apiVersion: v1
kind: Service
metadata: { name: server-h2 }
spec:
  selector: { app: server }
  ports: [{ port: 3001, targetPort: 3001, protocol: TCP, appProtocol: kubernetes.io/h2c }]
---
apiVersion: v1
kind: Service
metadata: { name: server }
spec: { selector: { app: server }, ports: [{ port: 8080, targetPort: 8080, protocol: TCP }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: weir }
spec: { controllerName: weir.dev/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge }
spec: { gatewayClassName: weir, listeners: [{ name: web, port: 80, protocol: HTTP }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web }
spec:
  parentRefs: [{ name: edge }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /h2 } }]
      backendRefs: [{ name: server-h2, port: 3001 }]
    - backendRefs: [{ name: server, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: server, port: 8080 }]
  rules: [{ backendRefs: [{ name: server, port: 8080 }] }]
`;

// Run in the server pod (node2): a DNS server over TCP on 5353 answering every A query with
// 192.0.2.99 (the DNS proxy's TCP upstream goes to it).
const dnsServerScript = `
const net = require('net');
net.createServer((s) => {
  let buf = Buffer.alloc(0);
  s.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
      buf = buf.subarray(2 + q.length);
      let i = 12;
      while (q[i] !== 0) i += q[i] + 1;
      const question = q.subarray(12, i + 5);
      const head = Buffer.alloc(12);
      head.writeUInt16BE(q.readUInt16BE(0), 0);
      head.writeUInt16BE(0x8180, 2);
      head.writeUInt16BE(1, 4);
      head.writeUInt16BE(1, 6);
      const rr = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 99]);
      const msg = Buffer.concat([head, question, rr]);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(msg.length);
      s.write(Buffer.concat([len, msg]));
    }
  });
  s.on('error', () => {});
}).listen(5353, () => console.log('ready'));
`;

// Run in a node's namespace: dials node2's tunnel listener with node SVIDs the test had the CA
// sign (its key file is root's), as a rogue would.
const rogueScript = (o: { server: string; client: string; node1Ip: string }) => `
${tunnelDialer}
${labCa(LAB)}
const serverId = Number(process.argv[2]);
const dialAs = (svid, sniNode, fwd) =>
  dial(svid, 'dst-' + serverId + '.node-' + sniNode + '.weir-hbone', '${o.server}:8080', fwd + ':20999', trustLab);
const node1 = await real.issueNode('cluster.local', 'node1', 600);
const out = {};
if (process.argv[3] === 'node1') {
  out.genuine = await dialAs(node1, 'node1', '${o.node1Ip}');
  out.otherNode = await dialAs(node1, 'node2', '${o.node1Ip}');
  out.podSource = await dialAs(node1, 'node1', '${o.client}');
  const rogue = (await CertificateAuthority.create('rogue')).ca;
  out.rogueCa = await dialAs(await rogue.issueNode('cluster.local', 'node1', 600), 'node1', '${o.node1Ip}');
} else {
  out.wrongAddress = await dialAs(node1, 'node1', '${o.node1Ip}');
}
console.log(JSON.stringify(out));
`;

const lab = new EncryptedLab(LAB, { marker: MARKER, policies });
const { onNode, tunnelStatus, flows, capture, inTunnel } = lab;

describe(
  "the Gateway's upstream to another node's pod goes through the mTLS tunnel",
  { timeout: 600_000 },
  () => {
    let dir = '';
    let ips: Record<string, string> = {};
    let address = '';
    let serverId = 0;
    let clusterIP = '';
    const servers: ChildProcess[] = [];

    const dig = async (timeS = 5) => {
      const r = await cli(
        [
          'lab',
          'exec',
          'default/other',
          '--',
          'dig',
          '+tcp',
          '+tries=1',
          `+time=${timeS}`,
          '-p',
          '5353',
          `@${ips.server ?? ''}`,
          `${MARKER}.example.com`,
        ],
        LAB,
      );
      const text = r.stdout + r.stderr;
      return { status: /status: (\w+)/.exec(text)?.[1] ?? 'NONE', text };
    };

    /** A GET of `/mesh/<marker>` through a mesh route from client (node1) to the server Service's cluster IP. */
    const meshGet = () => lab.get('default/client', clusterIP, 10, 'mesh/');

    /** A GET of `/<prefix>/<marker>` to the Gateway from node1's namespace: body and status code. */
    const get = async (timeoutS = 10, prefix = 'gw'): Promise<string> => {
      const url = `http://${address}/${prefix}/${MARKER}`;
      const r = await inNode(
        LAB,
        'node1',
        ['curl', '-s', '-m', String(timeoutS), '-w', ' %{http_code}', url],
        {
          check: false,
        },
      );
      return r.stdout.trim();
    };
    const answered = (r: string) => r.endsWith(' 200');

    before(async () => {
      await lab.up();
      dir = lab.dir;
      ips = lab.ips;
      serverId = lab.ids.server;
      assert.ok(serverId, 'the server has an identity');
      const deadline = Date.now() + 60_000;
      while (!address && Date.now() < deadline) {
        const gw = JSON.parse(await ok(['get', 'gateway', 'edge', '-o', 'json'], LAB)) as {
          status?: { addresses?: { value: string }[] };
        };
        address = gw.status?.addresses?.[0]?.value ?? '';
        if (!address) await sleep(500);
      }
      assert.match(address, /^198\.51\.100\.\d+$/, 'the Gateway has an address');
      const svcs = JSON.parse(await ok(['get', 'svc', '-o', 'json'], LAB)) as {
        items: { metadata: { name: string }; spec: { clusterIP: string } }[];
      };
      clusterIP = svcs.items.find((x) => x.metadata.name === 'server')?.spec.clusterIP ?? '';
      assert.ok(clusterIP, 'the server Service has a cluster IP');
      // h2c on 3001 (the conformance echo: HTTP/1.1 on 3000, h2c on 3001), DNS over TCP on 5353.
      servers.push(...(await startEchoPods(LAB, 'default', ['server'], 3000)));
      servers.push(
        await startInPod(LAB, 'default/server', [process.execPath, '-e', dnsServerScript], 'the DNS server'),
      );
    });

    after(async () => {
      for (const s of servers) s.kill('SIGKILL');
      await lab.down();
    });

    it('each node holds a node SVID; the CA refuses one to a node without a record', async () => {
      for (const node of ['node1', 'node2']) {
        const c = JSON.parse(
          await ok(['identity', 'cert', 'get', '--node', node, '-o', 'json'], LAB),
        ) as NodeCert;
        assert.equal(c.node, node);
        assert.equal(c.spiffeId, `spiffe://cluster.local/node/${node}`);
        assert.match(c.summary.keyAlgorithm, /P-256|prime256v1|EC/i, JSON.stringify(c.summary));
        assert.match(c.certPem, /BEGIN CERTIFICATE/);
      }
      const client = new AgentClient(agentSocket(LAB), 10_000);
      const { csrPem } = await makeCsr('cluster.local', { node: 'node9' });
      await assert.rejects(
        client.call('POST', '/v1/auth/node-svids', { node: 'node9', csrPem, ttlSeconds: 600 }),
        (err: Error & { code?: string }) =>
          err.code === 'ERR_AUTH_CSR_UNKNOWN_NODE' || /ERR_AUTH_CSR_UNKNOWN_NODE/.test(err.message),
      );
      const metrics = await onNode('node1', ['agent', 'metrics']);
      assert.match(metrics, /weir_auth_svid_requests_total\{result="unknown-node"\} [1-9]/);
    });

    it("the Gateway's request is answered through the tunnel; no plaintext; node2 judges remote-node, encrypted", async () => {
      const first = await lastOf(() => get(), answered, 60_000);
      assert.ok(first.endsWith(' 200'), `the Gateway's request is answered: ${first}`);
      const before = (await tunnelStatus('node1'))?.nodeUpstreams.carried ?? 0;
      // Connection: close on the client side only; the gateway's pooled upstream may be reused,
      // so two requests, the second on a fresh pool entry or the same tunnel stream.
      const again = await inTunnel("the Gateway's upstream", () => get());
      assert.ok(
        again.startsWith('default/server') && again.endsWith(' 200'),
        `answered by the backend: ${again}`,
      );
      const t1 = await tunnelStatus('node1');
      assert.equal(t1?.nodeSvid, true, "node1's proxy holds its node SVID");
      assert.ok(
        (t1?.nodeUpstreams.carried ?? 0) >= before,
        `node1's gateway upstreams were carried: ${JSON.stringify(t1?.nodeUpstreams)}`,
      );
      assert.ok((t1?.nodeUpstreams.carried ?? 0) > 0, JSON.stringify(t1?.nodeUpstreams));
      assert.ok(
        t1?.tunnels.some((t) => t.node === 'node1' && t.src === REMOTE_NODE && t.peer === NODE2_UL),
        `node1 holds a node tunnel to node2: ${JSON.stringify(t1?.tunnels)}`,
      );
      const f2 = await flows('node2');
      assert.ok(
        f2.some((f) => encryptedToServer(f, REMOTE_NODE) && f.verdict === 'FORWARDED'),
        `node2's ingress verdict judged remote-node, encrypted: ${JSON.stringify(
          f2.filter((f) => f.destination.pod_name === 'server').slice(-3),
        )}`,
      );
    });

    it('a mesh route (GAMMA) and an h2c backend go through the tunnel too', async () => {
      const mesh = await lastOf(meshGet, answered, 30_000);
      assert.ok(mesh.endsWith(' 200'), `the mesh route answers: ${mesh}`);
      const before = (await tunnelStatus('node1'))?.nodeUpstreams.carried ?? 0;
      const again = await inTunnel('mesh route', meshGet);
      const afterMesh = (await tunnelStatus('node1'))?.nodeUpstreams.carried ?? 0;
      assert.ok(afterMesh > before, `the mesh route's upstream was node1's own, carried: ${afterMesh}`);
      assert.ok(again.startsWith('default/server') && again.endsWith(' 200'), `mesh: ${again}`);
      const h2 = await inTunnel('h2c backend', () => get(10, 'h2'));
      assert.ok(h2.endsWith(' 200'), `the h2c backend answers through the Gateway: ${h2}`);
      assert.match(h2, /"pod":\s*"server"/, h2);
      const t1 = await tunnelStatus('node1');
      assert.ok((t1?.nodeUpstreams.carried ?? 0) > afterMesh, JSON.stringify(t1?.nodeUpstreams));
    });

    it("the DNS proxy's TCP upstream to a DNS server pod of node2 goes through the tunnel", async () => {
      const first = await lastOf(
        () => dig(),
        (d) => d.status === 'NOERROR',
        30_000,
      );
      assert.equal(first.status, 'NOERROR', first.text);
      assert.match(first.text, /192\.0\.2\.99/, first.text);
      const carried = (await tunnelStatus('node1'))?.nodeUpstreams.carried ?? 0;
      const again = await inTunnel('DNS over TCP', () => dig());
      const t1 = await tunnelStatus('node1');
      assert.ok(
        (t1?.nodeUpstreams.carried ?? 0) > carried,
        `the DNS proxy's upstream was carried: ${JSON.stringify(t1?.nodeUpstreams)}`,
      );
      assert.equal(again.status, 'NOERROR', again.text);
      const f2 = await flows('node2');
      assert.ok(
        f2.some((f) => encryptedToServer(f, REMOTE_NODE) && f.l4?.TCP?.destination_port === 5353),
        'node2 judged the DNS upstream as remote-node, encrypted',
      );
    });

    it("node2 refuses a node SVID from another node's address, naming another node, or with a forwarded source not the node's", async () => {
      const before = (await tunnelStatus('node2'))?.refused;
      const script = join(dir, 'rogue.mjs');
      await writeFile(
        script,
        rogueScript({ server: ips.server ?? '', client: ips.client ?? '', node1Ip: '10.244.0.1' }),
      );
      const dialFrom = async (node: string) =>
        lastJson<Record<string, string>>(
          (await inNode(LAB, node, [process.execPath, script, String(serverId), node])).stdout,
        );
      const fromNode1 = await dialFrom('node1');
      const fromNode2 = await dialFrom('node2');
      assert.equal(
        fromNode1.genuine,
        'status 200',
        `node1's SVID from node1 is served: ${JSON.stringify(fromNode1)}`,
      );
      assert.notEqual(fromNode1.otherNode, 'status 200', JSON.stringify(fromNode1));
      assert.equal(fromNode1.podSource, 'status 403', JSON.stringify(fromNode1));
      assert.notEqual(fromNode1.rogueCa, 'status 200', JSON.stringify(fromNode1));
      assert.notEqual(fromNode2.wrongAddress, 'status 200', JSON.stringify(fromNode2));
      const after = (await tunnelStatus('node2'))?.refused;
      assert.ok(before && after);
      assert.ok(
        after.untrusted > before.untrusted,
        `a node SVID of another CA counted untrusted: ${JSON.stringify(after)}`,
      );
      assert.ok(
        after['wrong-identity'] > before['wrong-identity'],
        `another node's name counted: ${JSON.stringify(after)}`,
      );
      assert.ok(
        after['spoofed-source'] >= before['spoofed-source'] + 2,
        `a wrong address and a pod source counted spoofed-source: ${JSON.stringify(after)}`,
      );
    });

    it("fails closed: with node2's proxy gone the Gateway answers 5xx, nothing goes out in plain VXLAN", async () => {
      const cap = await capture();
      const {
        value: [whileDown, dnsDown],
      } = await lab.withProxyDown('node2', async () => [await get(12), await dig(8)] as const);
      const seen = await cap.stop();
      assert.match(whileDown, / 5\d\d$/, `the upstream failed: ${whileDown}`);
      assert.equal(dnsDown.status, 'SERVFAIL', `the DNS proxy answered SERVFAIL: ${dnsDown.text}`);
      assert.equal(seen.markerFrames, 0, `no plaintext: ${JSON.stringify(seen)}`);
      assert.equal(seen.vxlanFrames, 0, `no plain VXLAN: ${JSON.stringify(seen)}`);
      const back = await lastOf(() => get(5), answered, 90_000, { waitFirst: true });
      assert.ok(back.endsWith(' 200'), `answered again after node2's proxy restarted: ${back}`);
    });
  },
);
