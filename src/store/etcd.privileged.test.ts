// The Store contract against a real etcd (Debian's etcd-server 3.4): the test starts etcd as a
// weir-named member inside its own network namespace (weir-t-store-<tag>, loopback only), runs
// the contract suite in a child process entered into that namespace, and removes both after.
// Nothing listens or connects in the machine's root namespace.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { addNetns, deleteNetns, ipIn } from '../lab/netns.js';
import { repoRoot } from '../shared/paths.js';
import { startEtcd, type EtcdServer } from './etcd-server.js';

const tag = process.env.WEIR_TEST_LAB_SUFFIX || String(process.pid);
const netns = `weir-t-store-${tag}`;
const dir = mkdtempSync(join(tmpdir(), 'weir-etcd-'));
let etcd: EtcdServer | undefined;

before(async () => {
  await deleteNetns(netns);
  await addNetns(netns);
  await ipIn(netns, ['link', 'set', 'lo', 'up']);
  etcd = await startEtcd({ name: `weir-t-store-${tag}`, netns, dataDir: join(dir, 'data') });
});

after(async () => {
  await etcd?.stop();
  await deleteNetns(netns);
  rmSync(dir, { recursive: true, force: true });
});

describe('EtcdStore', () => {
  it('passes the Store contract against etcd, its client inside the namespace', async () => {
    const url = etcd?.url as string;
    const child = spawn(
      'nsenter',
      [
        `--net=/var/run/netns/${netns}`,
        '--',
        process.execPath,
        '--test-reporter=spec',
        join(repoRoot, 'dist', 'src', 'store', 'etcd-contract-run.js'),
        url,
      ],
      // Without the parent runner's NODE_TEST_CONTEXT the child reports in text, not to this runner.
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_TEST_CONTEXT: undefined } },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
    process.stdout.write(out);
    assert.equal(code, 0, `the contract suite failed against etcd:\n${out}`);
    assert.match(out, /pass 10\b/, 'every contract case ran');
  });

  it('etcd listened only inside its namespace', async () => {
    // The root namespace has no listener on etcd's port.
    const listening = readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .slice(1)
      .filter((l) => l.trim().split(/\s+/)[3] === '0A')
      .map((l) => parseInt(l.trim().split(/\s+/)[1]?.split(':')[1] ?? '0', 16));
    assert.equal(listening.includes(2379), false);
  });
});
