// One node proxy per node (as Cilium's per-node Envoy), on a lab of two nodes in tunnel mode: an
// HTTP policy (GET /allowed only) on a server pod of node2 is enforced by node2's proxy for a
// client on node1 (through the tunnel) and a client on node2 alike — real curl requests, 200 from
// the server for the allowed path, 403 from the proxy for the other; node2's flows have the L7
// records, `weir proxy status --node` shows each node's own proxy (node1's starts once a pod of
// node1 has the policy too), each node's agent restarts and adopts its own proxy, an egress L7
// rule of node1's client towards node2's server goes through both proxies (the upstream carries
// the client's identity through the tunnel), and `weir lab down` ends both processes.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentPid, startAgent } from '../../src/agent/spawn.js';
import { run } from '../../src/shared/exec.js';
import { labProxyPids, proxyPid, type ProxyManagerStatus } from '../../src/agent/proxy-manager.js';
import { Lab } from '../../src/lab/index.js';
import { proxyPidFile } from '../../src/proxy/paths.js';
import type { Flow } from '../../src/observe/flow.js';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { untilValue } from '../support/poll.js';

const LAB = testLab('t-cl7');
const RULE = 'CiliumNetworkPolicy app/server-l7 ingress[0]';

const manifests = `
apiVersion: v1
kind: Namespace
metadata: { name: app }
---
apiVersion: v1
kind: Pod
metadata: { name: client1, namespace: app, labels: { role: client, at: node1 } }
spec: { nodeName: node1, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: client2, namespace: app, labels: { role: client, at: node2 } }
spec: { nodeName: node2, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: app, labels: { role: server } }
spec: { nodeName: node2, containers: [{ name: s, ports: [{ containerPort: 80 }] }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-l7, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { role: client } }]
      toPorts:
        - ports: [{ port: "80", protocol: TCP }]
          rules: { http: [{ method: GET, path: /allowed }] }
`;

/** A server on node1 too (the same policy selects it): node1's proxy judges its requests. */
const server1 = `
apiVersion: v1
kind: Pod
metadata: { name: server1, namespace: app, labels: { role: server } }
spec: { nodeName: node1, containers: [{ name: s, ports: [{ containerPort: 80 }] }] }
`;

/** client1's egress to the servers through node1's proxy (a visibility rule: every request passes). */
const egressPolicy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client1-l7, namespace: app }
spec:
  endpointSelector: { matchLabels: { at: node1 } }
  egress:
    - toEndpoints: [{ matchLabels: { role: server } }]
      toPorts:
        - ports: [{ port: "80", protocol: TCP }]
          rules: { http: [{}] }
`;

/** A Gateway (north-south) in front of the server: node1 holds its address and listener. */
const gateway = `
apiVersion: v1
kind: Service
metadata: { name: server, namespace: app }
spec: { selector: { role: server }, ports: [{ port: 80, targetPort: 80, protocol: TCP }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: weir }
spec: { controllerName: weir.dev/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: app }
spec: { gatewayClassName: weir, listeners: [{ name: web, port: 80, protocol: HTTP }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: app }
spec:
  parentRefs: [{ name: edge }]
  rules: [{ backendRefs: [{ name: server, port: 80 }] }]
`;

/** The node's gateway-range addresses on weir_host and its TCP listeners on them. */
async function gatewayPlane(node: string): Promise<{ addresses: string[]; listeners: string[] }> {
  const ns = `weir-${LAB}-${node}`;
  const addr = JSON.parse((await run(['ip', '-n', ns, '-j', 'addr', 'show', 'dev', 'weir_host'])).stdout) as {
    addr_info?: { local: string }[];
  }[];
  const ss = (await run(['ip', 'netns', 'exec', ns, 'ss', '-Hltn'])).stdout;
  return {
    addresses: (addr[0]?.addr_info ?? []).map((a) => a.local).filter((a) => a.startsWith('198.51.100.')),
    listeners: ss
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[3] ?? '')
      .filter((l) => l.startsWith('198.51.100.')),
  };
}

const PATHS = ['/allowed', '/denied', '/allowed'];

const until = <T>(what: string, get: () => Promise<T>, done: (v: T) => boolean, ms = 30_000) =>
  untilValue(what, get, done, ms, 300);

/** The HTTP status codes of GETs of PATHS from a client pod (curl, a connection each). */
async function get(client: string, serverIP: string, tag: string): Promise<string[]> {
  const script = PATHS.map(
    (p, i) =>
      `curl -s -o /dev/null -m 10 -w '%{http_code}\\n' -H 'X-Request-Id: ${tag}-${i}' http://${serverIP}${p}`,
  ).join('; ');
  return (await ok(['lab', 'exec', `app/${client}`, '--', 'sh', '-c', script], LAB)).trim().split('\n');
}

