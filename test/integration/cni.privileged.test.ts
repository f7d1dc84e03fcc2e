// weir as the CNI plugin of a real container runtime: Debian's podman (4.3, CNI backend) starts
// busybox containers on network `weir` inside a lab node's namespace and calls weir-cni, which asks
// the node's agent for the endpoint. What users see is asserted: podman's container has the weir
// address; `weir endpoint list`, `weir get pods` and `weir cni attachments` show it; it reaches and
// is reached by lab pods; NetworkPolicy and CiliumNetworkPolicy select it by its Pod's labels (and
// reserved:init before its Pod exists); `weir observe` shows its flows; `podman rm` leaves nothing
// (veth, endpoint, ipcache entry, identity); the agent down during ADD gives podman a clear error
// and leaks nothing, and the retry works once the agent is back; CHECK, STATUS and GC run by the
// plugin itself; `weir cni uninstall` takes the network away.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { EndpointStatus } from '../../src/agent/agent.js';
import type { CniAttachmentInfo } from '../../src/agent/cni.js';
import { agentSocket } from '../../src/agent/paths.js';
import { startAgent, stopAgent } from '../../src/agent/spawn.js';
import { Lab, labDir, podVeth } from '../../src/lab/index.js';
import { ipIn } from '../../src/lab/netns.js';
import type { Flow } from '../../src/observe/flow.js';
import { cli, ok } from '../support/cli.js';
import { hostRoutingAgent } from '../support/host-routing.js';
import { testLab } from '../support/lab-name.js';
import { busyboxRootfs, PodmanHost } from '../support/podman.js';

const LAB = testLab('t-cni');

const labPods = `
apiVersion: v1
kind: Pod
metadata: { name: lp, labels: { app: lab } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: lp2, labels: { app: lab, role: allowed } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
`;

/** The Pod object of the runtime's container weir-c1: labels only, the runtime creates it. */
const runtimePod = `
apiVersion: v1
kind: Pod
metadata:
  name: weir-c1
  labels: { app: ctr }
  annotations: { weir.dev/runtime: cni }
spec: { containers: [{ name: c }] }
`;

const policies = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: ctr-ingress }
spec:
  podSelector: { matchLabels: { app: ctr } }
  policyTypes: [Ingress]
  ingress:
    - from: [{ podSelector: { matchLabels: { role: allowed } } }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: ctr-egress-deny }
spec:
  endpointSelector: { matchLabels: { app: ctr } }
  egress:
    - toEndpoints: [{ matchLabels: { app: lab } }]
  egressDeny:
    - toEndpoints: [{ matchLabels: { role: allowed } }]
`;

/** A CiliumNetworkPolicy selecting containers whose Pod does not exist yet (reserved:init). */
const initPolicy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: init-ingress }
spec:
  endpointSelector: { matchLabels: { "reserved:init": "" } }
  ingress:
    - fromEndpoints: [{ matchLabels: { role: allowed } }]
`;

/** httpd on 8080 answering the container's name. */
const serve = (name: string) =>
  `mkdir -p /www && echo ${name} > /www/index.html && exec httpd -f -p 8080 -h /www`;

async function json<T>(args: string[]): Promise<T> {
  return JSON.parse(await ok([...args, '-o', 'json'], LAB)) as T;
}
const endpoints = () => json<EndpointStatus[]>(['endpoint', 'list']);
interface V1Pod {
  metadata: { name: string; labels?: Record<string, string> };
  status: { phase: string; podIP: string; conditions?: { type: string; status: string }[] };
}
interface PodView {
  name: string;
  ip: string;
  phase: string;
  ready: boolean;
  labels: Record<string, string>;
}
/** `weir get pods -o json`, as a user reads it. */
const pods = async (): Promise<PodView[]> =>
  (await json<{ items: V1Pod[] }>(['get', 'pods'])).items.map((p) => ({
    name: p.metadata.name,
    ip: p.status.podIP,
    phase: p.status.phase,
    ready: p.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True',
    labels: p.metadata.labels ?? {},
  }));
const attachments = () => json<CniAttachmentInfo[]>(['cni', 'attachments']);
const pod = async (name: string) => (await pods()).find((p) => p.name === name);

