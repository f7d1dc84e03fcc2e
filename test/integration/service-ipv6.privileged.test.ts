// IPv6 and dual-stack Services end to end: a dual-stack lab (pods with an IPv6 address from
// podCIDRv6), the agent, the socket LB programs (connect6/sendmsg6/recvmsg6/getpeername6) and real
// connections from a pod. An IPv6-only ClusterIP over TCP and UDP with the ClusterIP as the peer the
// client sees, a PreferDualStack service whose IPv4 and IPv6 ClusterIPs both work, scale up/down
// seen in the IPv6 backends, immediate refusal without backends, refused bad manifests, and an
// agent without an IPv6 service CIDR (RequireDualStack refused, PreferDualStack single-stack).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, stopAgent } from '../../src/agent/spawn.js';
import type { V1List, V1Pod, V1Service } from '../../src/k8s/index.js';
import { Lab } from '../../src/lab/index.js';
import { hostRoutingAgent } from '../support/host-routing.js';
import { cli, ok } from '../support/cli.js';
import {
  bodies,
  connect as clientConnect,
  peerText,
  type Proto,
  servicePod,
} from '../support/service-client.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-svc6');

const pod = (name: string, labels: string) => servicePod('svc6', name, labels);

const base = `
apiVersion: v1
kind: Namespace
metadata: { name: svc6 }
---
${pod('web-a', 'app: web')}
${pod('web-b', 'app: web')}
${pod('client', 'role: client')}
apiVersion: v1
kind: Service
metadata: { name: web6, namespace: svc6 }
spec:
  ipFamilies: [IPv6]
  selector: { app: web }
  ports:
  - { name: http, port: 80, targetPort: http }
  - { name: dns, port: 53, protocol: UDP, targetPort: dns }
---
apiVersion: v1
kind: Service
metadata: { name: dual, namespace: svc6 }
spec:
  ipFamilyPolicy: PreferDualStack
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: empty6, namespace: svc6 }
spec:
  ipFamilies: [IPv6]
  selector: { app: nothing }
  ports: [{ port: 80, targetPort: 8080 }]
`;

/** The test's client (test/support/service-client.ts) in pod svc6/client. */
const connect = (
  proto: Proto,
  ip: string,
  port: number,
  n: number,
  timeoutMs = 1000,
  via: 'socket' | 'tc' = 'socket',
) => clientConnect(LAB, 'svc6/client', proto, ip, port, n, { timeoutMs, via });

interface Frontend {
  frontend: string;
  service: string;
  backends: { address: string; state: string }[];
}

