// Service state survives the agent: with the socket LB off (every packet to a ClusterIP translated
// by the pods' tc programs) long-lived TCP connections through a ClusterIP of three backends, from
// a client in a pod's network namespace but outside its cgroup, and through a NodePort from a lab
// external, keep their backend and keep moving bytes both ways across `kill -9` of the agent and
// its restart, which replaces every tc program with newly loaded ones. Each connection is an echo:
// what the client sends comes back on the same socket, and the backend's own socket for it (read
// with ss in the backend's namespace) is the same one, with more bytes, after the restart.
//
// What makes this hold: the translation's state is pinned (the map catalogue): weir_lb_ct (the
// backend each tc-translated connection was given), weir_lb_nat (NodePort), weir_ct. With any of
// them per-load, a restarted agent's programs start empty and pick afresh (random selection: two
// times in three another backend, which answers the connection's next segment with an RST).
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentPid, startAgent } from '../../src/agent/spawn.js';
import { Lab } from '../../src/lab/index.js';
import { run } from '../../src/shared/exec.js';
import { hostRoutingAgent } from '../support/host-routing.js';
import { cli, ok, weir } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { lineReader } from '../support/lines.js';
import { servicePod } from '../support/service-client.js';

const LAB = testLab('t-svcrst');
const EXT_IP = '192.0.2.60';
const BACKENDS = ['rs/web-a', 'rs/web-b', 'rs/web-c'];
/** Connections per path: with an empty weir_lb_ct each survives a restart by chance 1 in 3. */
const CONNECTIONS = 4;

const labSpec = `
name: ${LAB}
externals:
  - { name: client, ip: ${EXT_IP} }
`;

const objects = `
apiVersion: v1
kind: Namespace
metadata: { name: rs }
---
${servicePod('rs', 'web-a', 'app: web')}
${servicePod('rs', 'web-b', 'app: web')}
${servicePod('rs', 'web-c', 'app: web')}
${servicePod('rs', 'client', 'role: client')}
apiVersion: v1
kind: Service
metadata: { name: web, namespace: rs }
spec:
  selector: { app: web }
  ports: [{ name: echo, port: 80, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: web-np, namespace: rs }
spec:
  type: NodePort
  selector: { app: web }
  ports: [{ name: echo, port: 80, targetPort: 8080, nodePort: 30080 }]
`;

/**
 * `k` TCP connections to ip:port held open by one process; stdin lines `<i> <text>` are sent on
 * connection i, and every line that comes back is printed as `echo <i> <text>` (long ones as
 * their first 16 characters, … and their length).
 */
const clientScript = `
const [ip, port, k] = process.argv.slice(1);
const net = require('net');
const socks = [], bufs = [];
for (let i = 0; i < +k; i++) {
  const s = net.connect(+port, ip);
  s.setNoDelay(true);
  socks.push(s); bufs.push('');
  s.on('connect', () => console.log('connected ' + i + ' ' + s.localAddress + ' ' + s.localPort));
  s.on('error', (e) => console.log('error ' + i + ' ' + e.code));
  s.on('close', () => console.log('closed ' + i));
  s.on('data', (d) => {
    bufs[i] += d;
    let j;
    while ((j = bufs[i].indexOf('\\n')) >= 0) {
      const line = bufs[i].slice(0, j);
      bufs[i] = bufs[i].slice(j + 1);
      console.log('echo ' + i + ' ' + (line.length > 64 ? line.slice(0, 16) + '…' + line.length : line));
    }
  });
}
require('readline').createInterface({ input: process.stdin }).on('line', (l) => {
  const sp = l.indexOf(' ');
  socks[+l.slice(0, sp)].write(l.slice(sp + 1) + '\\n');
});
`;

class Connections {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: ReturnType<typeof lineReader>;
  /** Connection i's local address and port, as the client's socket has them. */
  readonly local: { address: string; port: number }[] = [];
  private n = 0;

  constructor(
    readonly name: string,
    argv: string[],
    readonly k: number,
  ) {
    this.child = spawn(argv[0] as string, argv.slice(1), { env: { ...process.env, WEIR_LAB: LAB } });
    this.lines = lineReader(this.child.stdout);
  }

  private next(timeoutMs: number): Promise<string> {
    return this.lines(timeoutMs, `no answer within ${timeoutMs} ms`);
  }

  async open(): Promise<void> {
    for (let i = 0; i < this.k; i++) {
      const line = await this.next(15_000);
      const m = /^connected (\d+) (\S+) (\d+)$/.exec(line);
      assert.ok(m, `a ${this.name} connection opens: ${line}`);
      this.local[Number(m[1])] = { address: m[2]?.replace(/^::ffff:/, '') ?? '', port: Number(m[3]) };
    }
  }

