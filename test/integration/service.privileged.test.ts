// Services without kube-proxy, end to end: a real lab, the agent, the socket LB programs and real
// connections from pods (`weir lab exec`). ClusterIP over TCP and UDP with several and named ports,
// the ClusterIP as the peer the client sees, headless services, ClientIP affinity, scale up/down,
// a terminating backend that keeps its connection but gets no new one, immediate refusal without
// backends, Maglev, and policy enforced on the translated (pod -> backend) flow.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, stopAgent } from '../../src/agent/spawn.js';
import type { V1List, V1Service } from '../../src/k8s/index.js';
import { Lab } from '../../src/lab/index.js';
import { run } from '../../src/shared/exec.js';
import { hostRoutingAgent } from '../support/host-routing.js';
import { cli, ok } from '../support/cli.js';
import { bodies, connect as clientConnect, type Proto, servicePod } from '../support/service-client.js';
import { testLab } from '../support/lab-name.js';
import { Conversation } from '../support/lines.js';

const LAB = testLab('t-svc');

const pod = (name: string, labels: string, annotations = '') => servicePod('svc', name, labels, annotations);

const base = `
apiVersion: v1
kind: Namespace
metadata: { name: svc }
---
${pod('web-a', 'app: web')}
${pod('web-b', 'app: web')}
${pod('client', 'role: client')}
${pod('friend', 'role: friend')}
apiVersion: v1
kind: Service
metadata: { name: web, namespace: svc }
spec:
  selector: { app: web }
  ports:
  - { name: http, port: 80, targetPort: http }
  - { name: alt, port: 8081, targetPort: 8080 }
  - { name: dns, port: 53, protocol: UDP, targetPort: dns }
---
apiVersion: v1
kind: Service
metadata: { name: sticky, namespace: svc }
spec:
  selector: { app: web }
  sessionAffinity: ClientIP
  sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } }
  ports: [{ port: 80, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: headless, namespace: svc }
spec:
  clusterIP: None
  selector: { app: web }
  ports: [{ port: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: empty, namespace: svc }
spec:
  selector: { app: nothing }
  ports: [{ name: http, port: 80, targetPort: 8080 }, { name: dns, port: 53, protocol: UDP }]
`;

const nodePort = `
apiVersion: v1
kind: Service
metadata: { name: np, namespace: svc }
spec:
  type: NodePort
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }]
`;

/** A service without selector: its backends come from an EndpointSlice applied by hand. */
const manual = (ip: string) => `
apiVersion: v1
kind: Service
metadata: { name: manual, namespace: svc }
spec:
  ports: [{ name: http, port: 80 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: manual-1, namespace: svc, labels: { kubernetes.io/service-name: manual } }
addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: [${ip}] }]
`;

const webC = `${pod('web-c', 'app: web')}`;
const webA = `${pod('web-a', 'app: web')}`;
const term = (annotations: string) => `
${pod('term-1', 'app: term', annotations)}
apiVersion: v1
kind: Service
metadata: { name: term, namespace: svc }
spec:
  selector: { app: term }
  ports: [{ port: 80, targetPort: 8080 }]
`;
const term2 = pod('term-2', 'app: term');

const policy = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: web-from-friend, namespace: svc }
spec:
  podSelector: { matchLabels: { app: web } }
  policyTypes: [Ingress]
  ingress:
  - from: [{ podSelector: { matchLabels: { role: friend } } }]