describe('services over IPv6 and dual-stack: socket load balancing from pods', () => {
  let dir: string;
  const file = (name: string) => join(dir, name);
  const apply = async (name: string, text: string) => {
    await writeFile(file(name), text);
    await ok(['apply', '-f', file(name)], LAB);
  };
  /** The spec of a service as `weir get svc NAME -o json` prints it (a v1 Service). */
  const svc = async (name: string) => {
    const s = JSON.parse(await ok(['get', 'svc', name, '-n', 'svc6', '-o', 'json'], LAB)) as V1Service;
    assert.deepEqual([s.kind, s.metadata.name], ['Service', name]);
    const { clusterIP = '', clusterIPs = [], ipFamilies = [] } = s.spec;
    return { ...s.spec, clusterIP, clusterIPs, ipFamilies };
  };
  const frontends = async () => JSON.parse(await ok(['service', 'list', '-o', 'json'], LAB)) as Frontend[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-svc6-test-'));
    await cli(['lab', 'down'], LAB);
    await writeFile(
      file('lab.yaml'),
      `name: ${LAB}\nnodes: [{ name: node1, podCIDR: 10.244.0.0/24, podCIDRv6: 'fd00:10:244::/64' }]\n`,
    );
    await ok(['lab', 'up', '-f', file('lab.yaml')], LAB);
    await apply('base.yaml', base);
  });

  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('allocates IPv6 and dual-stack ClusterIPs and lists their frontends', async () => {
    const web6 = await svc('web6');
    assert.match(web6.clusterIP, /^fd00:10:96::[0-9a-f]{1,4}$/);
    assert.deepEqual(
      [web6.clusterIPs, web6.ipFamilies, web6.ipFamilyPolicy],
      [[web6.clusterIP], ['IPv6'], 'SingleStack'],
    );
    const dual = await svc('dual');
    assert.deepEqual([dual.ipFamilies, dual.ipFamilyPolicy], [['IPv4', 'IPv6'], 'PreferDualStack']);
    assert.match(dual.clusterIPs[0] ?? '', /^10\.96\.\d+\.\d+$/);
    assert.match(dual.clusterIPs[1] ?? '', /^fd00:10:96::[0-9a-f]{1,4}$/);
    assert.equal(dual.clusterIP, dual.clusterIPs[0], 'CLUSTER-IP is the primary (first) address');
    const table = await ok(['get', 'svc', '-n', 'svc6'], LAB);
    assert.match(
      table,
      new RegExp(`\\ndual\\s+ClusterIP\\s+${dual.clusterIP.replace(/\./g, '\\.')}\\s+80/TCP`),
    );
    const fes = await frontends();
    const http = fes.find((f) => f.frontend === `[${web6.clusterIP}]:80/TCP`);
    assert.deepEqual(
      http?.backends.map((b) => b.state),
      ['active', 'active'],
    );
    assert.ok(
      http?.backends.every((b) => /^\[fd00:10:244::[0-9a-f]+\]:8080\/TCP$/.test(b.address)),
      JSON.stringify(http),
    );
    const v4 = fes.find((f) => f.frontend === `${dual.clusterIPs[0]}:80/TCP`);
    assert.ok(
      v4?.backends.every((b) => /^10\.244\.0\.\d+:8080\/TCP$/.test(b.address)),
      'the IPv4 frontend has IPv4 backends only',
    );
    const text = await ok(['service', 'list'], LAB);
    assert.match(
      text,
      /\[fd00:10:96::[0-9a-f]+\]:53\/UDP[^\n]*=> \[fd00:10:244::[0-9a-f]+\]:5353\/UDP \(active\)/,
    );
  });

  it('balances TCP through the IPv6 ClusterIP; the client sees the ClusterIP as its peer', async () => {
    const ip = (await svc('web6')).clusterIP;
    const tries = await connect('tcp', ip, 80, 16);
    assert.ok(
      tries.every((t) => !t.error && t.peer === peerText(ip, 80)),
      JSON.stringify(tries),
    );
    assert.deepEqual(bodies(tries), ['svc6/web-a', 'svc6/web-b']);
  });

  it('answers UDP from the IPv6 ClusterIP (named targetPort)', async () => {
    const ip = (await svc('web6')).clusterIP;
    const tries = await connect('udp', ip, 53, 4);
    assert.ok(
      tries.every((t) => t.peer === peerText(ip, 53) && t.body === 'hello'),
      JSON.stringify(tries),
    );
  });

  it('serves a dual-stack service on both its IPv4 and IPv6 ClusterIPs', async () => {
    const { clusterIPs } = await svc('dual');
    assert.equal(clusterIPs.length, 2);
    for (const ip of clusterIPs) {
      const tries = await connect('tcp', ip, 80, 16);
      assert.ok(
        tries.every((t) => !t.error && t.peer === peerText(ip, 80)),
        `${ip}: ${JSON.stringify(tries)}`,
      );
      assert.deepEqual(bodies(tries), ['svc6/web-a', 'svc6/web-b'], ip);
    }
  });

  it('refuses at once through an IPv6 ClusterIP without backends', async () => {
    const [t] = await connect('tcp', (await svc('empty6')).clusterIP, 80, 1, 3000);
    assert.ok(t?.error === 'ECONNREFUSED' || t?.error === 'EHOSTUNREACH', JSON.stringify(t));
    assert.ok((t?.ms ?? 9999) < 500, `refused after ${t?.ms} ms`);
  });

  it('translates IPv6 at tc what no socket hook saw: TCP, UDP, the ClusterIP as peer, refusal', async () => {
    const ip = (await svc('web6')).clusterIP;
    const tries = await connect('tcp', ip, 80, 12, 1000, 'tc');
    assert.ok(
      tries.every((t) => !t.error && t.peer === peerText(ip, 80)),
      JSON.stringify(tries),
    );
    // Random picks: 12 connections all on one of two backends is 2^-11.
    assert.deepEqual(bodies(tries), ['svc6/web-a', 'svc6/web-b']);
    const dgrams = await connect('udpc', ip, 53, 3, 1000, 'tc');
    assert.ok(
      dgrams.every((t) => t.peer === peerText(ip, 53) && t.body === 'hello'),
      JSON.stringify(dgrams),
    );
    const [refused] = await connect('tcp', (await svc('empty6')).clusterIP, 80, 1, 3000, 'tc');
    assert.equal(refused?.error, 'ECONNREFUSED', JSON.stringify(refused));
    assert.ok((refused?.ms ?? 9999) < 500, `refused after ${refused?.ms} ms`);
  });

  it('follows scale up and down in the IPv6 backends', async () => {
    const ip = (await svc('web6')).clusterIP;
    const http = async () =>
      (await frontends())
        .find((f) => f.frontend === `[${ip}]:80/TCP`)
        ?.backends.map((b) => b.address)
        .sort() ?? [];
    const pods = async () =>
      new Map(
        (JSON.parse(await ok(['get', 'pods', '-n', 'svc6', '-o', 'json'], LAB)) as V1List<V1Pod>).items.map(
          (p) => [
            p.metadata.name,
            `[${p.status.podIPs.find((a) => a.ip.includes(':'))?.ip ?? '?'}]:8080/TCP`,
          ],
        ),
      );
    await apply('web-c.yaml', pod('web-c', 'app: web'));
    let addr = await pods();
    assert.deepEqual(await http(), [addr.get('web-a'), addr.get('web-b'), addr.get('web-c')].sort());
    const up = await connect('tcp', ip, 80, 30);
    assert.deepEqual(bodies(up), ['svc6/web-a', 'svc6/web-b', 'svc6/web-c']);
    await writeFile(file('web-a.yaml'), pod('web-a', 'app: web'));
    await ok(['delete', '-f', file('web-a.yaml')], LAB);
    addr = await pods();
    assert.deepEqual(await http(), [addr.get('web-b'), addr.get('web-c')].sort());
    const down = await connect('tcp', ip, 80, 16);
    assert.deepEqual(bodies(down), ['svc6/web-b', 'svc6/web-c']);
  });

  it('refuses IPv6 manifests it cannot honour, naming file, object and field, applying nothing', async () => {
    const bad = (spec: string) => `
apiVersion: v1
kind: Service
metadata: { name: bad, namespace: svc6 }
spec: { ${spec}, ports: [{ port: 80 }] }
`;
    const refused = async (spec: string, pattern: RegExp) => {
      await writeFile(file('bad.yaml'), bad(spec));
      const out = await cli(['apply', '-f', file('bad.yaml')], LAB);
      assert.notEqual(out.code, 0, spec);
      assert.match(out.stderr, pattern);
    };
    await refused(
      "clusterIP: 'fd00:99::5'",
      /bad\.yaml.*Service svc6\/bad.*spec\.clusterIP.*not in the service CIDR fd00:10:96::\/112/s,
    );
    await refused(
      `clusterIP: '${(await svc('web6')).clusterIP}'`,
      /Service svc6\/bad.*spec\.clusterIP.*already allocated to another service/s,
    );
    await refused(
      "clusterIP: 'fd00:10:96::77', ipFamilies: [IPv4]",
      /spec\.ipFamilies\[0\].*does not match/s,
    );
    await refused('ipFamilies: [IPv4, IPv6]', /spec\.ipFamilyPolicy.*PreferDualStack or RequireDualStack/s);
    const names = (
      JSON.parse(await ok(['get', 'svc', '-n', 'svc6', '-o', 'json'], LAB)) as V1List<V1Service>
    ).items.map((s) => s.metadata.name);
    assert.ok(!names.includes('bad'));
  });

  it('without an IPv6 service CIDR refuses RequireDualStack and gives PreferDualStack IPv4 only', async () => {
    await stopAgent(LAB);
    const node = await (await Lab.open(LAB)).node();
    await startAgent({
      ...hostRoutingAgent(),
      lab: LAB,
      nodeNetns: node.netns,
      agentArgs: ['--service-cidr-v6', 'none'],
    });
    // The IPv6 entries read back from the maps are what the model wants: the restart writes nothing.
    const status = JSON.parse(await ok(['agent', 'status', '-o', 'json'], LAB)) as {
      regenerations: { lastUpserts: number; lastDeletes: number };
    };
    assert.deepEqual([status.regenerations.lastUpserts, status.regenerations.lastDeletes], [0, 0]);
    const policy = (name: string, p: string) => `
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: svc6 }
spec: { ipFamilyPolicy: ${p}, selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }
`;
    await writeFile(file('require.yaml'), policy('require', 'RequireDualStack'));
    const out = await cli(['apply', '-f', file('require.yaml')], LAB);
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /Service svc6\/require.*spec\.ipFamilyPolicy.*no IPv6 service CIDR/s);
    await apply('prefer.yaml', policy('prefer', 'PreferDualStack'));
    const prefer = await svc('prefer');
    assert.deepEqual([prefer.ipFamilies, prefer.clusterIPs.length], [['IPv4'], 1]);
    const tries = await connect('tcp', prefer.clusterIP, 80, 4);
    assert.ok(
      tries.every((t) => /^svc6\/web-[bc]$/.test(t.body ?? '')),
      JSON.stringify(tries),
    );
  });
});
