// `weir lab up --kvstore-endpoints URL`: a lab of two nodes on an etcd weir does not run. The test
// runs its own etcd (Debian's binary, data in a temp dir) in a weir-named network namespace it
// creates, on an address of the underlay's subnet whose veth it plugs into the lab's underlay
// bridge (where the nodes reach it). Pods on both nodes reach each other; the keys are under
// weir/state/… in that etcd; `weir lab down` leaves that etcd running with its other keys and
// leases, and removes weir's keys and leases; an endpoint nobody answers on is a clear error.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addNetns, deleteNetns, ipIn } from '../../src/lab/netns.js';
import { startEtcd, type EtcdServer } from '../../src/store/etcd-server.js';
import { repoRoot } from '../../src/shared/paths.js';
import { cli, ok } from '../support/cli.js';
import { crossNodePods } from '../support/cluster-pods.js';
import { testLab } from '../support/lab-name.js';
import { writeFile } from 'node:fs/promises';

const LAB = testLab('t-kvs');
/** Not under weir-<lab>-: `lab down` must not take it. */
const ETCD_NS = `weir-etcd-${LAB}`;
const ETCD_IP = '198.18.0.5';
const URL = `http://${ETCD_IP}:2379`;

/** Runs `body` (an async module body with `c`, an etcd3 client) against the test's etcd. */
function etcd(body: string): unknown {
  const script = `
    const { Etcd3 } = await import('etcd3');
    const c = new Etcd3({ hosts: 'http://127.0.0.1:2379' });
    try { console.log(JSON.stringify(await (async () => { ${body} })() ?? null)); } finally { c.close(); }`;
  const r = spawnSync(
    'nsenter',
    [`--net=/var/run/netns/${ETCD_NS}`, process.execPath, '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 30_000, cwd: repoRoot },
  );
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const keys = (prefix: string) =>
  etcd(
    `return Object.keys(await c.getAll().prefix(${JSON.stringify(prefix)}).strings()).sort();`,
  ) as string[];
const leases = () =>
  etcd(`return (await c.leaseClient.leaseLeases({})).leases.map((l) => String(l.ID)).sort();`) as string[];

async function probe(from: string, to: string): Promise<boolean> {
  const r = await cli(
    ['lab', 'probe', '--from', from, '--to', to, '--port', '8080/TCP', '--timeout', '2000'],
    LAB,
  );
  return r.code === 0;
}

describe('a lab on an etcd weir does not run (--kvstore-endpoints)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-kvs-'));
  let server: EtcdServer | undefined;
  let ownLease: string;

  before(async () => {
    await cli(['lab', 'down'], LAB);
    await deleteNetns(ETCD_NS);
    await addNetns(ETCD_NS);
    await ipIn(ETCD_NS, ['link', 'set', 'lo', 'up']);
    // Both ends here for now; weirkv1 joins the lab's underlay bridge once it exists.
    await ipIn(ETCD_NS, ['link', 'add', 'weirkv0', 'type', 'veth', 'peer', 'name', 'weirkv1']);
    await ipIn(ETCD_NS, ['addr', 'add', `${ETCD_IP}/24`, 'dev', 'weirkv0']);
    await ipIn(ETCD_NS, ['link', 'set', 'weirkv0', 'mtu', '9000', 'up']);
    server = await startEtcd({
      name: `weir-etcd-${LAB}`,
      netns: ETCD_NS,
      dataDir: join(dir, 'data'),
      host: ETCD_IP,
    });
    // Someone else's key, under a lease of theirs: weir must leave both alone.
    ownLease = etcd(`
      const l = c.lease(600, { autoKeepAlive: false });
      await l.put('other/app/config').value('{"a":1}');
      return String(await l.grant());`) as string;
    await writeFile(join(dir, 'pods.yaml'), crossNodePods);
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await server?.stop();
    await deleteNetns(ETCD_NS);
    rmSync(dir, { recursive: true, force: true });
  });

  it('lab up on it: two nodes, pods on both reach each other, the keys are in that etcd', async () => {
    // The nodes and the underlay first (no agents), then the etcd joins the underlay, then the agents.
    await ok(
      ['lab', 'up', '--nodes', '2', '--no-cluster-dns', '--no-agent', '--kvstore-endpoints', URL],
      LAB,
      240_000,
    );
    await ipIn(ETCD_NS, ['link', 'set', 'weirkv1', 'netns', `weir-${LAB}-underlay`]);
    await ipIn(`weir-${LAB}-underlay`, ['link', 'set', 'weirkv1', 'mtu', '9000', 'master', 'weir_ul', 'up']);
    await ok(['lab', 'up', '--nodes', '2', '--no-cluster-dns'], LAB, 240_000);
    const { items } = JSON.parse(await ok(['node', 'list', '-o', 'json'], LAB)) as {
      items: { name: string; status: string }[];
    };
    assert.deepEqual(
      items.map((n) => [n.name, n.status]),
      [
        ['node1', 'Ready'],
        ['node2', 'Ready'],
      ],
    );
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB, 180_000);
    assert.ok(await probe('default/client', 'default/server'), 'client (node1) -> server (node2)');
    // The lab runs no etcd of its own.
    assert.ok(
      !spawnSync('pgrep', ['-f', `name=weir-${LAB}-etcd`], { encoding: 'utf8' }).stdout.trim(),
      'no lab etcd',
    );
    const state = keys('weir/state/');
    for (const k of [
      'weir/state/nodes/v1/node1',
      'weir/state/nodes/v1/node2',
      'weir/state/pods/v1/default/client',
      'weir/state/pods/v1/default/server',
    ])
      assert.ok(state.includes(k), `${k} in the external etcd (${state.join(' ')})`);
    assert.ok(state.some((k) => k.startsWith('weir/state/identities/v1/id/')));
    assert.ok(keys('weir/desired/').some((k) => k.includes('/Pod/') && k.endsWith('/server')));
  });

  it("lab down leaves that etcd running and its other keys; weir's keys and leases go", async () => {
    const before = leases();
    assert.ok(before.length > 1, 'the nodes hold leases');
    const down = await cli(['lab', 'down'], LAB);
    assert.equal(down.code, 0, down.stderr);
    assert.match(
      down.stderr,
      /etcd http:\/\/198\.18\.0\.5:2379: removed \d+ key\(s\) under weir\/ and [1-9]\d* lease\(s\); etcd itself keeps running/,
    );
    assert.deepEqual(keys('weir/'), []);
    assert.deepEqual(keys('other/'), ['other/app/config']);
    assert.deepEqual(leases(), [ownLease]);
    assert.ok(server && spawnSync('kill', ['-0', String(server.pid)]).status === 0, 'etcd still runs');
  });

  it('an endpoint nobody answers on: lab up fails, naming it', async () => {
    const r = await cli(
      ['lab', 'up', '--nodes', '2', '--no-cluster-dns', '--kvstore-endpoints', 'http://198.18.0.99:2379'],
      LAB,
      240_000,
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /198\.18\.0\.99:2379/);
    assert.match(r.stderr, /not reachable|unreachable|did not answer/i);
    await ok(['lab', 'down'], LAB);
  });
});
