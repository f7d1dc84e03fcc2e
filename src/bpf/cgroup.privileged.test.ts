import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isCode } from '../shared/errors.js';
import { run } from '../shared/exec.js';
import { attachCgroup, detachCgroup, queryCgroup } from './cgroup.js';
import { u32, u64 } from './codec.js';
import { TypedMap } from './map.js';
import { BpfObject } from './object.js';
import { basicsObject, testName } from './test-support.js';

const CNT_CONNECT = 2;
const CNT_CONNECT_DENIED = 3;
const DENIED_PORT = 4242;

function cgroup2Root(): string {
  const line = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[2] === 'cgroup2');
  const root = line?.split(' ')[1];
  if (!root) throw new Error('no cgroup v2 mount in /proc/mounts');
  return root;
}

// Joins the cgroup, then connects to 127.0.0.1:<port> inside its own netns (nothing listens
// there) and prints the error code: EPERM when our program refused, ECONNREFUSED otherwise.
const connector = `
require('fs').writeFileSync(process.argv[1] + '/cgroup.procs', String(process.pid));
const s = require('net').connect(Number(process.argv[2]), '127.0.0.1');
s.on('connect', () => { console.log('CONNECTED'); s.destroy(); });
s.on('error', (e) => console.log(e.code));`;

describe('cgroup attach/detach', () => {
  const name = testName();
  const cgroupPath = join(cgroup2Root(), name);
  let obj: BpfObject;

  before(async () => {
    mkdirSync(cgroupPath);
    await run(['ip', 'netns', 'add', name]);
    await run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
    obj = BpfObject.open(basicsObject);
    obj.setConfig({ cfg_deny_port: DENIED_PORT });
    obj.load();
  });
  after(async () => {
    obj?.close();
    await run(['ip', 'netns', 'del', name], { check: false });
    rmdirSync(cgroupPath);
  });

  async function connectFromCgroup(port: number): Promise<string> {
    // nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup2 mount.
    const argv = [
      'nsenter',
      `--net=/var/run/netns/${name}`,
      process.execPath,
      '-e',
      connector,
      cgroupPath,
      String(port),
    ];
    const r = await run(argv, { timeoutMs: 10_000 });
    return r.stdout.trim();
  }

  it('enforces connect4 on processes in the cgroup until detached', async () => {
    const program = obj.program('weir_connect4');
    const target = { cgroupPath, attachType: 'connect4' as const };
    assert.deepEqual(queryCgroup(target).progIds, []);

    attachCgroup({ ...target, program, flags: 'multi' });
    assert.deepEqual(queryCgroup(target).progIds, [program.id]);
    assert.equal(queryCgroup(target).attachFlags, 2, 'BPF_F_ALLOW_MULTI');
    assert.deepEqual(queryCgroup({ cgroupPath, attachType: 'connect6' }).progIds, []);

    assert.equal(await connectFromCgroup(DENIED_PORT), 'EPERM');
    assert.equal(await connectFromCgroup(DENIED_PORT + 1), 'ECONNREFUSED');
    const counters = new TypedMap(obj.map('counters'), u32(), u64());
    assert.equal(counters.lookup(CNT_CONNECT), 2n);
    assert.equal(counters.lookup(CNT_CONNECT_DENIED), 1n);

    assert.equal(detachCgroup({ ...target, program }), true);
    assert.deepEqual(queryCgroup(target).progIds, []);
    assert.equal(detachCgroup({ ...target, program }), false);
    assert.equal(await connectFromCgroup(DENIED_PORT), 'ECONNREFUSED', 'no longer enforced');
    assert.equal(counters.lookup(CNT_CONNECT), 2n);
  });

  it('names the cgroup when it does not exist', () => {
    assert.throws(
      () => queryCgroup({ cgroupPath: join(cgroup2Root(), 'weir-bpftest-missing'), attachType: 'connect4' }),
      (e) => isCode(e, 'ERR_BPF_NOT_FOUND') && /weir-bpftest-missing/.test(String(e)),
    );
  });
});