`;

/** The test's client (test/support/service-client.ts) in pod `from` of this lab. */
const connect = (
  from: string,
  proto: Proto,
  ip: string,
  port: number,
  n: number,
  timeoutMs = 1000,
  via: 'socket' | 'tc' = 'socket',
) => clientConnect(LAB, from, proto, ip, port, n, { timeoutMs, via });

interface Frontend {
  id: number;
  frontend: string;
  service: string;
  backends: { id: number; address: string; state: string }[];
}

describe('services: socket load balancing from pods', () => {
  let dir: string;
  let conv: Conversation | undefined;
  const file = (name: string) => join(dir, name);
  const apply = async (name: string, text: string) => {
    await writeFile(file(name), text);
    await ok(['apply', '-f', file(name)], LAB);
  };
  const svcs = async () =>
    (JSON.parse(await ok(['get', 'svc', '-n', 'svc', '-o', 'json'], LAB)) as V1List<V1Service>).items;
  const ipOf = async (name: string) => {
    const s = (await svcs()).find((x) => x.metadata.name === name);
    assert.ok(s?.spec.clusterIP, `service ${name} is listed with a clusterIP`);
    return s.spec.clusterIP;
  };
  /** The ENDPOINTS column (the last) of `weir get svc NAME -o wide`: ready backends or pod IPs. */
  const endpointsOf = async (name: string) => {
    const [header, row] = (await ok(['get', 'svc', name, '-n', 'svc', '-o', 'wide'], LAB)).trim().split('\n');
    assert.match(header ?? '', /ENDPOINTS$/);
    const last = row?.split(/\s+/).at(-1) ?? '';
    return last === '<none>' ? [] : last.split(',');
  };
  const frontends = async () => JSON.parse(await ok(['service', 'list', '-o', 'json'], LAB)) as Frontend[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-svc-test-'));
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up'], LAB);
    await apply('base.yaml', base);
  });

  after(async () => {
    conv?.close();
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('allocates ClusterIPs and lists services, frontends and map entries', async () => {
    const list = await svcs();
    const web = list.find((s) => s.metadata.name === 'web')?.spec;
    assert.match(web?.clusterIP ?? '', /^10\.96\.\d+\.\d+$/);
    assert.deepEqual(web?.clusterIPs, [web?.clusterIP]);
    assert.deepEqual(
      web?.ports?.map((p) => `${p.port}/${p.protocol}`),
      ['80/TCP', '8081/TCP', '53/UDP'],
    );
    assert.equal(list.find((s) => s.metadata.name === 'headless')?.spec.clusterIP, 'None');
    assert.match(
      await ok(['get', 'svc', '-n', 'svc'], LAB),
      /\nweb\s+ClusterIP\s+10\.96\.\d+\.\d+\s+80\/TCP,8081\/TCP,53\/UDP\n/,
    );
    const fes = await frontends();
    const http = fes.find((f) => f.frontend === `${web?.clusterIP}:80/TCP`);
    assert.equal(http?.backends.length, 2);
    assert.ok(http?.backends.every((b) => b.state === 'active' && /:8080\/TCP$/.test(b.address)));
    assert.ok(!fes.some((f) => f.service === 'svc/headless'), 'a headless service has no frontend');
    const raw = JSON.parse(await ok(['bpf', 'lb', 'list', '-o', 'json'], LAB)) as {
      frontend: { address: string; port: number };
      backendIds: number[];
    }[];
    const entry = raw.find((e) => e.frontend.address === web?.clusterIP && e.frontend.port === 53);
    assert.equal(entry?.backendIds.length, 2, 'the UDP frontend is in weir_lb_services with 2 slots');
    assert.match(await ok(['service', 'list'], LAB), /=> 10\.\d+\.\d+\.\d+:5353\/UDP \(active\)/);
  });

  it('refuses a ClusterIP outside the service CIDR or already taken, applying nothing', async () => {
    const bad = (ip: string) => `
