// The underlay link of one node cut and restored, with real traffic (a lab of two nodes, tunnel
// mode, node leases of 30 s): pods of node1 and node2 talk both ways, a long-lived TCP connection
// crosses between them, a ClusterIP Service has its backend on node2 and a policy lets only the
// client reach it. The link of node2 is set down on the underlay's bridge (inside the lab's
// underlay namespace). A short cut (within the lease): every connection stalls and no verdict
// changes (the denied pod stays denied), and all of it resumes once the link is up. A cut longer
// than the lease: etcd expires node2's lease, so node2's record and identity references leave the
// cluster and node1 takes node2's pods out of its ipcache and its services; after the restore
// node2's agent registers again under a new lease and node1 puts them back — new and existing
// connections, both directions and the Service work again, the denied pod is still denied.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { vethName } from '../../src/lab/index.js';
import { run } from '../../src/shared/exec.js';
import { cli, ok, weir } from '../support/cli.js';
import { labEtcd, onNode as onNodeOf, probe8080 } from '../support/cluster-nodes.js';
import { until } from '../support/poll.js';
import { connect } from '../support/service-client.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-cul');
const LEASE_TTL = 30;

const pod = (name: string, node: string, labels: string, port = true) => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, labels: { ${labels} } }
spec:
  nodeName: ${node}
  containers: [{ name: c${port ? ', ports: [{ name: http, containerPort: 8080 }]' : ''} }]
---`;

const objects = `
${pod('c1', 'node1', 'app: client')}
${pod('other', 'node1', 'app: other', false)}
${pod('web', 'node2', 'app: web')}
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: http }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: web-from-client }
spec:
  endpointSelector: { matchLabels: { app: web } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }]
