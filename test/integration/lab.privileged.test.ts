// The lab end to end, through the real CLI: the 9-pod NetworkPolicy model comes up, every pod
// reaches every pod on every declared port by real connections, bad input changes nothing, and
// `lab down` (also after a `lab up` killed midway) leaves nothing behind.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { agentClient } from '../../src/agent/client.js';
import { agentPid } from '../../src/agent/spawn.js';
import type { PodInfo } from '../../src/cluster/objects.js';
import type { V1List, V1Namespace, V1Pod } from '../../src/k8s/index.js';
import type { WeirError } from '../../src/shared/errors.js';
import { Lab, findCgroup2, probe } from '../../src/lab/index.js';
import { pinRoot, repoRoot, runDir, conformanceDir } from '../../src/shared/paths.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-lab');
const CRASH_LAB = testLab('t-labcr');
const weir = join(repoRoot, 'bin', 'weir');
const topology = JSON.parse(readFileSync(join(conformanceDir, 'netpol', 'topology.json'), 'utf8')) as {
  namespaces: { name: string }[];
  pods: {
    namespace: string;
    name: string;
    labels: Record<string, string>;
    containers: { name: string; port: number; protocol: string; portName: string }[];
  }[];
};

/** A pod of the netpol model (not the cluster DNS `lab up` adds in kube-system). */
const inModel = (namespace: string) => topology.namespaces.some((n) => n.name === namespace);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], lab = LAB): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      weir,
      args,
      { env: { ...process.env, WEIR_LAB: lab }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function ok(args: string[], lab = LAB): Promise<string> {
  const r = await cli(args, lab);
  assert.equal(r.code, 0, `weir ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function netnsOf(lab: string): Promise<string[]> {
  return (await readdir('/var/run/netns').catch(() => [])).filter((n) => n.startsWith(`weir-${lab}-`));
}

/** Everything of `lab` that must be gone after `lab down`. */
async function leftovers(lab: string, pids: number[]): Promise<string[]> {
  const out: string[] = (await netnsOf(lab)).map((n) => `netns ${n}`);
  const cg = findCgroup2();
  if (cg && existsSync(join(cg, `weir-${lab}`))) out.push(`cgroup ${join(cg, `weir-${lab}`)}`);
  if (existsSync(join(pinRoot, lab))) out.push(`pins ${join(pinRoot, lab)}`);
  if (existsSync(join(runDir, 'labs', lab))) out.push(`state ${join(runDir, 'labs', lab)}`);
  for (const pid of pids) if (running(pid)) out.push(`process ${pid}`);
  // Nothing of the lab may ever appear in the root netns.
  const links = readFileSync('/proc/net/dev', 'utf8');
  if (/^\s*weir/m.test(links)) out.push('a weir link in the root netns');
  return out;
}

/** Every process in the lab's cgroups (the node's workload, the pod host, externals), or in one. */
function cgroupPids(lab: string, only?: string): number[] {
  const root = join(findCgroup2() ?? '/sys/fs/cgroup', `weir-${lab}`);
  const dirs = only ? [only] : existsSync(root) ? readdirSync(root).map((d) => join(root, d)) : [];
  return dirs.flatMap((d) => {
    try {
      return readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
}

/** Alive and not a zombie (a killed process stays a zombie until init reaps it). */
function running(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

let dir: string;

before(async () => {
  await cli(['lab', 'down'], LAB);
  await cli(['lab', 'down'], CRASH_LAB);
  dir = await mkdtemp(join(tmpdir(), 'weir-lab-test-'));
  const docs = [
    ...topology.namespaces.map((n) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: n.name } })),
    ...topology.pods.map((p) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
      spec: {
        containers: p.containers.map((c) => ({
          name: c.name,
          image: 'weir/workload',
          ports: [{ containerPort: c.port, protocol: c.protocol, name: c.portName }],
        })),
      },
    })),
  ];
  await mkdir(join(dir, 'model'));
  await writeFile(
    join(dir, 'model', 'namespaces.yaml'),
    docs
      .slice(0, 3)
      .map((d) => stringify(d))
      .join('---\n'),
  );
  await writeFile(
    join(dir, 'model', 'pods.json'),
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs.slice(3) }),
  );
  await writeFile(
    join(dir, 'lab.yaml'),
    stringify({
      name: LAB,
      nodes: [{ name: 'node1', podCIDR: '10.244.0.0/24', podCIDRv6: 'fd00:10:244::/64' }],
    }),
  );
});

after(async () => {
  await cli(['lab', 'down'], LAB);
  await cli(['lab', 'down'], CRASH_LAB);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('lab', () => {
  let pods: PodInfo[] = [];
  let workloadPids: number[] = [];

  it('comes up with the 9 pods of the netpol model', async () => {
    await ok(['lab', 'up', '-f', join(dir, 'lab.yaml')]);
    await ok(['lab', 'up', '-f', join(dir, 'lab.yaml')]); // idempotent
    const out = await ok(['apply', '-f', join(dir, 'model')]);
    assert.match(out, /namespace\/x created/);
    assert.match(out, /pod\/c created/);
    const all = (await agentClient(LAB).call<{ items: PodInfo[] }>('GET', '/v1/pods')).items;
    // The model's 9 pods, and the cluster DNS that `lab up` runs (kube-system/coredns).
    assert.deepEqual(
      all.filter((p) => !inModel(p.namespace)).map((p) => `${p.namespace}/${p.name}`),
      ['kube-system/coredns'],
    );
    pods = all.filter((p) => inModel(p.namespace));
    assert.equal(pods.length, 9);
    const ips = new Set(pods.map((p) => p.ip));
    assert.equal(ips.size, 9);
    for (const p of pods) {
      assert.match(p.ip, /^10\.244\.0\.\d+$/);
      assert.notEqual(p.ip, '10.244.0.1');
      assert.match(p.ip6 ?? '', /^fd00:10:244::/);
      assert.equal(p.ready, true);
      assert.match(p.hostIfname, /^weir[0-9a-f]{8}$/);
      assert.equal(p.ports.length, 6);
    }

    // -o json: a v1 List of v1 Pods, as kubectl prints it.
    const list = JSON.parse(await ok(['get', 'pods', '-A', '-o', 'json'])) as V1List<V1Pod>;
    assert.deepEqual([list.apiVersion, list.kind, list.metadata], ['v1', 'List', { resourceVersion: '' }]);
    assert.equal(list.items.length, 10);
    for (const item of list.items.filter((i) => inModel(i.metadata.namespace ?? ''))) {
      const p = pods.find((x) => x.namespace === item.metadata.namespace && x.name === item.metadata.name);
      assert.ok(p, `${item.metadata.namespace}/${item.metadata.name} is a lab pod`);
      const model = topology.pods.find((x) => x.namespace === p.namespace && x.name === p.name);
      assert.deepEqual([item.apiVersion, item.kind], ['v1', 'Pod']);
      assert.match(item.metadata.uid ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.match(item.metadata.creationTimestamp ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.deepEqual(item.metadata.labels, { pod: p.name });
      assert.deepEqual(
        item.spec.containers,
        model?.containers.map((c) => ({
          name: c.name,
          image: 'weir/workload',
          ports: [{ name: c.portName, containerPort: c.port, protocol: c.protocol }],
        })),
      );
      assert.equal(item.spec.nodeName, 'node1');
      assert.equal(item.status.phase, 'Running');
      assert.deepEqual(
        item.status.conditions.map((c) => `${c.type}=${c.status}`),
        ['Initialized=True', 'Ready=True', 'ContainersReady=True', 'PodScheduled=True'],
      );
      assert.equal(item.status.podIP, p.ip);
      assert.deepEqual(item.status.podIPs, [{ ip: p.ip }, { ip: p.ip6 }]);
      assert.equal(item.status.hostIP, '10.244.0.1');
      assert.deepEqual(item.status.hostIPs, [{ ip: '10.244.0.1' }, { ip: 'fd00:10:244::1' }]);
      assert.equal(item.status.startTime, item.metadata.creationTimestamp);
    }
    // One pod by name: the object itself; -o yaml the same objects.
    const one = JSON.parse(await ok(['get', 'pod', 'b', '-n', 'y', '-o', 'json'])) as V1Pod;
    assert.deepEqual(
      one,
      list.items.find((i) => i.metadata.namespace === 'y' && i.metadata.name === 'b'),
    );
    assert.deepEqual(parse(await ok(['get', 'po/b', '-n', 'y', '-o', 'yaml'])), one);
    const yamlList = parse(await ok(['get', 'pods', '-n', 'y', '-o', 'yaml'])) as V1List<V1Pod>;
    assert.deepEqual(
      yamlList.items.map((i) => i.metadata.name),
      ['a', 'b', 'c'],
    );
    const missing = await cli(['get', 'pod', 'nope', '-n', 'y', '-o', 'json']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, '');
    assert.match(missing.stderr, /^Error: pods "nope" not found in namespace "y" \[ERR_CLI_NOT_FOUND\]\n$/);

    const nss = JSON.parse(await ok(['get', 'ns', '-o', 'json'])) as V1List<V1Namespace>;
    assert.equal(nss.kind, 'List');
    for (const n of ['x', 'y', 'z']) {
      const ns = nss.items.find((x) => x.metadata.name === n);
      assert.deepEqual(ns?.metadata.labels, { 'kubernetes.io/metadata.name': n });
      assert.deepEqual([ns?.kind, ns?.status.phase], ['Namespace', 'Active']);
    }
    const table = await ok(['get', 'po', '-n', 'y']);
    assert.match(table, /^NAME\s+READY\s+STATUS\s+IP\s+NODE\s+LABELS/);
    assert.match(table, /\nb\s+1\/1\s+Running\s+10\.244\.0\.\d+\s+node1\s+pod=b\n/);
    workloadPids = cgroupPids(LAB);
    // The node's workload and the node's pod host (one process serving all 9 pods' workloads).
    assert.ok(workloadPids.length >= 2, 'a workload for the node and the pods');
    for (const p of pods)
      assert.equal(cgroupPids(LAB, p.cgroupPath).length, 0, `no process of its own in ${p.name}`);
  });

  it('every pod reaches every pod (and itself) on each declared TCP and UDP port', async () => {
    const lab = await Lab.open(LAB);
    const probes = pods.flatMap((from) =>
      pods.flatMap((to) =>
        to.ports
          .filter((p) => p.protocol !== 'SCTP')
          .map((p) => ({
            from: `${from.namespace}/${from.name}`,
            to,
            port: p.containerPort,
            protocol: p.protocol as 'TCP' | 'UDP',
          })),
      ),
    );
    assert.equal(probes.length, 9 * 9 * 4);
    const results = await Promise.all(
      probes.map(async (p) => ({
        ...p,
        r: await probe(lab, p.from, { ip: p.to.ip, port: p.port, protocol: p.protocol }, 2000),
      })),
    );
    const failed = results
      .filter((x) => !x.r.ok)
      .map((x) => `${x.from} -> ${x.to.namespace}/${x.to.name} ${x.port}/${x.protocol}: ${x.r.error}`);
    assert.deepEqual(failed, []);
    // A port nobody serves is refused, so the probes above can fail.
    const closed = await probe(lab, 'x/a', { ip: pods[1]!.ip, port: 82, protocol: 'TCP' }, 1000);
    assert.deepEqual([closed.ok, closed.error], [false, 'ECONNREFUSED']);
  });

  it('answers HTTP with the pod name, over IPv4 and IPv6, also from the node', async () => {
    const lab = await Lab.open(LAB);
    for (const to of pods) {
      const r = await probe(lab, 'z/c', { ip: to.ip, port: 81, protocol: 'TCP' }, 2000, { http: true });
      assert.equal(r.body, `${to.namespace}/${to.name}\n`);
      const r6 = await probe(lab, 'node', { ip: to.ip6 ?? '', port: 80, protocol: 'TCP' }, 2000, {
        http: true,
      });
      assert.equal(r6.body, `${to.namespace}/${to.name}\n`);
    }
    const y = pods.find((p) => p.namespace === 'y' && p.name === 'b');
    assert.equal(
      await ok(['lab', 'exec', 'x/a', '--', 'curl', '-s', '--max-time', '5', `http://${y?.ip}/`]),
      'y/b\n',
    );
    const cliProbe = JSON.parse(
      await ok(['lab', 'probe', '--from', 'x/b', '--to', 'y/b', '--port', '80/UDP', '-o', 'json']),
    );
    assert.equal(cliProbe.ok, true);
    const refused = await cli(['lab', 'probe', '--from', 'x/b', '--to', 'y/b', '--port', '82/TCP']);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /ECONNREFUSED/);
  });

  it('exec runs inside the pod netns and cgroup, and passes the exit code on', async () => {
    const a = pods.find((p) => p.namespace === 'x' && p.name === 'a') as PodInfo;
    const cg = await ok(['lab', 'exec', 'x/a', '--', 'cat', '/proc/self/cgroup']);
    assert.match(cg, new RegExp(`^0::/weir-${LAB}/weir-x-a$`, 'm'));
    assert.match(
      await ok(['lab', 'exec', 'x/a', '--', 'ip', '-o', 'addr', 'show', 'eth0']),
      new RegExp(`inet ${a.ip.replace(/\./g, '\\.')}/32`),
    );
    assert.match(
      await ok(['lab', 'exec', 'node', '--', 'ip', '-o', 'addr', 'show', 'weir_host']),
      /inet 10\.244\.0\.1\/32/,
    );
    assert.equal((await cli(['lab', 'exec', 'x/a', '--', 'sh', '-c', 'exit 3'])).code, 3);
  });

  it('refuses bad input and creates nothing', async () => {
    const before = await netnsOf(LAB);
    const bad = join(dir, 'bad.yaml');
    await writeFile(
      bad,
      [
        'apiVersion: v1\nkind: Pod\nmetadata: {name: ok, namespace: x}\nspec: {containers: [{name: c}]}',
        'apiVersion: v1\nkind: Pod\nmetadata: {name: lost, namespace: nowhere}\nspec: {containers: [{name: c}]}',
      ].join('\n---\n'),
    );
    const r = await cli(['apply', '-f', bad]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /bad\.yaml: Pod nowhere\/lost: metadata\.namespace: namespaces "nowhere" not found/,
    );
    await writeFile(
      bad,
      'apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nspec: {containers: [{name: c, ports: [{containerPort: 99999}]}]}\n',
    );
    const r2 = await cli(['apply', '-f', bad]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /Pod x\/p: spec\.containers\[0\]\.ports\[0\]\.containerPort/);
    assert.deepEqual(await netnsOf(LAB), before);
    assert.equal((JSON.parse(await ok(['get', 'po', '-A', '-o', 'json'])) as V1List<V1Pod>).items.length, 10);
  });

  it('refuses namespaced objects of any kind in a namespace that does not exist, applying nothing', async () => {
    const policies = async () =>
      (JSON.parse(await ok(['agent', 'status', '-o', 'json'])) as { policies: number; services: number })
        .policies;
    const before = { netns: await netnsOf(LAB), policies: await policies() };
    const f = join(dir, 'missing-ns.yaml');
    await writeFile(
      f,
      [
        // Valid on their own: a new namespace with a pod and a policy in it …
        'apiVersion: v1\nkind: Namespace\nmetadata: {name: fresh}',
        'apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: fresh}\nspec: {containers: [{name: c}]}',
        'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ok, namespace: fresh}\nspec: {endpointSelector: {}, ingress: [{}]}',
        // … but these name namespaces that neither exist nor come along.
        'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: deny-all, namespace: nowhere}\nspec: {endpointSelector: {}, ingress: [{}]}',
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: nowhere}\nspec: {podSelector: {}}',
        'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: gone}\nspec: {selector: {app: web}, ports: [{port: 80}]}',
      ].join('\n---\n'),
    );
    const r = await cli(['apply', '-f', f]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '', 'nothing was created or configured');
    assert.deepEqual(r.stderr.trim().split('\n'), [
      `Error: ${f}: CiliumNetworkPolicy nowhere/deny-all: metadata.namespace: namespaces "nowhere" not found`,
      `${f}: NetworkPolicy nowhere/np: metadata.namespace: namespaces "nowhere" not found`,
      `${f}: Service gone/web: metadata.namespace: namespaces "gone" not found [ERR_K8S_NAMESPACE_NOT_FOUND]`,
    ]);
    assert.deepEqual(await netnsOf(LAB), before.netns);
    assert.equal(await policies(), before.policies);
    // The agent's API refuses the same on its own (a client that skips the CLI's check).
    const cnp = {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: 'direct', namespace: 'nowhere' },
      spec: { endpointSelector: {}, ingress: [{}] },
    };
    await assert.rejects(
      agentClient(LAB).call('POST', '/v1/apply', {
        objects: [
          { apiVersion: cnp.apiVersion, kind: cnp.kind, namespace: 'nowhere', name: 'direct', object: cnp },
        ],
      }),
      (err: WeirError) =>
        err.code === 'ERR_K8S_NAMESPACE_NOT_FOUND' &&
        err.toString() ===
          'CiliumNetworkPolicy nowhere/direct: metadata.namespace: namespaces "nowhere" not found',
    );
    assert.equal(await policies(), before.policies);
    const fresh = await cli(['get', 'ns', 'fresh']);
    assert.equal(fresh.code, 1);
    assert.match(fresh.stderr, /namespaces "fresh" not found/);
    // The namespace in the same apply is enough.
    const good = join(dir, 'later.yaml');
    await writeFile(
      good,
      [
        'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: later}\nspec: {endpointSelector: {}, ingress: [{}]}',
        'apiVersion: v1\nkind: Namespace\nmetadata: {name: later}',
      ].join('\n---\n'),
    );
    const out = await ok(['apply', '-f', good]);
    assert.match(out, /namespace\/later created/);
    assert.match(out, /ciliumnetworkpolicy\/p created/);
    assert.equal(await policies(), before.policies + 1);
    // kubectl's named form: TYPE/NAME, the namespace from -n for namespaced kinds.
    assert.equal(
      await ok(['delete', 'cnp/p', 'ns/later', '-n', 'later', '--dry-run', 'client']),
      'CiliumNetworkPolicy later/p would be deleted (dry run: nothing sent)\nNamespace later would be deleted (dry run: nothing sent)\n',
    );
    // The policy selects pods of namespace later only, which has none: no connection changes.
    assert.match(
      await ok(['delete', 'cnp', 'p', '-n', 'later', '--dry-run', 'server']),
      /^0 of \d+ connections change verdict/,
    );
    assert.equal(await policies(), before.policies + 1);
    const gone = await ok(['delete', 'cnp/p', 'ns/later', '-n', 'later']);
    assert.match(gone, /ciliumnetworkpolicy\/p deleted/);
    assert.match(gone, /namespace\/later deleted/);
    assert.equal(await policies(), before.policies);
    const missing = await cli(['delete', 'networkpolicies', 'p', '-n', 'later']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NetworkPolicy later\/p does not exist/);
    assert.match(
      await ok(['delete', 'netpol', 'p', '-n', 'later', '--ignore-not-found']),
      /networkpolicy\/p not found/,
    );
  });

  it('relabels a pod in place and removes a deleted pod completely', async () => {
    const a = pods.find((p) => p.namespace === 'x' && p.name === 'a') as PodInfo;
    const inode = statSync(`/var/run/netns/${a.netns}`).ino;
    const f = join(dir, 'xa.yaml');
    const pod = (labels: Record<string, string>, annotations: Record<string, string> = {}) =>
      stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'a', namespace: 'x', labels, annotations },
        spec: { containers: [{ name: 'c', ports: [{ containerPort: 80 }] }] },
      });
    const before = JSON.parse(await ok(['get', 'po', 'a', '-n', 'x', '-o', 'json'])) as V1Pod;
    await writeFile(f, pod({ pod: 'a', tier: 'web' }));
    assert.match(await ok(['apply', '-f', f]), /pod\/a configured/);
    const a2 = JSON.parse(await ok(['get', 'po', 'a', '-n', 'x', '-o', 'json'])) as V1Pod;
    assert.deepEqual(a2.metadata.labels, { pod: 'a', tier: 'web' });
    assert.deepEqual(a2.spec.containers, [{ name: 'c', ports: [{ containerPort: 80, protocol: 'TCP' }] }]);
    // The same pod: same uid, creation time, addresses, netns and veth.
    assert.deepEqual(
      [a2.metadata.uid, a2.metadata.creationTimestamp, a2.status.podIP],
      [before.metadata.uid, before.metadata.creationTimestamp, a.ip],
    );
    assert.equal(statSync(`/var/run/netns/${a.netns}`).ino, inode);
    assert.equal((await (await Lab.open(LAB)).pod('x/a')).hostIfindex, a.hostIfindex);
    // An annotation alone is recorded (configured), and shown.
    await writeFile(f, pod({ pod: 'a', tier: 'web' }, { owner: 'team-a' }));
    assert.match(await ok(['apply', '-f', f]), /pod\/a configured/);
    assert.match(await ok(['apply', '-f', f]), /pod\/a unchanged/);
    const a3 = JSON.parse(await ok(['get', 'po', 'a', '-n', 'x', '-o', 'json'])) as V1Pod;
    assert.deepEqual(a3.metadata.annotations, { owner: 'team-a' });
    // Its ports changed to 80/TCP only: 81 is no longer served.
    const lab = await Lab.open(LAB);
    assert.equal(
      (await probe(lab, 'y/a', { ip: a.ip, port: 81, protocol: 'TCP' }, 1000)).error,
      'ECONNREFUSED',
    );
    assert.equal((await probe(lab, 'y/a', { ip: a.ip, port: 80, protocol: 'TCP' }, 1000)).ok, true);

    const nsx = join(dir, 'nsx.yaml');
    await writeFile(nsx, 'apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n');
    const refused = await cli(['delete', '-f', nsx]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Namespace x: metadata\.name: namespace still has pods/);
    assert.match(await ok(['delete', 'pod', 'a', '-n', 'x']), /pod\/a deleted/);
    assert.equal(existsSync(`/var/run/netns/${a.netns}`), false);
    assert.equal(existsSync(a.cgroupPath), false);
    assert.equal((await probe(lab, 'y/a', { ip: a.ip, port: 80, protocol: 'TCP' }, 500)).ok, false);
  });

  it('lab down leaves no netns, cgroup, pin, process or state', async () => {
    await mkdir(join(pinRoot, LAB, 'probe-dir'), { recursive: true }); // stands in for pins of the agent
    const agent = agentPid(LAB);
    assert.ok(agent, 'the agent runs');
    const pids = [...new Set([...workloadPids, ...cgroupPids(LAB), agent])];
    assert.ok(pids.length >= 3);
    await ok(['lab', 'down']);
    assert.deepEqual(await leftovers(LAB, pids), []);
  });

  it('cleans a lab whose `lab up` was killed midway', async () => {
    const spec = join(dir, 'crash.yaml');
    await writeFile(
      spec,
      stringify({
        name: CRASH_LAB,
        externals: Array.from({ length: 6 }, (_, i) => ({
          name: `e${i}`,
          ip: `192.0.2.${i + 1}`,
          serves: [{ port: 80 }],
        })),
      }),
    );
    const child = spawn(weir, ['lab', 'up', '-f', spec], { stdio: 'ignore' });
    const nodeNs = `/var/run/netns/weir-${CRASH_LAB}-node1`;
    const deadline = Date.now() + 10_000;
    while (!existsSync(nodeNs) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    assert.ok(existsSync(nodeNs), 'the node netns should exist when lab up is killed');
    const pids = (await netnsOf(CRASH_LAB)).flatMap((n) => {
      const out = execFileSyncSafe(['ip', 'netns', 'pids', n]);
      return out.split(/\s+/).filter(Boolean).map(Number);
    });
    await ok(['lab', 'down'], CRASH_LAB);
    assert.deepEqual(await leftovers(CRASH_LAB, pids), []);
  });
});

function execFileSyncSafe(argv: string[]): string {
  try {
    return execFileSync(argv[0] as string, argv.slice(1), { encoding: 'utf8' });
  } catch {
    return '';
  }
}
