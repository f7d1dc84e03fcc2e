// L7 on demand, end to end with real TCP bytes: a CiliumNetworkPolicy with HTTP rules sends the
// connections of exactly its ports and peers through the node proxy (`weir proxy`, started by the
// agent on demand), both ends filtering (egress then ingress proxy); the destination sees the
// client's own address; everything else never meets the proxy. A killed proxy fails closed (L4
// traffic untouched) and is restarted; an agent kill -9 + restart and a policy update leave an
// open proxied connection alone; `weir lab down` ends the proxy.
//
// The traffic is real HTTP (the proxy parses it); the rules are mostly `http: [{}]`, Cilium's
// visibility rule, since the request semantics are tested with the engine and the L7 conformance.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentPid, startAgent } from '../../src/agent/spawn.js';
import { proxyPid } from '../../src/agent/proxy-manager.js';
import type { ProxyManagerStatus } from '../../src/agent/proxy-manager.js';
import { Lab } from '../../src/lab/index.js';
import { hostRoutingAgent } from '../support/host-routing.js';
import { cli, ok, weir } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { lineReader } from '../support/lines.js';
import { until as pollUntil } from '../support/poll.js';

const LAB = testLab('t-l7');
const PEER_PORT = 8080; // a server started in app/server that answers with the peer it sees

const labSpec = `name: ${LAB}\nnodes: [{ name: node1, podCIDR: 10.244.0.0/24, podCIDRv6: 'fd00:10:244::/64' }]\n`;

const pods = `
apiVersion: v1
kind: Namespace
metadata: { name: app }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app, labels: { role: client } }
spec: { containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: app, labels: { role: server } }
spec: { containers: [{ name: s, ports: [{ containerPort: 80 }, { containerPort: 81 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: other, namespace: app, labels: { role: other } }
spec: { containers: [{ name: o, ports: [{ containerPort: 80 }, { containerPort: 81 }] }] }
`;

/** The server's ingress: HTTP rules on 80 and PEER_PORT from the client, L4 only on 81. */
const serverPolicy = (extraPath = false) => `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-l7, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { role: client } }]
      toPorts:
        - ports: [{ port: "80", protocol: TCP }, { port: "${PEER_PORT}", protocol: TCP }]
          rules: { http: [{}${extraPath ? ', { method: GET, path: "/extra" }' : ''}] }
        - ports: [{ port: "81", protocol: TCP }]
`;

/** The client's egress: HTTP rules towards other:80; server and other:81 at L4. */
const clientPolicy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-l7, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: client } }
  egress:
    - toEndpoints: [{ matchLabels: { role: other } }]
      toPorts:
        - ports: [{ port: "80", protocol: TCP }]
          rules: { http: [{}] }
        - ports: [{ port: "81", protocol: TCP }]
    - toEndpoints: [{ matchLabels: { role: server } }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }, { port: "81", protocol: TCP }, { port: "${PEER_PORT}", protocol: TCP }] }]