`;

interface SvcRow {
  frontend: string;
  backends: { address: string }[];
}

const onNode = (node: string, args: string[]) => onNodeOf(LAB, node, args);

const probe = (from: string, to: string) => probe8080(LAB, from, to, 2000);

/** The lab's workload answer through the Service from c1 (its pod name), else the error. */
async function viaService(ip: string): Promise<string> {
  const [t] = await connect(LAB, 'default/c1', 'tcp', ip, 80, 1, { timeoutMs: 2500 });
  return /default\/[a-z0-9-]+/.exec(t?.body ?? '')?.[0] ?? `error:${t?.error}`;
}

/** node2's record in the lab's etcd (its lease), read from the underlay namespace. */
function node2Record(): { lease?: string } | undefined {
  return (
    labEtcd<{ lease?: string } | null>(
      LAB,
      `const kv = await s.get('weir/state/nodes/v1/node2');
    console.log(JSON.stringify(kv ? { lease: kv.lease } : null));`,
    ) ?? undefined
  );
}

/**
 * A TCP connection from c1 to web:8080 held open (the workload echoes what is not HTTP): each
 * `send(word)` writes a line and resolves with the time its echo took, or rejects after `ms`.
 */
class Held {
  private readonly proc: ChildProcessWithoutNullStreams;
  private buf = '';
  private readonly seen = new Set<string>();
  private constructor(ip: string) {
    const script = `
      const s = require('net').connect({ host: process.argv[1], port: 8080 });
      s.on('connect', () => console.log('connected'));
      s.on('data', (d) => process.stdout.write(String(d)));
      s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
      s.on('close', () => { console.log('closed'); process.exit(1); });
      process.stdin.on('data', (d) => s.write(d));`;
    this.proc = spawn(weir, ['lab', 'exec', 'default/c1', '--', process.execPath, '-e', script, ip], {
      env: { ...process.env, WEIR_LAB: LAB },
    });
    this.proc.stdout.on('data', (d: Buffer) => {
      this.buf += String(d);
      const lines = this.buf.split('\n');
      this.buf = lines.pop() ?? '';
      for (const l of lines) this.seen.add(l.trim());
    });
  }
  static async open(ip: string): Promise<Held> {
    const h = new Held(ip);
    await until('the held connection is up', async () => h.seen.has('connected'), 30_000);
    return h;
  }
  write(word: string): void {
    this.proc.stdin.write(`${word}\n`);
  }
  async echoed(word: string, ms: number): Promise<number> {
    return until(
      `echo of ${word} on the held connection`,
      async () => {
        assert.ok(!this.seen.has('closed'), 'the held connection closed');
        return this.seen.has(word);
      },
      ms,
    );
  }
  has(word: string): boolean {
    return this.seen.has(word);
  }
  close(): void {
    this.proc.kill();
  }
}

/** node2's link on the underlay bridge, in the lab's underlay namespace. */
const link = (state: 'up' | 'down') =>
  run(['ip', '-n', `weir-${LAB}-underlay`, 'link', 'set', vethName('weirul', 'node2'), state]);

describe('the underlay link of one node cut and restored', () => {
  let dir: string;
  let clusterIP: string;
  let webIP: string;
  let c1IP: string;
  let held: Held | undefined;

  const node1Backends = async () => {
    const rows = JSON.parse(await onNode('node1', ['service', 'list', '-o', 'json'])) as SvcRow[];
    return rows.find((r) => r.frontend.startsWith(`${clusterIP}:80`))?.backends.length ?? 0;
  };
  const node1Ipcache = async () =>
    (
      JSON.parse(await onNode('node1', ['bpf', 'ipcache', 'list', '-o', 'json'])) as { prefix: string }[]
    ).some((e) => e.prefix === `${webIP}/32`);
  /** Everything that must work with the link up. */
  const allWork = async () => {
    assert.ok(await probe('default/c1', 'default/web'), 'c1 (node1) -> web (node2)');
    assert.ok(await probe('default/web', 'default/c1'), 'web (node2) -> c1 (node1)');
    assert.equal(await viaService(clusterIP), 'default/web', 'c1 -> Service web -> web on node2');
    assert.ok(!(await probe('default/other', 'default/web')), 'other -> web stays denied');
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-cul-'));
    await writeFile(join(dir, 'objects.yaml'), objects);
    await cli(['lab', 'down'], LAB);
    await ok(
      ['lab', 'up', '--nodes', '2', '--no-cluster-dns', '--kvstore-lease-ttl', String(LEASE_TTL)],
      LAB,
      240_000,
    );
    await ok(['apply', '-f', join(dir, 'objects.yaml')], LAB, 180_000);
    const pods = JSON.parse(await ok(['get', 'pods', '-o', 'json'], LAB)) as {
      items: { metadata: { name: string }; status: { podIP: string } }[];
    };
    const ipOf = (n: string) => pods.items.find((p) => p.metadata.name === n)?.status.podIP ?? '';
    webIP = ipOf('web');
    c1IP = ipOf('c1');
    assert.ok(webIP && c1IP);
    clusterIP = (
      JSON.parse(await ok(['get', 'service', 'web', '-o', 'json'], LAB)) as { spec: { clusterIP: string } }
    ).spec.clusterIP;
    await until('node1 lists the backend on node2', async () => (await node1Backends()) === 1, 60_000);
  });
  after(async () => {
    held?.close();
    await link('up').catch(() => undefined);
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('a cut within the lease: traffic stalls, no verdict changes; restored, it resumes', async () => {
    await allWork();
    held = await Held.open(webIP);
    held.write('one');
    await held.echoed('one', 10_000);
    const lease = node2Record()?.lease;
    assert.ok(lease, 'node2 is registered under a lease');

    await link('down');
    const cutAt = Date.now();
    try {
      held.write('two');
      // At once (the cut must stay well within the lease).
      const [there, back, svc, denied] = await Promise.all([
        probe('default/c1', 'default/web'),
        probe('default/web', 'default/c1'),
        viaService(clusterIP),
        probe('default/other', 'default/web'),
      ]);
      assert.ok(!there, 'c1 -> web fails during the cut');
      assert.ok(!back, 'web -> c1 fails during the cut');
      assert.match(svc, /^error:/, 'the Service fails during the cut');
      assert.ok(!denied, 'other -> web still denied');
      assert.ok(!held.has('two'), 'the held connection gets no echo during the cut');
    } finally {
      await link('up');
    }
    const cutMs = Date.now() - cutAt;
    // Within the lease's last renewal (every third of the TTL) plus the TTL.
    assert.ok(cutMs < (LEASE_TTL * 2000) / 3, `the short cut lasted ${cutMs} ms`);
    const t0 = Date.now();
    // The held connection: the segment sent during the cut is retransmitted, then one more.
    await held.echoed('two', 60_000);
    held.write('three');
    await held.echoed('three', 10_000);
    const resumedMs = Date.now() - t0;
    await allWork();
    console.log(`# short cut (${cutMs} ms): the held connection resumed ${resumedMs} ms after the restore`);
    assert.equal(node2Record()?.lease, lease, 'node2 kept its lease');
  });

  it("a cut longer than the lease: node2's endpoints leave node1, and come back after the restore", async () => {
    const oldLease = node2Record()?.lease;
    assert.ok(held);
    await link('down');
    let goneMs: number;
    try {
      const t0 = Date.now();
      // etcd expires node2's lease (its record with it); node1 drops node2's pods.
      await until(
        "node2 leaves node1's services",
        async () => (await node1Backends()) === 0,
        (LEASE_TTL + 60) * 1000,
      );
      await until("web leaves node1's ipcache", async () => !(await node1Ipcache()), 30_000);
      goneMs = Date.now() - t0;
      assert.equal(node2Record(), undefined, "node2's record left etcd with its lease");
      const nodes = (
        JSON.parse(await onNode('node1', ['node', 'list', '-o', 'json'])) as {
          items: { name: string }[];
        }
      ).items.map((n) => n.name);
      assert.deepEqual(nodes, ['node1']);
      assert.equal(await viaService(clusterIP), 'error:ECONNREFUSED', 'no backend: refused at once');
      assert.ok(!(await probe('default/c1', 'default/web')), 'c1 -> web fails during the cut');
      assert.ok(!(await probe('default/other', 'default/web')), 'other -> web still denied');
      held.write('four');
    } finally {
      await link('up');
    }
    const t1 = Date.now();
    // node2's agent registers again under a new lease; node1 puts its pods back.
    await until('node2 registered again', async () => node2Record() !== undefined, 90_000);
    const registeredMs = Date.now() - t1;
    assert.notEqual(node2Record()?.lease, oldLease, 'under a new lease');
    await until('node1 lists the backend on node2 again', async () => (await node1Backends()) === 1, 60_000);
    await until("web is back in node1's ipcache", node1Ipcache, 30_000);
    await until('c1 -> web works again', () => probe('default/c1', 'default/web'), 60_000);
    const backMs = Date.now() - t1;
    await allWork();
    const items = (
      JSON.parse(await onNode('node1', ['node', 'list', '-o', 'json'])) as {
        items: { name: string; status: string }[];
      }
    ).items;
    assert.deepEqual(
      items.map((n) => [n.name, n.status]),
      [
        ['node1', 'Ready'],
        ['node2', 'Ready'],
      ],
    );
    // The connection held across both cuts.
    await held.echoed('four', 90_000);
    held.write('five');
    await held.echoed('five', 10_000);
    console.log(
      `# long cut: node2 gone from node1 ${goneMs} ms after the cut; registered again ${registeredMs} ms, ` +
        `traffic back ${backMs} ms, held connection ${Date.now() - t1} ms after the restore`,
    );
    // The nodes agree on the identities again.
    const ids = await Promise.all(
      ['node1', 'node2'].map(async (n) =>
        (
          JSON.parse(await onNode(n, ['identity', 'list', '-o', 'json'])) as {
            id: number;
            labels: string[];
          }[]
        )
          .filter((i) => i.id >= 256)
          .map((i) => `${i.id} ${i.labels.join(',')}`)
          .sort(),
      ),
    );
    assert.deepEqual(ids[1], ids[0]);
  });
});
