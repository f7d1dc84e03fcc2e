import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isCode } from '../shared/errors.js';
import { run } from '../shared/exec.js';
import { u32, u64 } from './codec.js';
import { TypedMap } from './map.js';
import { ifindexIn, netnsDir, withNetns } from './netns.js';
import { BpfObject } from './object.js';
import { attachTc, destroyClsact, detachTc, queryTc } from './tc.js';
import { basicsObject, testName } from './test-support.js';

const CNT_UDP4 = 4;
const base = testName();
const nsA = `${base}-a`;
const nsB = `${base}-b`;
const addrB = '10.99.0.2';

// Bounded UDP exchange A -> B: a receiver in B says "ready" once bound, then counts datagrams for
// 1.5 s while a sender in A sends `n` of them. Returns how many arrived. (Waiting for "ready" rather
// than a fixed delay keeps a slow start on a loaded machine from losing the first datagrams.)
const receiver = `
const s = require('dgram').createSocket('udp4');
let n = 0;
s.on('message', () => n++);
s.bind(7777, process.argv[1], () => { console.log('ready'); setTimeout(() => { console.log(n); s.close(); }, 1500); });`;
const sender = `
const s = require('dgram').createSocket('udp4');
let i = 0;
const t = setInterval(() => {
  s.send('weir', 7777, process.argv[1]);
  if (++i === Number(process.argv[2])) { clearInterval(t); setTimeout(() => s.close(), 50); }
}, 20);`;

async function udpAtoB(n: number): Promise<number> {
  const rx = spawn('ip', ['netns', 'exec', nsB, process.execPath, '-e', receiver, addrB], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const killer = setTimeout(() => rx.kill('SIGKILL'), 20_000);
  let out = '';
  const ready = new Promise<void>((resolve) =>
    rx.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    }),
  );
  const done = new Promise((resolve) => rx.once('close', resolve));
  await Promise.race([ready, done]);
  await run(['ip', 'netns', 'exec', nsA, process.execPath, '-e', sender, addrB, String(n)], {
    timeoutMs: 10_000,
  });
  await done;
  clearTimeout(killer);
  return Number(out.split('\n')[1]?.trim());
}

describe('tc attach/detach', () => {
  const objects: BpfObject[] = [];
  before(async () => {
    await run(['ip', 'netns', 'add', nsA]);
    await run(['ip', 'netns', 'add', nsB]);
    // The veth is created inside nsA, its peer directly inside nsB: nothing in the root netns.
    await run([
      'ip',
      '-n',
      nsA,
      'link',
      'add',
      'veth-a',
      'type',
      'veth',
      'peer',
      'name',
      'veth-b',
      'netns',
      nsB,
    ]);
    await run(['ip', '-n', nsA, 'addr', 'add', '10.99.0.1/24', 'dev', 'veth-a']);
    await run(['ip', '-n', nsB, 'addr', 'add', `${addrB}/24`, 'dev', 'veth-b']);
    for (const [ns, dev] of [
      [nsA, 'veth-a'],
      [nsB, 'veth-b'],
    ] as const) {
      await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      await run(['ip', '-n', ns, 'link', 'set', dev, 'up']);
    }
  });
  after(async () => {
    for (const o of objects) o.close();
    await run(['ip', 'netns', 'del', nsA], { check: false });
    await run(['ip', 'netns', 'del', nsB], { check: false });
  });

  function load(config: Record<string, number>): BpfObject {
    const o = BpfObject.open(basicsObject);
    objects.push(o);
    o.setConfig(config);
    o.load();
    return o;
  }

  it('counts real traffic, replaces atomically, and detaches', async () => {
    const ifindex = ifindexIn(nsB, 'veth-b');
    const target = { ifindex, direction: 'ingress' as const, netns: nsB };
    assert.equal(queryTc(target), undefined, 'nothing attached yet');

    const pass = load({});
    const passId = attachTc({ ...target, program: pass.program('weir_tc_count') });
    assert.equal(passId, pass.program('weir_tc_count').id);
    assert.equal(queryTc(target), passId);
    // Not visible from the root namespace's device with that index.
    assert.equal(queryTc({ ...target, netns: nsA }), undefined);

    assert.equal(await udpAtoB(5), 5, 'all datagrams delivered through the pass program');
    const counters = new TypedMap(pass.map('counters'), u32(), u64());
    assert.equal(counters.lookup(CNT_UDP4), 5n, 'each datagram counted at tc ingress');

    const drop = load({ cfg_drop: 1 });
    const dropId = attachTc({ ...target, program: drop.program('weir_tc_count') });
    assert.notEqual(dropId, passId);
    assert.equal(queryTc(target), dropId, 'replaced in place');
    assert.equal(await udpAtoB(5), 0, 'the drop program drops everything');
    assert.equal(new TypedMap(drop.map('counters'), u32(), u64()).lookup(CNT_UDP4), 5n);
    assert.equal(counters.lookup(CNT_UDP4), 5n, 'the old program no longer runs');

    assert.equal(detachTc(target), true);
    assert.equal(queryTc(target), undefined);
    assert.equal(detachTc(target), false, 'second detach finds nothing');
    assert.equal(await udpAtoB(3), 3, 'traffic flows again without a program');

    attachTc({ ...target, direction: 'egress', program: pass.program('weir_tc_count') });
    assert.ok(queryTc({ ...target, direction: 'egress' }));
    destroyClsact(ifindex, nsB);
    assert.equal(queryTc({ ...target, direction: 'egress' }), undefined, 'clsact removed with its filters');
    const tcShow = await run(['ip', 'netns', 'exec', nsB, 'tc', 'qdisc', 'show', 'dev', 'veth-b']);
    assert.doesNotMatch(tcShow.stdout, /clsact/);
  });

  it('reports missing namespaces and devices clearly', () => {
    assert.throws(
      () => withNetns('weir-bpftest-none', () => 1),
      (e) => isCode(e, 'ERR_BPF_NOT_FOUND'),
    );
    assert.throws(
      () => ifindexIn(nsB, 'nope0'),
      (e) => isCode(e, 'ERR_BPF_NOT_FOUND'),
    );
    assert.throws(
      () => withNetns(nsB, () => Promise.resolve(1)),
      (e) => isCode(e, 'ERR_BPF_STATE'),
      'async fn refused',
    );
  });

  it('switches the calling thread and always switches back, even when fn throws', () => {
    const current = () => readlinkSync('/proc/thread-self/ns/net');
    const home = current();
    const inA = withNetns(nsA, current);
    assert.equal(inA, `net:[${statSync(join(netnsDir, nsA)).ino}]`, 'fn ran inside nsA');
    assert.equal(current(), home);
    assert.throws(
      () =>
        withNetns(nsA, () => {
          throw new Error('boom');
        }),
      /boom/,
    );
    assert.equal(current(), home, 'back home after a throw');
    assert.ok(ifindexIn(nsA, 'veth-a') > 0);
    assert.throws(
      () => ifindexIn(nsA, 'veth-b'),
      (e) => isCode(e, 'ERR_BPF_NOT_FOUND'),
      'veth-b is only in nsB',
    );
  });
});