apiVersion: v1
kind: Service
metadata: { name: bad, namespace: svc }
spec: { clusterIP: ${ip}, ports: [{ port: 80 }] }
`;
    await writeFile(file('bad.yaml'), bad('192.168.7.7'));
    const out = await cli(['apply', '-f', file('bad.yaml')], LAB);
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /Service svc\/bad.*spec\.clusterIP.*not in the service CIDR 10\.96\.0\.0\/16/);
    await writeFile(file('bad.yaml'), bad(await ipOf('web')));
    const taken = await cli(['apply', '-f', file('bad.yaml')], LAB);
    assert.match(taken.stderr, /already allocated to another service/);
    assert.ok(!(await svcs()).some((s) => s.metadata.name === 'bad'));
  });

  it('balances TCP over the backends; the client sees the ClusterIP as its peer', async () => {
    const ip = await ipOf('web');
    const tries = await connect('svc/client', 'tcp', ip, 80, 16);
    assert.ok(
      tries.every((t) => !t.error),
      JSON.stringify(tries),
    );
    assert.ok(
      tries.every((t) => t.peer === `${ip}:80`),
      `peers: ${[...new Set(tries.map((t) => t.peer))]}`,
    );
    assert.deepEqual(bodies(tries), ['svc/web-a', 'svc/web-b']);
    const alt = await connect('svc/client', 'tcp', ip, 8081, 2);
    assert.ok(
      alt.every((t) => t.peer === `${ip}:8081` && /^svc\/web-[ab]$/.test(t.body ?? '')),
      JSON.stringify(alt),
    );
  });

  it('answers UDP from the ClusterIP (named targetPort)', async () => {
    const ip = await ipOf('web');
    const tries = await connect('svc/client', 'udp', ip, 53, 4);
    assert.ok(
      tries.every((t) => t.peer === `${ip}:53` && t.body === 'hello'),
      JSON.stringify(tries),
    );
  });

  it('reaches the pods of a headless service directly', async () => {
    const pods = await endpointsOf('headless');
    assert.equal(pods.length, 2, `headless endpoints: ${pods}`);
    for (const a of pods) {
      const [t] = await connect('svc/client', 'tcp', a.split(':')[0] as string, 8080, 1);
      assert.ok(t && /^svc\/web-[ab]$/.test(t.body ?? ''), JSON.stringify(t));
    }
  });

  it('keeps a client on one backend with sessionAffinity ClientIP', async () => {
    const tries = await connect('svc/client', 'tcp', await ipOf('sticky'), 80, 10);
    assert.ok(tries.every((t) => !t.error));
    assert.equal(bodies(tries).length, 1, `sticky answered from ${bodies(tries)}`);
  });

  it('refuses at once when no backend is ready', async () => {
    const [t] = await connect('svc/client', 'tcp', await ipOf('empty'), 80, 1, 3000);
    assert.ok(t?.error === 'ECONNREFUSED' || t?.error === 'EHOSTUNREACH', JSON.stringify(t));
    assert.ok((t?.ms ?? 9999) < 500, `refused after ${t?.ms} ms`);
  });

  it('translates at tc what no socket hook saw: TCP and UDP, the ClusterIP as peer, refusal', async () => {
    const ip = await ipOf('web');
    const tries = await connect('svc/client', 'tcp', ip, 80, 12, 1000, 'tc');
    assert.ok(
      tries.every((t) => !t.error && t.peer === `${ip}:80`),
      JSON.stringify(tries),
    );
    // Random picks: 12 connections all on one of two backends is 2^-11.
    assert.deepEqual(bodies(tries), ['svc/web-a', 'svc/web-b']);
    const ct = JSON.parse(await ok(['bpf', 'ct', 'list', '-o', 'json'], LAB)) as {
      dst: string;
      dport: number;
      direction: string;
      revNatIndex: number;
    }[];
    assert.ok(
      ct.some((c) => c.direction === 'egress' && c.dport === 8080 && c.revNatIndex > 0),
      'conntrack holds the translated flow with its rev-NAT index',
    );
    for (const mode of ['udp', 'udpc'] as const) {
      const dgrams = await connect('svc/client', mode, ip, 53, 3, 1000, 'tc');
      assert.ok(
        dgrams.every((t) => t.peer === `${ip}:53` && t.body === 'hello'),
        JSON.stringify(dgrams),
      );
    }
    const empty = await ipOf('empty');
    for (const [mode, port] of [
      ['tcp', 80],
      ['udpc', 53],
    ] as const) {
      const [t] = await connect('svc/client', mode, empty, port, 1, 3000, 'tc');
      assert.equal(t?.error, 'ECONNREFUSED', `${mode}: ${JSON.stringify(t)}`);
      assert.ok((t?.ms ?? 9999) < 500, `${mode}: refused after ${t?.ms} ms`);
    }
  });

  it('serves a NodePort on the node IP through the socket hook, and hand-made EndpointSlices', async () => {
    await apply('np.yaml', nodePort);
    const node = (await (await Lab.open(LAB)).node()).ip;
    const np = await connect('svc/client', 'tcp', node, 30080, 4);
    assert.ok(
      np.every((t) => t.peer === `${node}:30080` && /^svc\/web-[ab]$/.test(t.body ?? '')),
      JSON.stringify(np),
    );
    const webB = (await (await Lab.open(LAB)).pod('svc/web-b')).ip;
    await apply('manual.yaml', manual(webB));
    const manualIP = await ipOf('manual');
    const m = await connect('svc/client', 'tcp', manualIP, 80, 3);
    assert.deepEqual(bodies(m), ['svc/web-b']);
    // Deleting the service removes its frontend from the maps.
    await ok(['delete', '-f', file('manual.yaml')], LAB);
    const raw = JSON.parse(await ok(['bpf', 'lb', 'list', '-o', 'json'], LAB)) as {
      frontend: { address: string };
    }[];
    assert.ok(raw.length > 0);
    assert.ok(!raw.some((e) => e.frontend.address === manualIP), 'the deleted frontend is gone');
    const [gone] = await connect('svc/client', 'tcp', manualIP, 80, 1, 500);
    assert.ok(gone?.error, 'the old ClusterIP no longer answers');
  });

  it('follows scale up and down', async () => {
    const ip = await ipOf('web');
    await apply('web-c.yaml', webC);
    const up = await connect('svc/client', 'tcp', ip, 80, 24);
    assert.ok(bodies(up).includes('svc/web-c'), `after scale up: ${bodies(up)}`);
    await writeFile(file('web-a.yaml'), webA);
    await ok(['delete', '-f', file('web-a.yaml')], LAB);
    const down = await connect('svc/client', 'tcp', ip, 80, 16);
    assert.deepEqual(bodies(down), ['svc/web-b', 'svc/web-c']);
  });

  it('lets a terminating backend keep its connection but gives it no new one', async () => {
    await apply('term.yaml', term(''));
    const ip = await ipOf('term');
    conv = new Conversation(LAB, 'svc/client', ip, 80, 'server');
    assert.equal(await conv.next(10_000), `connected ${ip}:80`);
    await conv.ping();
    await apply('term2.yaml', term2);
    await apply('term.yaml', term('weir.dev/terminating: "true"'));
    const fe = (await frontends()).find((f) => f.service === 'svc/term');
    assert.deepEqual(
      fe?.backends.map((b) => b.state),
      ['active', 'terminating'],
    );
    await conv.ping();
    const fresh = await connect('svc/client', 'tcp', ip, 80, 8);
    assert.deepEqual(bodies(fresh), ['svc/term-2']);
    await conv.ping();
    conv.close();
    conv = undefined;
  });

  it('applies policy to the translated flow (client -> backend)', async () => {
    const ip = await ipOf('web');
    await apply('policy.yaml', policy);
    const denied = await connect('svc/client', 'tcp', ip, 80, 2, 800);
    assert.ok(
      denied.every((t) => t.error === 'timeout'),
      JSON.stringify(denied),
    );
    const allowed = await connect('svc/friend', 'tcp', ip, 80, 4);
    assert.ok(
      allowed.every((t) => /^svc\/web-[bc]$/.test(t.body ?? '')),
      JSON.stringify(allowed),
    );
  });

  it('builds Maglev tables after a restart with --lb-algorithm maglev', async () => {
    // Restart the agent with the maglev setting (persisted in its settings).
    await stopAgent(LAB);
    const node = await (await Lab.open(LAB)).node();
    await startAgent({
      ...hostRoutingAgent(),
      lab: LAB,
      nodeNetns: node.netns,
      agentArgs: ['--lb-algorithm', 'maglev', '--lb-maglev-table-size', '251'],
    });
    const tables = JSON.parse(await ok(['bpf', 'lb', 'maglev', 'get', 'svc/web', '-o', 'json'], LAB)) as {
      frontend: string;
      tableSize: number;
      backends: { entries: number; share: number }[];
    }[];
    assert.equal(tables.length, 3);
    for (const t of tables) {
      assert.equal(t.tableSize, 251);
      assert.equal(t.backends.length, 2, `${t.frontend}: ${JSON.stringify(t.backends)}`);
      assert.equal(
        t.backends.reduce((n, b) => n + b.entries, 0),
        251,
      );
      for (const b of t.backends) assert.ok(Math.abs(b.share - 0.5) < 0.05, `${t.frontend}: ${b.share}`);
    }
    // A restart with the same settings finds the maps right and rewrites nothing.
    await stopAgent(LAB);
    await startAgent({ ...hostRoutingAgent(), lab: LAB, nodeNetns: node.netns });
    const status = JSON.parse(await ok(['agent', 'status', '-o', 'json'], LAB)) as {
      lbAlgorithm: string;
      regenerations: { lastUpserts: number; lastDeletes: number };
    };
    assert.equal(status.lbAlgorithm, 'maglev', 'the algorithm is a persisted setting');
    assert.deepEqual([status.regenerations.lastUpserts, status.regenerations.lastDeletes], [0, 0]);
    const tries = await connect('svc/friend', 'tcp', await ipOf('web'), 80, 6);
    assert.ok(
      tries.every((t) => /^svc\/web-[bc]$/.test(t.body ?? '')),
      JSON.stringify(tries),
    );
  });

  it("--socket-lb off: no hook stays on the cgroups, the pods' tc programs translate instead", async () => {
    const lab = await Lab.open(LAB);
    const node = await lab.node();
    const hooks = async (cgroup: string) =>
      (await run(['bpftool', 'cgroup', 'show', cgroup], { timeoutMs: 10_000 })).stdout;
    const friend = (await lab.pod('svc/friend')).cgroupPath;
    assert.match(await hooks(friend), /inet4_connect/, 'the socket LB hooks are attached');
    await stopAgent(LAB);
    await startAgent({
      ...hostRoutingAgent(),
      lab: LAB,
      nodeNetns: node.netns,
      agentArgs: ['--socket-lb', 'off'],
    });
    try {
      assert.doesNotMatch(await hooks(friend), /inet4_connect|udp4_sendmsg/, 'detached from the pod');
      assert.doesNotMatch(await hooks(node.cgroupPath), /inet4_connect/, 'and from the node');
      const status = JSON.parse(await ok(['agent', 'status', '-o', 'json'], LAB)) as { socketLB: boolean };
      assert.equal(status.socketLB, false);
      // The pod's own processes (its cgroup): TCP and UDP still reach the backends, the ClusterIP
      // is still their peer, and policy still judges the translated flow (friend may reach web).
      const ip = await ipOf('web');
      const tries = await connect('svc/friend', 'tcp', ip, 80, 6);
      assert.ok(
        tries.every((t) => t.peer === `${ip}:80` && /^svc\/web-[bc]$/.test(t.body ?? '')),
        JSON.stringify(tries),
      );
      const dgrams = await connect('svc/friend', 'udpc', ip, 53, 2);
      assert.ok(
        dgrams.every((t) => t.peer === `${ip}:53` && t.body === 'hello'),
        JSON.stringify(dgrams),
      );
      const denied = await connect('svc/client', 'tcp', ip, 80, 1, 1000);
      assert.equal(denied[0]?.error, 'timeout', 'client may not reach web: dropped by policy');
    } finally {
      await stopAgent(LAB);
      await startAgent({
        ...hostRoutingAgent(),
        lab: LAB,
        nodeNetns: node.netns,
        agentArgs: ['--socket-lb', 'on'],
      });
    }
    assert.match(await hooks(friend), /inet4_connect/, 'attached again');
  });
});
