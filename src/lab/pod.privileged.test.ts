// The pod driver: pods are real network namespaces and veths, found again from the kernel alone;
// a pod created without workload (weir.dev/workload: "none") gets no process; a pod's workload is
// served by the node's one pod host, on sockets inside the pod's netns and cgroup.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Lab, probe } from './index.js';
import { netnsExists } from './netns.js';
import type { PodDriver } from './pod.js';
import { testLab } from '../../test/support/lab-name.js';

const LAB = testLab('t-noworkload');
const ports = [{ containerPort: 80, protocol: 'TCP' as const }];
const procs = (cgroup: string) =>
  existsSync(cgroup) ? readFileSync(`${cgroup}/cgroup.procs`, 'utf8').split('\n').filter(Boolean) : [];

describe('lab: the pod driver', () => {
  let lab: Lab;
  let driver: PodDriver;
  before(async () => {
    lab = await Lab.open(LAB);
    await lab.down();
    await lab.up();
    driver = await lab.driver();
  });
  after(async () => {
    await lab.down();
  });

  it('creates a pod without workload (netns, veth, route) and starts no process', async () => {
    let plumbedDown: boolean | undefined;
    const idle = await driver.create(
      { namespace: 'default', name: 'idle', ip: '10.244.0.2', ports, noWorkload: true },
      async (pod) => {
        // The datapath would attach here: the host veth exists but carries nothing yet.
        const { run } = await import('../shared/exec.js');
        const out = await run(['ip', '-n', driver.node.netns, '-j', 'link', 'show', pod.hostIfname]);
        plumbedDown = (JSON.parse(out.stdout) as { flags: string[] }[])[0]?.flags.includes('UP') === false;
      },
    );
    assert.equal(plumbedDown, true, 'onPlumbed runs while the host veth is down');
    const busy = await driver.create({ namespace: 'default', name: 'busy', ip: '10.244.0.3', ports });
    await driver.waitReady(busy);
    assert.ok(netnsExists(idle.netns));
    assert.deepEqual(procs(idle.cgroupPath), []);
    // No process per pod: the busy pod's port is a socket of its own netns and cgroup.
    assert.deepEqual(procs(busy.cgroupPath), []);
    const { run } = await import('../shared/exec.js');
    const ss = (await run(['ip', 'netns', 'exec', busy.netns, 'ss', '-Htln', '--cgroup', 'sport = :80']))
      .stdout;
    assert.match(ss, /LISTEN/, 'port 80 listens in the pod netns');
    // ss names the socket's cgroup by path, or by id (the cgroup directory's inode, in hex) when it
    // cannot walk to it from its cgroup2 mount.
    const cg = /cgroup:(\S+)/.exec(ss)?.[1] ?? '';
    const id = statSync(busy.cgroupPath).ino.toString(16);
    assert.ok(
      cg.endsWith(`:${id}`) || busy.cgroupPath.endsWith(cg),
      `socket cgroup ${cg}, pod cgroup id ${id}`,
    );
    const idleSs = (await run(['ip', 'netns', 'exec', idle.netns, 'ss', '-Htln'])).stdout;
    assert.equal(idleSs.trim(), '', 'nothing listens in the workload-less pod');
    assert.equal(await driver.ready(idle, ports, true), true);
    assert.equal(await driver.ready(busy, ports), true);
    // The busy pod reaches the idle one over both veths, and nothing listens there: refused, not
    // timed out, so the plumbing is real and no workload serves.
    const r = await probe(lab, 'default/busy', { ip: idle.ip, port: 80, protocol: 'TCP' }, 2000);
    assert.equal(r.ok, false);
    assert.equal(r.error, 'ECONNREFUSED');
  });

  it('finds the pods again from the kernel alone (host veth alias and route)', async () => {
    const listed = (await driver.list()).map((p) => `${p.namespace}/${p.name} ${p.ip}`).sort();
    assert.deepEqual(listed, ['default/busy 10.244.0.3', 'default/idle 10.244.0.2']);
    const idle = await lab.pod('idle');
    assert.equal(idle.hostIfname, driver.names('default', 'idle').hostIfname);
  });

  it('restarts a workload whose ports changed, and removes a pod completely', async () => {
    const busy = await lab.pod('default/busy');
    await driver.ensureWorkload(busy, [{ containerPort: 81, protocol: 'TCP' }]);
    const r = await probe(lab, 'node', { ip: busy.ip, port: 81, protocol: 'TCP' }, 2000);
    assert.equal(r.ok, true, 'the new port is served');
    await driver.destroy('default', 'busy');
    assert.equal(netnsExists(busy.netns), false);
    assert.equal(existsSync(busy.cgroupPath), false);
    assert.deepEqual(
      (await driver.list()).map((p) => p.name),
      ['idle'],
    );
  });
});