  /** Sends a numbered line on every connection (one `size` bytes long) and expects it back on it. */
  async pingAll(size = 0): Promise<void> {
    for (let i = 0; i < this.k; i++) {
      const tag = `ping-${++this.n}-`;
      const text = size > 0 ? tag + 'x'.repeat(size - tag.length) : tag;
      this.child.stdin.write(`${i} ${text}\n`);
      const shown = text.length > 64 ? `${text.slice(0, 16)}…${text.length}` : text;
      assert.equal(
        await this.next(5000),
        `echo ${i} ${shown}`,
        `${this.name} connection ${i} echoes on the same socket`,
      );
    }
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}

/** A backend's established sockets on port 8080: the peer and the bytes each has received. */
interface BackendSocket {
  backend: string;
  peer: string;
  bytesReceived: number;
}

async function backendSockets(lab: Lab): Promise<BackendSocket[]> {
  const out: BackendSocket[] = [];
  for (const b of BACKENDS) {
    const netns = (await lab.pod(b)).netns;
    const ss = await run(
      ['ip', 'netns', 'exec', netns, 'ss', '-tniHO', 'state', 'established', '( sport = :8080 )'],
      { timeoutMs: 10_000 },
    );
    for (const line of ss.stdout.split('\n').filter(Boolean)) {
      const [, , , peer = ''] = line.trim().split(/\s+/);
      out.push({
        backend: b,
        peer: peer.replace(/^\[(?:::ffff:)?(.*)\]:(\d+)$/, '$1:$2'),
        bytesReceived: Number(/bytes_received:(\d+)/.exec(line)?.[1] ?? 0),
      });
    }
  }
  return out.sort((a, b) => a.peer.localeCompare(b.peer));
}

describe('services keep their connections and backends across an agent kill -9 and restart', () => {
  let dir: string;
  let lab: Lab;
  let clusterIP: string;
  let nodeIP: string;
  const open: Connections[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-svcrst-'));
    await writeFile(join(dir, 'lab.yaml'), labSpec);
    await writeFile(join(dir, 'objects.yaml'), objects);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '-f', join(dir, 'lab.yaml'), '--socket-lb', 'off'], LAB);
    await ok(['apply', '-f', join(dir, 'objects.yaml')], LAB);
    lab = await Lab.open(LAB);
    nodeIP = (await lab.node()).ip;
    const web = JSON.parse(await ok(['get', 'svc', 'web', '-n', 'rs', '-o', 'json'], LAB)) as {
      spec: { clusterIP: string };
    };
    clusterIP = web.spec.clusterIP;
    assert.match(clusterIP, /^10\.96\./);
    const status = JSON.parse(await ok(['agent', 'status', '-o', 'json'], LAB)) as { socketLB: boolean };
    assert.equal(status.socketLB, false, 'services are translated at tc only');
  });

  after(async () => {
    for (const c of open) c.close();
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('ClusterIP (tc translation) and NodePort connections keep flowing, each on its backend', async () => {
    const client = await lab.pod('rs/client');
    // In the client pod's network namespace, outside its cgroup: its tc program translates.
    const east = new Connections(
      'ClusterIP',
      [
        'ip',
        'netns',
        'exec',
        client.netns,
        process.execPath,
        '-e',
        clientScript,
        clusterIP,
        '80',
        String(CONNECTIONS),
      ],
      CONNECTIONS,
    );
    open.push(east);
    const north = new Connections(
      'NodePort',
      [
        weir,
        'lab',
        'exec',
        'ext:client',
        '--',
        process.execPath,
        '-e',
        clientScript,
        nodeIP,
        '30080',
        String(CONNECTIONS),
      ],
      CONNECTIONS,
    );
    open.push(north);
    await east.open();
    await north.open();
    await east.pingAll();
    await north.pingAll();

    const before = await backendSockets(lab);
    // East-west: each connection's backend sees the client pod itself (no SNAT): find it by port.
    const eastBackend = east.local.map((l) => {
      const s = before.filter((b) => b.peer === `${client.ip}:${l.port}`);
      assert.equal(
        s.length,
        1,
        `exactly one backend holds ${client.ip}:${l.port}: ${JSON.stringify(before)}`,
      );
      return s[0] as BackendSocket;
    });
    // North-south (snat): the backends see the node; these are the remaining sockets.
    const northBefore = before.filter((b) => !b.peer.startsWith(`${client.ip}:`));
    assert.equal(northBefore.length, CONNECTIONS, JSON.stringify(before));
    assert.ok(
      northBefore.every((b) => b.peer.startsWith(`${nodeIP}:`)),
      JSON.stringify(northBefore),
    );

    const pid = agentPid(LAB);
    assert.ok(pid, 'the agent runs');
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(agentPid(LAB), undefined, 'the agent is gone');
    await east.pingAll();
    await north.pingAll();

    // The restarted agent loads the datapath again and replaces the programs of every veth and
    // of the external-facing device: from here on, newly loaded programs carry the packets.
    await startAgent({ ...hostRoutingAgent(), lab: LAB, nodeNetns: (await lab.node()).netns });
    const status = JSON.parse(await ok(['agent', 'status', '-o', 'json'], LAB)) as {
      socketLB: boolean;
      regenerations: { lastUpserts: number; lastDeletes: number };
    };
    assert.equal(status.socketLB, false, 'the setting persisted');
    assert.deepEqual([status.regenerations.lastUpserts, status.regenerations.lastDeletes], [0, 0]);
    for (let round = 0; round < 3; round++) {
      await east.pingAll();
      await north.pingAll();
    }
    await east.pingAll(100_000);
    await north.pingAll(100_000);

    const after = await backendSockets(lab);
    assert.deepEqual(
      after.map((s) => [s.backend, s.peer]),
      before.map((s) => [s.backend, s.peer]),
      'the same sockets on the same backends, and no new ones',
    );
    east.local.forEach((l, i) => {
      const now = after.find((s) => s.peer === `${client.ip}:${l.port}`);
      assert.equal(now?.backend, eastBackend[i]?.backend, `connection ${i} kept its backend`);
      assert.ok(
        (now?.bytesReceived ?? 0) > (eastBackend[i]?.bytesReceived ?? 0) + 100_000,
        `connection ${i}'s backend socket received the bytes sent after the restart`,
      );
    });
    // SNAT may give two connections to different backends the same node port (their tuples differ
    // by the backend): a socket is the pair of backend and peer.
    for (const b of northBefore) {
      const now = after.find((s) => s.peer === b.peer && s.backend === b.backend);
      assert.equal(now?.backend, b.backend);
      assert.ok(
        (now?.bytesReceived ?? 0) > b.bytesReceived + 100_000,
        `${b.peer} on ${b.backend} received more`,
      );
    }
  });
});