/** Whether `pid` is gone (or a zombie its new parent has yet to reap) within 3 s. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 150; i++) {
    let state = '';
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    } catch {
      return true;
    }
    if (state === 'Z' || state === 'X') return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

async function probe(from: string, ip: string, port: number): Promise<boolean> {
  const r = await cli(
    ['lab', 'probe', '--from', from, '--to', ip, '--port', `${port}/TCP`, '--timeout', '1500'],
    LAB,
  );
  return r.code === 0;
}

describe('weir-cni with podman', { timeout: 240_000 }, () => {
  let dir = '';
  let host: PodmanHost;
  let rootfs = '';
  let nodeNetns = '';
  const cniDirs = { confDir: '', binDir: '' };

  /** A GET over the container's nc: the first line of the answer (empty if it failed). */
  async function fromContainer(name: string, ip: string, port: number): Promise<string> {
    const r = await host.podman([
      'exec',
      name,
      '/bin/sh',
      '-c',
      `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${ip} ${port}`,
    ]);
    return r.stdout.split('\n')[0] ?? '';
  }

  /** Runs the installed plugin as the runtime would, inside the runtime's namespaces. */
  function plugin(env: Record<string, string>, stdin: unknown) {
    return host.inside([join(cniDirs.binDir, 'weir-cni')], env, JSON.stringify(stdin));
  }

  before(async () => {
    // A crashed earlier run's lab, containers and podman state go first.
    await cli(['lab', 'down'], LAB);
    dir = await mkdtemp(join(tmpdir(), 'weir-cni-'));
    cniDirs.confDir = join(dir, 'net.d');
    cniDirs.binDir = join(dir, 'bin');
    await writeFile(join(dir, 'lab.yaml'), `name: ${LAB}\n`);
    await writeFile(join(dir, 'lab-pods.yaml'), labPods);
    await writeFile(join(dir, 'runtime-pod.yaml'), runtimePod);
    await writeFile(join(dir, 'policies.yaml'), policies);
    await writeFile(join(dir, 'init-policy.yaml'), initPolicy);
    await ok(['lab', 'up', '-f', join(dir, 'lab.yaml'), '--no-agent'], LAB);
    nodeNetns = (await (await Lab.open(LAB)).node()).netns;
    await startAgent({ ...hostRoutingAgent(), lab: LAB, nodeNetns });
    await ok(['apply', '-f', join(dir, 'lab-pods.yaml')], LAB);
    // podman 4.3's libcni reads config lists up to 1.0.0.
    await ok(
      [
        'cni',
        'install',
        '--conf-dir',
        cniDirs.confDir,
        '--bin-dir',
        cniDirs.binDir,
        '--cni-version',
        '1.0.0',
      ],
      LAB,
    );
    const podmanDir = join(labDir(LAB), 'podman');
    rootfs = await busyboxRootfs(join(podmanDir, 'rootfs'));
    host = new PodmanHost(nodeNetns, podmanDir, `/weir-${LAB}/weir-podman`, cniDirs);
    await host.start();
  });

  after(async () => {
    await host?.stop();
    await cli(['cni', 'uninstall', '--conf-dir', cniDirs.confDir, '--bin-dir', cniDirs.binDir], LAB);
    await cli(['lab', 'down'], LAB);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('gives a container a weir address, an endpoint of identity reserved:init and a pod', async () => {
    const r = await host.run('weir-c1', rootfs, serve('weir-c1'));
    assert.equal(r.code, 0, r.stderr);
    const p = await pod('weir-c1');
    assert.ok(p, 'weir get pods lists the container');
    assert.equal(p.phase, 'Running');
    assert.match(p.ip, /^10\.244\.0\.\d+$/);
    // The container itself has that address on eth0 (podman's view of its netns).
    const addr = await host.podman(['exec', 'weir-c1', 'ip', '-4', 'addr', 'show', 'eth0']);
    assert.match(addr.stdout, new RegExp(`inet ${p.ip.replace(/\./g, '\\.')}/32`));
    const ep = (await endpoints()).find((e) => e.pod === 'weir-c1');
    assert.ok(ep, 'weir endpoint list shows the container');
    assert.equal(ep.identity, 5);
    assert.deepEqual(ep.labels, ['reserved:init']);
    assert.deepEqual(ep.ips, [p.ip]);
    const att = await attachments();
    assert.equal(att.length, 1);
    assert.equal(att[0]?.containerId.length, 64);
    assert.equal(att[0]?.ip, p.ip);
  });

  it('puts reserved:init policy in force until the Pod exists', async () => {
    const ip = (await pod('weir-c1'))?.ip as string;
    await ok(['apply', '-f', join(dir, 'init-policy.yaml')], LAB);
    assert.equal(await probe('default/lp2', ip, 8080), true, 'role=allowed reaches the init endpoint');
    assert.equal(await probe('default/lp', ip, 8080), false, 'others do not');
    await ok(['delete', '-f', join(dir, 'init-policy.yaml')], LAB);
  });

  it('takes its Pod labels as soon as the Pod appears, and reaches and is reached by lab pods', async () => {
    await ok(['apply', '-f', join(dir, 'runtime-pod.yaml')], LAB);
    const ep = (await endpoints()).find((e) => e.pod === 'weir-c1');
    assert.ok(ep);
    assert.ok(ep.identity >= 256, `a cluster identity, not ${ep.identity}`);
    assert.ok(ep.labels.includes('k8s:app=ctr'), ep.labels.join(','));
    const p = await pod('weir-c1');
    assert.deepEqual(p?.labels, { app: 'ctr' });
    assert.equal(p?.ready, true);
    const lp = (await pod('lp'))?.ip as string;
    assert.match(await fromContainer('weir-c1', lp, 80), /^HTTP\/1\.1 200/);
    assert.equal(await probe('default/lp', p?.ip as string, 8080), true);
  });

  it('is selected by NetworkPolicy and CiliumNetworkPolicy through its Pod labels, seen in weir observe', async () => {
    const ip = (await pod('weir-c1'))?.ip as string;
    const lp = (await pod('lp'))?.ip as string;
    const lp2 = (await pod('lp2'))?.ip as string;
    await ok(['apply', '-f', join(dir, 'policies.yaml')], LAB);
    // NetworkPolicy: ingress only from role=allowed.
    assert.equal(await probe('default/lp2', ip, 8080), true);
    assert.equal(await probe('default/lp', ip, 8080), false);
    // CNP: egress to app=lab but never to role=allowed (deny wins): lp yes, lp2 no.
    assert.equal(await fromContainer('weir-c1', lp2, 80), '');
    assert.match(await fromContainer('weir-c1', lp, 80), /^HTTP\/1\.1 200/);
    const r = await cli(['observe', '-o', 'json', '--pod', 'default/weir-c1', '--last', '200'], LAB);
    assert.equal(r.code, 0, r.stderr);
    const flows = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Flow);
    const port = (f: Flow) => f.l4?.TCP?.destination_port;
    assert.ok(
      flows.some(
        (f) =>
          f.verdict === 'DROPPED' &&
          f.source.pod_name === 'lp' &&
          f.destination.pod_name === 'weir-c1' &&
          port(f) === 8080,
      ),
      'the denied ingress from lp',
    );
    assert.ok(
      flows.some(
        (f) =>
          f.verdict === 'DROPPED' &&
          f.source.pod_name === 'weir-c1' &&
          f.destination.pod_name === 'lp2' &&
          (f.egress_denied_by ?? []).length > 0,
      ),
      'the denied egress to lp2, naming the deny rule',
    );
    assert.ok(
      flows.some(
        (f) =>
          f.verdict === 'FORWARDED' && f.source.pod_name === 'lp2' && f.destination.pod_name === 'weir-c1',
      ),
      'the allowed ingress from lp2',
    );
    await ok(['delete', '-f', join(dir, 'policies.yaml')], LAB);
  });

  it('answers CHECK, STATUS and VERSION as the spec says', async () => {
    const p = (await pod('weir-c1')) as PodView;
    const netns = await host.sandbox('weir-c1');
    const att = (await attachments())[0] as CniAttachmentInfo;
    const conf = {
      cniVersion: '1.0.0',
      name: 'weir',
      type: 'weir-cni',
      agentSocket: agentSocket(LAB),
      prevResult: {
        cniVersion: '1.0.0',
        interfaces: [{ name: 'eth0', sandbox: netns }],
        ips: [{ address: `${p.ip}/32`, interface: 0 }],
      },
    };
    const env = {
      CNI_COMMAND: 'CHECK',
      CNI_CONTAINERID: att.containerId,
      CNI_NETNS: netns,
      CNI_IFNAME: 'eth0',
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=weir-c1',
      CNI_PATH: cniDirs.binDir,
    };
    const good = await plugin(env, conf);
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.equal(good.stdout, '');
    const bad = await plugin(env, {
      ...conf,
      prevResult: { ...conf.prevResult, ips: [{ address: '10.244.0.250/32' }] },
    });
    assert.equal(bad.code, 1);
    const e = JSON.parse(bad.stdout) as { code: number; msg: string; details: string };
    assert.equal(e.code, 101);
    assert.match(e.details, /10\.244\.0\.250/);
    const st = await plugin(
      { CNI_COMMAND: 'STATUS' },
      { ...conf, cniVersion: '1.1.0', prevResult: undefined },
    );
    assert.equal(st.code, 0, st.stdout);
  });

  it('podman rm runs DEL and leaves nothing: veth, endpoint, ipcache entry, identity', async () => {
    const p = (await pod('weir-c1')) as PodView;
    const ep = (await endpoints()).find((e) => e.pod === 'weir-c1') as EndpointStatus;
    const r = await host.podman(['rm', '-f', '-t', '0', 'weir-c1']);
    assert.equal(r.code, 0, r.stderr);
    const links = await ipIn(nodeNetns, ['-j', 'link', 'show']);
    assert.ok(!links.includes(podVeth('default', 'weir-c1')), 'the host veth is gone');
    assert.equal(
      (await endpoints()).find((e) => e.pod === 'weir-c1' || e.id === ep.id),
      undefined,
    );
    const ipcache = await ok(['bpf', 'ipcache', 'list'], LAB);
    assert.ok(!ipcache.includes(`${p.ip}/32`), ipcache);
    const ids = await ok(['identity', 'list'], LAB);
    assert.ok(!ids.includes('k8s:app=ctr'), ids);
    const bpfEps = await ok(['bpf', 'endpoint', 'list'], LAB);
    assert.ok(!bpfEps.includes('weir-c1'), bpfEps);
    assert.deepEqual(await attachments(), []);
    // The Pod object stays: Pending until a runtime attaches a container again.
    assert.match(await ok(['get', 'pods', 'weir-c1'], LAB), /weir-c1\s+0\/1\s+Pending/);
    assert.equal((await pod('weir-c1'))?.phase, 'Pending');
  });

  it('the agent down during ADD: a clear error, no network, nothing leaked; the retry works', async () => {
    // A container attached before the agent goes keeps its endpoint across the restart.
    const before = await host.run('weir-c2', rootfs, serve('weir-c2'));
    assert.equal(before.code, 0, before.stderr);
    await stopAgent(LAB);
    const down = await host.run('weir-c3', rootfs, serve('weir-c3'));
    assert.notEqual(down.code, 0);
    assert.match(down.stderr, /weir agent is not reachable/);
    assert.match(down.stderr, /ERR_AGENT_UNREACHABLE/);
    const links = await ipIn(nodeNetns, ['-j', 'link', 'show']);
    assert.ok(!links.includes(podVeth('default', 'weir-c3')), 'no veth was made');
    await host.podman(['rm', '-f', '-t', '0', 'weir-c3']);
    await startAgent({ ...hostRoutingAgent(), lab: LAB, nodeNetns });
    assert.equal(await pod('weir-c3'), undefined, 'nothing of the failed ADD is stored');
    const c2 = await pod('weir-c2');
    assert.equal(c2?.phase, 'Running', 'the restarted agent keeps the attached container');
    assert.ok((await endpoints()).some((e) => e.pod === 'weir-c2' && e.state === 'ready'));
    assert.equal(await probe('default/lp', c2?.ip as string, 8080), true);
    assert.match(await fromContainer('weir-c2', (await pod('lp'))?.ip as string, 80), /^HTTP\/1\.1 200/);
    assert.equal((await host.podman(['rm', '-f', '-t', '0', 'weir-c2'])).code, 0);
    const again = await host.run('weir-c3', rootfs, serve('weir-c3'));
    assert.equal(again.code, 0, again.stderr);
    const p = await pod('weir-c3');
    assert.equal(p?.phase, 'Running');
    assert.equal(await probe('default/lp', p?.ip as string, 8080), true);
  });

  it('GC removes the attachments of containers the runtime no longer lists', async () => {
    const r = await host.run('weir-c4', rootfs, serve('weir-c4'));
    assert.equal(r.code, 0, r.stderr);
    const keep = (await attachments()).find((a) => a.name === 'weir-c3') as CniAttachmentInfo;
    const gc = await plugin(
      { CNI_COMMAND: 'GC', CNI_PATH: cniDirs.binDir },
      {
        cniVersion: '1.1.0',
        name: 'weir',
        type: 'weir-cni',
        agentSocket: agentSocket(LAB),
        'cni.dev/valid-attachments': [{ containerID: keep.containerId, ifname: 'eth0' }],
      },
    );
    assert.equal(gc.code, 0, gc.stdout);
    assert.deepEqual(
      (await attachments()).map((a) => a.name),
      ['weir-c3'],
    );
    assert.equal(
      (await endpoints()).find((e) => e.pod === 'weir-c4'),
      undefined,
    );
    // podman's own DEL afterwards finds nothing to remove (DEL is idempotent).
    const rmc = await host.podman(['rm', '-f', '-t', '0', 'weir-c4']);
    assert.equal(rmc.code, 0, rmc.stderr);
  });

  it("a new sandbox of the same pod replaces the old one's attachment (as kubelet's restarts do)", async () => {
    const r = await host.run('weir-c8', rootfs, serve('weir-c8'));
    assert.equal(r.code, 0, r.stderr);
    const old = (await attachments()).find((a) => a.name === 'weir-c8') as CniAttachmentInfo;
    // Another sandbox netns for the pod, in the runtime's mount namespace (its /run/netns).
    assert.equal((await host.inside(['ip', 'netns', 'add', 'weir-sandbox2'])).code, 0);
    try {
      const conf = { cniVersion: '1.0.0', name: 'weir', type: 'weir-cni', agentSocket: agentSocket(LAB) };
      const env = {
        CNI_CONTAINERID: 'f'.repeat(64),
        CNI_NETNS: '/run/netns/weir-sandbox2',
        CNI_IFNAME: 'eth0',
        CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=weir-c8',
        CNI_PATH: cniDirs.binDir,
      };
      const add = await plugin({ ...env, CNI_COMMAND: 'ADD' }, conf);
      assert.equal(add.code, 0, add.stdout + add.stderr);
      const result = JSON.parse(add.stdout) as { ips: { address: string }[] };
      const now = (await attachments()).find((a) => a.name === 'weir-c8');
      assert.equal(now?.containerId, 'f'.repeat(64));
      assert.notEqual(now?.hostIfname, '');
      // The endpoint is the new veth's, programs and all (CHECK looks at both tc hooks).
      const check = await plugin({ ...env, CNI_COMMAND: 'CHECK' }, { ...conf, prevResult: result });
      assert.equal(check.code, 0, check.stdout);
      const ep = (await endpoints()).find((e) => e.pod === 'weir-c8');
      const links = JSON.parse(await ipIn(nodeNetns, ['-j', 'link', 'show'])) as {
        ifindex: number;
        ifname: string;
      }[];
      assert.equal(links.find((l) => l.ifindex === ep?.ifindex)?.ifname, now?.hostIfname);
      // podman's DEL of the old container removes nothing of the new one.
      assert.equal((await host.podman(['rm', '-f', '-t', '0', 'weir-c8'])).code, 0);
      assert.equal((await attachments()).find((a) => a.name === 'weir-c8')?.containerId, 'f'.repeat(64));
      assert.notEqual(old.containerId, 'f'.repeat(64));
      const del = await plugin({ ...env, CNI_COMMAND: 'DEL' }, conf);
      assert.equal(del.code, 0, del.stdout);
      assert.equal(
        (await attachments()).find((a) => a.name === 'weir-c8'),
        undefined,
      );
      assert.equal(
        (await endpoints()).find((e) => e.pod === 'weir-c8'),
        undefined,
      );
    } finally {
      await host.inside(['ip', 'netns', 'del', 'weir-sandbox2']);
    }
  });

  it('weir cni uninstall takes the network away', async () => {
    await ok(['cni', 'uninstall', '--conf-dir', cniDirs.confDir, '--bin-dir', cniDirs.binDir], LAB);
    assert.equal(existsSync(join(cniDirs.confDir, '10-weir.conflist')), false);
    assert.equal(existsSync(join(cniDirs.binDir, 'weir-cni')), false);
    const r = await host.run('weir-c5', rootfs, 'sleep 1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /weir/);
  });

  it("weir lab down sweeps a crashed run's containers, podman processes and state", async () => {
    await ok(
      [
        'cni',
        'install',
        '--conf-dir',
        cniDirs.confDir,
        '--bin-dir',
        cniDirs.binDir,
        '--cni-version',
        '1.0.0',
      ],
      LAB,
    );
    const r = await host.run('weir-c6', rootfs, serve('weir-c6'));
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(
      (await host.podman(['inspect', '--format', '{{.State.Pid}}', 'weir-c6'])).stdout.trim(),
    );
    assert.ok(pid > 0);
    const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    assert.match(cgroup, new RegExp(`/weir-${LAB}/weir-podman/`), 'the container runs under the lab cgroup');
    // A crash: nobody removes the container or stops the runtime's holder.
    await ok(['lab', 'down'], LAB);
    assert.ok(await gone(pid), 'the container process is gone');
    assert.equal(existsSync(join(labDir(LAB), 'podman')), false, "podman's state is gone");
    const left = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(join(labDir(LAB), 'podman')));
    assert.deepEqual(left, [], 'no conmon or podman process of the lab is left');
  });
});