`;

async function probe(to: string, port: number, timeoutMs = 2000): Promise<{ ok: boolean; text: string }> {
  const r = await cli(
    [
      'lab',
      'probe',
      '--from',
      'app/client',
      '--to',
      to,
      '--port',
      `${port}/TCP`,
      '--timeout',
      String(timeoutMs),
    ],
    LAB,
  );
  return { ok: r.code === 0, text: r.stdout + r.stderr };
}

async function proxyStatus(): Promise<ProxyManagerStatus> {
  return JSON.parse(await ok(['proxy', 'status', '-o', 'json'], LAB)) as ProxyManagerStatus;
}

const redirects = async () => {
  const s = await proxyStatus();
  return { ingress: s.proxy?.redirects.ingress ?? 0, egress: s.proxy?.redirects.egress ?? 0 };
};

/** Datapath drops of a reason (weir bpf metrics list), by its code. */
async function dropped(reason: number): Promise<number> {
  const rows = JSON.parse(await ok(['bpf', 'metrics', 'list', '-o', 'json'], LAB)) as {
    reason: number;
    packets: number;
  }[];
  return rows.filter((r) => r.reason === reason).reduce((n, r) => n + Number(r.packets), 0);
}

const PROXY_LOOKUP_FAILED = 178;

/** Whether a process still runs (an exited one nobody reaped yet does not). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

const until = (what: string, cond: () => Promise<boolean>, ms = 20_000) => pollUntil(what, cond, ms, 200);

/** A process inside a pod (weir lab exec), with its stdout lines. */
class InPod {
  readonly child: ChildProcessWithoutNullStreams;
  /** The next line; the first one waits for `weir lab exec` and node to start (slow on a busy machine). */
  readonly line: (timeoutMs?: number) => Promise<string>;

  constructor(pod: string, script: string) {
    this.child = spawn(weir, ['lab', 'exec', pod, '--', process.execPath, '-e', script], {
      env: { ...process.env, WEIR_LAB: LAB },
    });
    const next = lineReader(this.child.stdout);
    this.line = (timeoutMs = 20_000) => next(timeoutMs);
  }

  send(text: string): void {
    this.child.stdin.write(text + '\n');
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/**
 * One long-lived HTTP/1.1 keep-alive connection from the client to the peer server (PEER_PORT):
 * every ping is a request on it, answered through the proxy; the client's local port shows the
 * connection is the same one throughout.
 */
class Conversation extends InPod {
  #n = 0;
  #port = '';

  constructor(ip: string) {
    super(
      'app/client',
      `const http = require('http');
       const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
       console.log('ready');
       require('readline').createInterface({ input: process.stdin }).on('line', (path) => {
         const req = http.get({ host: ${JSON.stringify(ip)}, port: ${PEER_PORT}, path, agent }, (res) => {
           let body = '';
           res.on('data', (d) => (body += d));
           res.on('end', () => console.log(res.statusCode + ' ' + req.socket.localPort + ' ' + body.trim()));
         });
         req.on('error', (e) => console.log('error ' + e.code));
       });`,
    );
  }

  async ping(): Promise<void> {
    const path = `/ping-${++this.#n}`;
    this.send(path);
    const [status, port, ...body] = (await this.line(5000)).split(' ');
    assert.equal(`${status} ${body.join(' ')}`, `200 peer ${this.clientIP} ${path}`);
    if (!this.#port) this.#port = port ?? '';
    assert.equal(port, this.#port, 'every ping rides the same connection');
  }

  clientIP = '';
}

describe('L7 on demand: the datapath redirects exactly the connections whose policy needs L7', () => {
  let dir: string;
  let serverIP = '';
  let serverIP6 = '';
  let clientIP = '';
  const procs: InPod[] = [];
  const file = (name: string) => join(dir, name);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-l7-test-'));
    await writeFile(file('lab.yaml'), labSpec);
    await writeFile(file('pods.yaml'), pods);
    await writeFile(file('server.yaml'), serverPolicy());
    await writeFile(file('server2.yaml'), serverPolicy(true));
    await writeFile(file('client.yaml'), clientPolicy);
    await cli(['lab', 'down'], LAB);
    // Two proxy threads whatever the machine's CPUs: the SO_REUSEPORT group is tested below.
    await ok(['lab', 'up', '-f', file('lab.yaml'), '--proxy-workers', '2'], LAB);
    await ok(['apply', '-f', file('pods.yaml')], LAB);
    const lab = await Lab.open(LAB);
    const server = await lab.pod('app/server');
    serverIP = server.ip;
    serverIP6 = server.ip6 ?? '';
    clientIP = (await lab.pod('app/client')).ip;
  });

  after(async () => {
    for (const p of procs) p.kill();
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('starts no proxy while no policy needs L7', async () => {
    const s = await proxyStatus();
    assert.equal(s.wanted, false);
    assert.equal(s.running, false);
    assert.equal(proxyPid(LAB), undefined);
    assert.equal((await probe('app/server', 80)).ok, true);
  });

  it('a policy with HTTP rules starts the proxy, which runs its snapshot before connections come', async () => {
    await ok(['apply', '-f', file('server.yaml')], LAB);
    const s = await proxyStatus();
    assert.equal(s.running, true);
    assert.ok(s.pid && proxyPid(LAB) === s.pid, 'the proxy runs under its pid file');
    assert.equal(s.ackedVersion, s.desiredVersion, 'the proxy acknowledged the version sent');
    assert.deepEqual(s.proxy?.listeners, {
      ingress: 10000,
      egress: 10001,
      dns: 10002,
      dnsRejectCode: 'refused',
    });
    assert.equal(s.endpoints, 1);
    const trace = await ok(
      ['policy', 'trace', '--from', 'app/client', '--to', 'app/server', '--port', '80/TCP', '--datapath'],
      LAB,
    );
    assert.match(trace, /ingress app\/server: allowed by .*server-l7.*redirected to proxy port 10000/);
    assert.match(trace, /engine and datapath agree/);
  });

  it('ingress: connections to the HTTP port go through the proxy, transparently', async () => {
    const before = await redirects();
    const r = await probe('app/server', 80);
    assert.equal(r.ok, true, r.text);
    const http = await cli(
      ['lab', 'probe', '--from', 'app/client', '--to', 'app/server', '--port', '80/TCP', '--http'],
      LAB,
    );
    assert.equal(http.code, 0, http.stderr);
    assert.match(http.stdout, /app\/server/, 'the HTTP answer comes from the server itself');
    const after = await redirects();
    assert.equal(after.ingress - before.ingress, 2, 'both connections were accepted by the ingress listener');
    assert.equal(after.egress, before.egress);
  });

  it("the proxy's threads share the connections: each listener of the SO_REUSEPORT group gets some", async () => {
    const before = (await proxyStatus()).proxy?.threads?.redirects ?? [];
    const n = 20;
    for (let i = 0; i < n; i++) assert.equal((await probe('app/server', 80)).ok, true);
    const after = (await proxyStatus()).proxy?.threads?.redirects ?? [];
    assert.equal(after.length, 2, 'the main thread and one worker');
    const got = after.map((v, i) => v - (before[i] ?? 0));
    assert.equal(
      got.reduce((a, b) => a + b, 0),
      n,
      `every connection counted once: ${got.join(', ')}`,
    );
    // The kernel picks a group member by the hash of each connection's 4-tuple (new client
    // ports each time): all 20 on one thread would be a 1-in-500 000 event.
    assert.ok(
      got.every((v) => v > 0),
      `connections by thread: ${got.join(', ')}`,
    );
  });

  it('the destination sees the client itself as its peer (the upstream is transparent)', async () => {
    // An HTTP server that answers with the peer address it sees (kept for the conversation below;
    // keep-alive without an idle timeout, so an open connection outlives agent restarts).
    const server = new InPod(
      'app/server',
      `const srv = require('http').createServer((q, s) => s.end('peer ' + q.socket.remoteAddress + ' ' + q.url + '\\n'));
       srv.keepAliveTimeout = 0;
       srv.listen(${PEER_PORT}, '0.0.0.0', () => console.log('listening'));`,
    );
    procs.push(server);
    assert.equal(await server.line(20_000), 'listening');
    const before = await redirects();
    const client = new InPod(
      'app/client',
      `const req = require('http').get({ host: ${JSON.stringify(serverIP)}, port: ${PEER_PORT}, path: '/who' }, (res) => {
         res.on('data', (d) => process.stdout.write(String(d)));
       });
       req.on('error', (e) => console.log('error ' + e.code));
       req.on('socket', (s) => s.on('connect', () => console.log('local ' + s.localAddress)));`,
    );
    procs.push(client);
    assert.equal(await client.line(), `local ${clientIP}`);
    assert.equal(await client.line(), `peer ${clientIP} /who`);
    assert.equal((await redirects()).ingress - before.ingress, 1, 'through the proxy');
  });

  it('IPv6: the same through the IPv6 listener', async () => {
    assert.ok(serverIP6, 'the lab is dual-stack');
    const before = await redirects();
    const r = await probe(serverIP6, 80);
    assert.equal(r.ok, true, r.text);
    assert.equal((await redirects()).ingress - before.ingress, 1);
  });

  it('other ports and other pods never meet the proxy', async () => {
    const before = await redirects();
    assert.equal((await probe('app/server', 81)).ok, true, 'L4 port of the same pod');
    assert.equal((await probe('app/other', 80)).ok, true, 'another pod');
    assert.equal((await probe('app/other', 81)).ok, true);
    assert.deepEqual(await redirects(), before, 'zero proxy hits');
  });

  it("egress: the client pod's HTTP rules send its connections to the egress listener", async () => {
    await ok(['apply', '-f', file('client.yaml')], LAB);
    let before = await redirects();
    assert.equal((await probe('app/other', 80)).ok, true);
    let after = await redirects();
    assert.deepEqual([after.egress - before.egress, after.ingress - before.ingress], [1, 0]);
    assert.equal((await probe('app/other', 81)).ok, true);
    assert.deepEqual(await redirects(), after, 'the L4 port of the egress policy is not redirected');
    // To the server: L4 at the client's egress, HTTP at the server's ingress.
    before = after;
    assert.equal((await probe('app/server', 80)).ok, true);
    after = await redirects();
    assert.deepEqual([after.egress - before.egress, after.ingress - before.ingress], [0, 1]);
    // The flows: the new connections' verdicts say where they went.
    const flows = (await ok(['observe', '--type', 'policy-verdict', '--last', '200', '-o', 'json'], LAB))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { verdict?: string; proxy_port?: number; traffic_direction?: string })
      .filter((f) => f.verdict !== undefined);
    const seen = [...new Set(flows.map((f) => `${f.verdict} ${f.traffic_direction} ${f.proxy_port ?? '-'}`))];
    assert.ok(seen.includes('REDIRECTED EGRESS 10001'), seen.join('; '));
    assert.ok(seen.includes('REDIRECTED INGRESS 10000'), seen.join('; '));
  });

  it('both ends with L7: egress proxy first, then the ingress proxy of the destination', async () => {
    // The client's egress towards the server on 80 becomes L7 too (and nothing L4 on that port,
    // which would leave it unfiltered).
    await writeFile(
      file('client2.yaml'),
      clientPolicy
        .replace(
          'toEndpoints: [{ matchLabels: { role: other } }]',
          'toEndpoints: [{ matchLabels: { role: other } }, { matchLabels: { role: server } }]',
        )
        .replace(
          '{ port: "80", protocol: TCP }, { port: "81", protocol: TCP }, { port',
          '{ port: "81", protocol: TCP }, { port',
        ),
    );
    await ok(['apply', '-f', file('client2.yaml')], LAB);
    const before = await redirects();
    const http = await cli(
      ['lab', 'probe', '--from', 'app/client', '--to', 'app/server', '--port', '80/TCP', '--http'],
      LAB,
    );
    assert.equal(http.code, 0, http.stderr);
    assert.match(http.stdout, /app\/server/);
    const after = await redirects();
    assert.deepEqual([after.egress - before.egress, after.ingress - before.ingress], [1, 1]);
    await ok(['apply', '-f', file('client.yaml')], LAB);
  });

  it('a proxy killed: redirected connections fail closed, L4 ones flow, and the agent restarts it', async () => {
    const s = await proxyStatus();
    const pid = s.pid as number;
    const restarts = s.restarts;
    const drops = await dropped(PROXY_LOOKUP_FAILED);
    process.kill(pid, 'SIGKILL');
    await until('the proxy is gone', async () => proxyPid(LAB) !== pid);
    // Within the restart backoff: no listener, so the redirected connection is dropped in the
    // datapath (never sent to the server behind the proxy's back).
    const down = await probe('app/server', 80, 300);
    const l4 = await probe('app/server', 81);
    assert.equal(l4.ok, true, 'L4 traffic does not depend on the proxy');
    if (!down.ok) assert.ok((await dropped(PROXY_LOOKUP_FAILED)) > drops, 'counted as a drop');
    else assert.ok((await proxyStatus()).running, 'only a restarted proxy may have answered');
    await until('the agent restarted the proxy', async () => {
      const now = await proxyStatus();
      return (
        now.running && now.pid !== pid && now.restarts > restarts && now.ackedVersion === now.desiredVersion
      );
    });
    assert.equal((await probe('app/server', 80)).ok, true, 'redirected connections work again');
  });

  it('agent kill -9 + restart and a policy update leave an open proxied connection alone', async () => {
    const conv = new Conversation(serverIP);
    conv.clientIP = clientIP;
    procs.push(conv);
    assert.equal(await conv.line(), 'ready');
    await conv.ping();
    const s = await proxyStatus();
    assert.equal(s.proxy?.connections.ingress, 1, 'the conversation is a proxied connection');

    const agent = agentPid(LAB);
    assert.ok(agent);
    process.kill(agent, 'SIGKILL');
    await until('the agent is gone', async () => agentPid(LAB) === undefined);
    await conv.ping();
    await startAgent({
      ...hostRoutingAgent(),
      lab: LAB,
      nodeNetns: (await (await Lab.open(LAB)).node()).netns,
    });
    const adopted = await proxyStatus();
    assert.equal(adopted.pid, s.pid, 'the restarted agent adopted the running proxy');
    assert.equal(adopted.restarts, 0);
    await conv.ping();

    // A new snapshot while the connection is open: applied live, the connection stays.
    await ok(['apply', '-f', file('server2.yaml')], LAB);
    const updated = await proxyStatus();
    assert.ok((updated.ackedVersion ?? 0) > (adopted.ackedVersion ?? 0), 'a newer version runs');
    await conv.ping();
    await conv.ping();
  });

  it("the proxy metrics come with the agent's, and lab down ends the proxy", async () => {
    const metrics = await ok(['agent', 'metrics'], LAB);
    assert.match(metrics, /^weir_proxy_redirects_total\{direction="ingress"\} [1-9]/m);
    assert.match(metrics, /^weir_proxy_snapshot_version [1-9]/m);
    const pid = proxyPid(LAB);
    assert.ok(pid);
    await ok(['lab', 'down'], LAB);
    assert.equal(running(pid), false, 'the proxy process is gone');
  });
});