async function proxyStatus(node: string): Promise<ProxyManagerStatus> {
  return JSON.parse(await ok(['proxy', 'status', '--node', node, '-o', 'json'], LAB)) as ProxyManagerStatus;
}

async function l7Flows(node: string): Promise<Flow[]> {
  process.env.WEIR_NODE = node;
  try {
    const out = await ok(['observe', '--type', 'l7', '--last', '1000', '-o', 'json'], LAB);
    return out
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Flow);
  } finally {
    delete process.env.WEIR_NODE;
  }
}

describe('one node proxy per node (two nodes, tunnel mode)', () => {
  let dir: string;
  let serverIP = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-cl7-test-'));
    await writeFile(join(dir, 'all.yaml'), manifests);
    await writeFile(join(dir, 'server1.yaml'), server1);
    await writeFile(join(dir, 'egress.yaml'), egressPolicy);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '--nodes', '2', '--no-cluster-dns'], LAB, 240_000);
    await ok(['apply', '-f', join(dir, 'all.yaml')], LAB);
    serverIP = (await (await Lab.open(LAB)).pod('app/server')).ip;
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it("node2's proxy judges the requests of a client on node2 and of one on node1", async () => {
    assert.deepEqual(await get('client2', serverIP, 'c2'), ['200', '403', '200'], 'client2 (node2)');
    assert.deepEqual(await get('client1', serverIP, 'c1'), ['200', '403', '200'], 'client1 (node1)');

    const s2 = await proxyStatus('node2');
    assert.equal(s2.running, true, JSON.stringify(s2));
    assert.ok(s2.pid && proxyPid(LAB, 'node2') === s2.pid, "node2's proxy runs under its own pid file");
    assert.equal(s2.endpoints, 1, 'the server');
    assert.equal(s2.proxy?.redirects.ingress, 6, 'one connection per request, both clients');
    assert.deepEqual([s2.proxy?.requests?.ingress?.received, s2.proxy?.requests?.ingress?.denied], [6, 2]);
    const s1 = await proxyStatus('node1');
    assert.equal(s1.running, false, "node1's pods have no L7 policy: node1's proxy is not started");
    assert.equal(s1.wanted, false);
    assert.equal(proxyPid(LAB), undefined);
  });

  it("node2's flows have the L7 records of both clients, by the rule", async () => {
    const flows = await until(
      '12 L7 flows on node2',
      () => l7Flows('node2'),
      (f) => f.length >= 12,
    );
    const requests = flows.filter((f) => f.l7?.type === 'REQUEST');
    assert.equal(requests.length, 6);
    // In the order sent (the records of two clients' connections may interleave).
    const id = (f: Flow) => f.l7?.http?.headers.find((h) => h.key === 'x-request-id')?.value ?? '';
    for (const [client, tag] of [
      ['client1', 'c1'],
      ['client2', 'c2'],
    ] as const)
      assert.deepEqual(
        requests
          .filter((f) => f.source.pod_name === client)
          .sort((x, y) => id(x).localeCompare(id(y)))
          .map((f) => [id(f), f.l7?.http?.url, f.verdict, f.traffic_direction]),
        PATHS.map((p, i) => [
          `${tag}-${i}`,
          `http://${serverIP}${p}`,
          p === '/allowed' ? 'FORWARDED' : 'DROPPED',
          'INGRESS',
        ]),
        client,
      );
    for (const f of requests) {
      assert.equal(f.destination.pod_name, 'server');
      assert.equal(f.node_name, 'node2');
      const by = f.verdict === 'FORWARDED' ? f.ingress_allowed_by : f.ingress_denied_by;
      assert.equal(by?.[0]?.rule, RULE);
    }
    const codes = flows.filter((f) => f.l7?.type === 'RESPONSE').map((f) => f.l7?.http?.code);
    assert.deepEqual(
      codes.sort(),
      [200, 200, 200, 200, 403, 403],
      '403s from the proxy, 200s from the server',
    );
    assert.equal((await l7Flows('node1')).length, 0, 'node1 proxied nothing');
  });

  it("node2's agent restarts its proxy when it dies, and a restarted agent adopts it", async () => {
    const s = await proxyStatus('node2');
    assert.ok(s.pid);
    process.kill(s.pid, 'SIGKILL');
    const back = await until(
      "node2's proxy restarted",
      () => proxyStatus('node2'),
      (v) => v.running && v.pid !== s.pid && v.ackedVersion !== undefined,
    );
    assert.ok(back.restarts >= 1);
    assert.equal(proxyPid(LAB, 'node2'), back.pid);
    assert.equal(proxyPid(LAB), undefined, "node1's agent started none");
    assert.deepEqual(await get('client1', serverIP, 'r1'), ['200', '403', '200'], 'judged again');

    const agent = agentPid(LAB, 'node2');
    assert.ok(agent);
    process.kill(agent, 'SIGKILL');
    await until(
      'the agent is gone',
      async () => agentPid(LAB, 'node2'),
      (p) => p === undefined,
    );
    await startAgent({ lab: LAB, node: 'node2', nodeNetns: `weir-${LAB}-node2` });
    const adopted = await proxyStatus('node2');
    assert.equal(adopted.pid, back.pid, "node2's restarted agent adopted its proxy");
    assert.deepEqual(await get('client2', serverIP, 'r2'), ['200', '403', '200']);
  });

  it("a pod of node1 under the policy: node1's own proxy starts and judges its requests", async () => {
    const before2 = (await proxyStatus('node2')).proxy?.redirects.ingress;
    await ok(['apply', '-f', join(dir, 'server1.yaml')], LAB);
    const server1IP = (await (await Lab.open(LAB)).pod('app/server1')).ip;
    assert.deepEqual(await get('client2', server1IP, 's1'), ['200', '403', '200'], 'client2 -> server1');
    const s1 = await proxyStatus('node1');
    const s2 = await proxyStatus('node2');
    assert.equal(s1.running, true, JSON.stringify(s1));
    assert.ok(s1.pid && s2.pid && s1.pid !== s2.pid, 'two proxy processes');
    assert.equal(proxyPid(LAB), s1.pid, "node1's proxy keeps the lab's paths");
    assert.equal(proxyPid(LAB, 'node2'), s2.pid);
    assert.equal(s1.endpoints, 1, 'server1');
    assert.equal(s1.proxy?.redirects.ingress, 3, "client2's connections to server1 enter node1's proxy");
    assert.equal(s2.proxy?.redirects.ingress, before2, "node2's proxy saw none of them");
    const flows = await until(
      "node1's L7 requests",
      async () => (await l7Flows('node1')).filter((f) => f.l7?.type === 'REQUEST'),
      (f) => f.length >= 3,
    );
    assert.deepEqual(
      flows.map((f) => [f.source.pod_name, f.destination.pod_name, f.node_name, f.verdict]).sort(),
      [
        ['client2', 'server1', 'node1', 'DROPPED'],
        ['client2', 'server1', 'node1', 'FORWARDED'],
        ['client2', 'server1', 'node1', 'FORWARDED'],
      ],
    );
    assert.deepEqual(
      labProxyPids(LAB).sort(),
      [s1.pid, s2.pid].sort(),
      "the lab's proxies, found by their titles",
    );
  });

  it("an egress L7 rule towards node2's pod: node1's proxy, then node2's, both judge", async () => {
    await ok(['apply', '-f', join(dir, 'egress.yaml')], LAB);
    const before1 = (await proxyStatus('node1')).proxy?.redirects.egress ?? 0;
    const before2 = (await proxyStatus('node2')).proxy?.requests?.ingress;
    // The upstream connection of node1's egress proxy carries client1's identity through the
    // tunnel (node2's policy allows client1, not node1), and its replies come back to it.
    assert.deepEqual(await get('client1', serverIP, 'e1'), ['200', '403', '200']);
    const s1 = await proxyStatus('node1');
    const s2 = await proxyStatus('node2');
    assert.equal(
      s1.proxy?.redirects.egress,
      before1 + 3,
      "client1's connections leave through node1's proxy",
    );
    // node1's proxy keeps its upstream connection open: the three requests may share it.
    assert.deepEqual(
      [s2.proxy?.requests?.ingress?.received, s2.proxy?.requests?.ingress?.denied],
      [(before2?.received ?? 0) + 3, (before2?.denied ?? 0) + 1],
      "and node2's proxy judges them",
    );
    const egress = await until(
      "node1's egress L7 requests",
      async () =>
        (await l7Flows('node1')).filter((f) => f.l7?.type === 'REQUEST' && f.traffic_direction === 'EGRESS'),
      (f) => f.length >= 3,
    );
    assert.deepEqual(
      egress.map((f) => [f.source.pod_name, f.destination.pod_name, f.verdict]),
      PATHS.map(() => ['client1', 'server', 'FORWARDED']),
    );
  });

  it("a Gateway's address and listener are node1's only; node2's proxy gets no gateway port", async () => {
    await writeFile(join(dir, 'gateway.yaml'), gateway);
    await ok(['apply', '-f', join(dir, 'gateway.yaml')], LAB);
    const gw = JSON.parse(await ok(['get', 'gateway', 'edge', '-n', 'app', '-o', 'json'], LAB)) as {
      status: { addresses: { value: string }[] };
    };
    const address = gw.status.addresses[0]?.value ?? '';
    assert.match(address, /^198\.51\.100\.\d+$/);
    const node1 = await until(
      "node1's gateway listener",
      () => gatewayPlane('node1'),
      (p) => p.listeners.length > 0,
    );
    assert.deepEqual(node1, { addresses: [address], listeners: [`${address}:80`] });
    assert.deepEqual(await gatewayPlane('node2'), { addresses: [], listeners: [] });
    assert.equal((await proxyStatus('node2')).running, true, "node2's proxy still runs its L7 policy");
  });

  it('lab down ends every node proxy, one without its pid file too', async () => {
    const pids = labProxyPids(LAB);
    assert.equal(pids.length, 2);
    // As a crashed run may leave it: node2's proxy without its pid file (found by its title).
    rmSync(proxyPidFile(LAB, 'node2'));
    assert.equal(proxyPid(LAB, 'node2'), undefined);
    await ok(['lab', 'down'], LAB);
    assert.deepEqual(labProxyPids(LAB), []);
    // Gone (or a zombie its new parent has yet to reap).
    for (const pid of pids) {
      let state = 'gone';
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      } catch {
        // gone
      }
      assert.ok(state === 'gone' || state === 'Z' || state === 'X', `proxy ${pid} is ${state}`);
    }
  });
});
