// The lab: one machine playing Kubernetes nodes. `up` creates the nodes (network namespace, host
// device, their workloads), the externals beside the first node and, with several nodes, the
// underlay joining them and the etcd they share; pods are created by each node's agent through
// the pod driver (pod.ts) for the pods scheduled on it; `down` removes everything, also what a
// crashed run left. Nothing here records what runs: names are derived, the kernel is looked at.
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { WeirError } from '../shared/errors.js';
import { run } from '../shared/exec.js';
import { pinRoot, repoRoot } from '../shared/paths.js';
import { privateDir } from '../shared/private-fs.js';
import { ensureCgroup2, findCgroup2, removeCgroup } from './cgroup.js';
import { listLabs, readConfig, withLabLock, writeConfig, type LabConfig } from './config.js';
import { execArgv } from './exec.js';
import {
  ensureExternalRoutes,
  ensureExternals,
  externalReady,
  externalsOf,
  externalWorkload,
  type ExternalInfo,
} from './external.js';
import { labDir, labsDir, nodeNetns, underlayNetns } from './names.js';
import { deleteNetns, listNetns, netnsExists } from './netns.js';
import {
  ensureBpffs,
  ensureNode,
  isCluster,
  nodeNamed,
  nodeOf,
  nodesOf,
  nodeReady,
  routingOf,
  nodeWorkload,
  type Logger,
  type NodeInfo,
} from './node.js';
import { PodDriver, type PodRuntime } from './pod.js';
import { parseLabSpec, type LabSpec } from './spec.js';
import {
  ensureNativeRoutes,
  ensureTunnel,
  ensureUnderlay,
  etcdPort,
  underlayDevice,
  underlayGateway,
} from './underlay.js';
import { findWorkload, waitReady } from './workload/spawn.js';
import { startEtcd } from '../store/etcd-server.js';
import { pidAlive } from './config.js';
import { readFile, writeFile } from 'node:fs/promises';

export const defaultLabName = () => process.env.WEIR_LAB || 'lab';

export interface LabStatus {
  name: string;
  up: boolean;
  stateDir: string;
  node?: NodeInfo & { ready: boolean };
  /** Every node, in a lab of several. */
  nodes?: (NodeInfo & { ready: boolean })[];
  externals: (ExternalInfo & { ready: boolean })[];
}

export class Lab {
  private constructor(readonly name: string) {}

  static async open(name: string = defaultLabName()): Promise<Lab> {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 24)
      throw new WeirError(
        'ERR_LAB_NAME_INVALID',
        `lab name '${name}' must be ≤ 24 lowercase alphanumerics and -`,
      );
    return new Lab(name);
  }

  get stateDir(): string {
    return labDir(this.name);
  }

  config(): Promise<LabConfig | undefined> {
    return readConfig(this.name);
  }

  /** The configuration of a lab that exists (up or not), or ERR_LAB_NOT_UP saying it does not exist. */
  async requireExists(): Promise<LabConfig> {
    const c = await this.config();
    if (!c)
      throw new WeirError(
        'ERR_LAB_NOT_UP',
        `lab "${this.name}" does not exist (create it with 'weir lab up --lab ${this.name}')`,
      );
    return c;
  }

  /** The configuration of a lab that is up, or ERR_LAB_NOT_UP saying why not. */
  async requireConfig(): Promise<LabConfig> {
    const c = await this.requireExists();
    const node = nodeOf(c);
    if (!netnsExists(node.netns))
      throw new WeirError(
        'ERR_LAB_NOT_UP',
        `lab "${this.name}" is not up (its node namespace ${node.netns} is gone; ` +
          `'weir lab up --lab ${this.name}' brings it up)`,
      );
    return c;
  }

  /** Creates (or completes, or checks) the node and externals, with their workloads. Idempotent. */
  async up(
    specIn: LabSpec = parseLabSpec({ name: this.name }),
    opts: { log?: Logger; kvstoreEndpoints?: string[] } = {},
  ): Promise<LabConfig> {
    const spec: LabSpec = { ...specIn, name: this.name };
    const log = opts.log ?? (() => undefined);
    return withLabLock(this.name, async () => {
      await ensureBpffs(log);
      const old = await this.config();
      const grows = !!old && !old.kvstore && (spec.nodes.length > 1 || opts.kvstoreEndpoints !== undefined);
      if (old && (grows || JSON.stringify(old.spec) !== JSON.stringify(spec))) {
        const pods = netnsExists(nodeOf(old).netns) ? await new PodDriver(old, nodeOf(old)).list() : [];
        if (pods.length > 0 && grows)
          // One node's state lives in its agent's file Store, a cluster's in etcd: nothing copies it.
          throw new WeirError(
            'ERR_LAB_SPEC_CHANGED',
            `lab ${this.name} runs one node with ${pods.length} pod(s), its state in the agent's file Store; ` +
              `${spec.nodes.length > 1 ? `growing it to ${spec.nodes.length} nodes` : 'moving it onto etcd'} ` +
              `would need that state copied into etcd, which weir does not do: run 'weir lab down --lab ${this.name}' ` +
              `first (its pods go), then 'weir lab up' with the nodes and apply the manifests again`,
          );
        if (pods.length > 0)
          throw new WeirError(
            'ERR_LAB_SPEC_CHANGED',
            `lab ${this.name} is up with another spec and has pods; run 'weir lab down --lab ${this.name}' first`,
          );
      }
      const given =
        opts.kvstoreEndpoints ?? (old?.kvstore?.managed === false ? old.kvstore.endpoints : undefined);
      const cluster = spec.nodes.length > 1 || given !== undefined;
      const cfg: LabConfig = {
        version: 2,
        name: this.name,
        spec,
        cgroupRoot: old?.cgroupRoot ?? (await ensureCgroup2()),
        createdAt: old?.createdAt ?? new Date().toISOString(),
        ...(cluster
          ? {
              kvstore: given
                ? { endpoints: given, managed: false }
                : { endpoints: [`http://${underlayGateway}:${etcdPort}`], managed: true },
            }
          : {}),
      };
      // Root's alone: logs name pods and addresses, sockets drive workloads.
      await privateDir(join(this.stateDir, 'logs'));
      await privateDir(join(this.stateDir, 'sockets'));
      // Write ahead: a `lab up` killed from here on leaves a configuration naming what it was creating.
      await writeConfig(cfg);
      const nodes = nodesOf(cfg);
      const node = nodeOf(cfg);
      for (const n of nodes) await ensureNode(cfg, n, log);
      await ensureExternals(cfg, node, log);
      if (isCluster(cfg)) {
        await ensureUnderlay(this.name, nodes, log);
        if (routingOf(cfg) === 'native') await ensureNativeRoutes(nodes, log);
        else await ensureTunnel(nodes, log);
        await ensureExternalRoutes(cfg, nodes, underlayDevice);
        if (cfg.kvstore?.managed) await this.ensureEtcd(log);
      }
      const workloads = [
        ...nodes.map((n) => nodeWorkload(cfg, n)),
        ...externalsOf(cfg).map((e) => externalWorkload(cfg, e)),
      ];
      await Promise.all(
        workloads.map(async (w) => {
          const found = await findWorkload(w.config, w.log);
          if (found) await waitReady(w.config.name, found);
        }),
      );
      log(`lab ${this.name} is up (state ${this.stateDir})`);
      return cfg;
    });
  }

  /**
   * The lab's etcd (a cluster's Store) in the underlay namespace, listening on the underlay's
   * gateway address, its data under the lab's state directory; started unless it runs.
   */
  private async ensureEtcd(log: Logger): Promise<void> {
    const pidFile = join(this.stateDir, 'etcd.pid');
    const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
    if (pid > 0 && pidAlive(pid)) return;
    const dataDir = join(this.stateDir, 'etcd', 'data');
    await privateDir(dataDir);
    const etcd = await startEtcd({
      name: `weir-${this.name}-etcd`,
      netns: underlayNetns(this.name),
      dataDir,
      host: underlayGateway,
      clientPort: etcdPort,
      detached: true,
    });
    await writeFile(pidFile, String(etcd.pid), { mode: 0o600 });
    log(`etcd ${etcd.url} (pid ${etcd.pid}, log ${etcd.log})`);
  }

  /** Removes weir's keys and their leases from the etcd given by --kvstore-endpoints; warns on failure. */
  private async purgeKvstore(cfg: LabConfig, log: Logger): Promise<void> {
    const endpoints = cfg.kvstore?.endpoints.join(',') ?? '';
    const netns = nodeOf(cfg).netns;
    const fail = (why: string) =>
      log(`warning: weir's keys in etcd ${endpoints} were not removed (${why}); they are under weir/`);
    if (!netnsExists(netns)) return fail(`node namespace ${netns} is gone`);
    const r = await run(
      [
        'nsenter',
        `--net=/var/run/netns/${netns}`,
        process.execPath,
        join(repoRoot, 'dist', 'src', 'store', 'etcd-purge-run.js'),
        endpoints,
        'weir/',
      ],
      { check: false, timeoutMs: 60_000 },
    );
    if (r.code !== 0) return fail(r.stderr.trim() || `exit ${r.code}`);
    const { keys, leases } = JSON.parse(r.stdout) as { keys: number; leases: number };
    log(
      `etcd ${endpoints}: removed ${keys} key(s) under weir/ and ${leases} lease(s); etcd itself keeps running`,
    );
  }

  /** The node (its workload's state with it): the first, or the one named. */
  async node(name?: string): Promise<NodeInfo & { ready: boolean }> {
    const cfg = await this.requireConfig();
    const node = nodeNamed(cfg, name);
    return { ...node, ready: await nodeReady(cfg, node) };
  }

  /** Every node of the lab (their workloads' state with them). */
  async nodes(): Promise<(NodeInfo & { ready: boolean })[]> {
    const cfg = await this.requireConfig();
    return Promise.all(nodesOf(cfg).map(async (n) => ({ ...n, ready: await nodeReady(cfg, n) })));
  }

  async externals(): Promise<(ExternalInfo & { ready: boolean })[]> {
    const cfg = await this.config();
    if (!cfg) return [];
    return Promise.all(externalsOf(cfg).map(async (e) => ({ ...e, ready: await externalReady(cfg, e) })));
  }

  /** The pod driver of a node of the lab (the first unless named): what its agent creates pods with. */
  async driver(node?: string): Promise<PodDriver> {
    const cfg = await this.requireConfig();
    return new PodDriver(cfg, nodeNamed(cfg, node));
  }

  /** A pod ('x/a', or 'a' in default) as the kernel holds it. */
  async pod(key: string): Promise<PodRuntime> {
    const [namespace, name] = key.includes('/') ? key.split('/', 2) : ['default', key];
    const cfg = await this.requireConfig();
    for (const n of nodesOf(cfg)) {
      const pod = await new PodDriver(cfg, n).inspect(namespace as string, name as string);
      if (pod) return pod;
    }
    throw new WeirError('ERR_LAB_POD_NOT_FOUND', `no pod ${namespace}/${name} in lab ${this.name}`);
  }

  /** Every pod the kernel holds on the lab's nodes. */
  async pods(): Promise<PodRuntime[]> {
    const cfg = await this.requireConfig();
    return (await Promise.all(nodesOf(cfg).map((n) => new PodDriver(cfg, n).list()))).flat();
  }

  async status(): Promise<LabStatus> {
    const cfg = await this.config();
    const up = !!cfg && netnsExists(nodeOf(cfg).netns);
    return {
      name: this.name,
      up,
      stateDir: this.stateDir,
      ...(up ? { node: await this.node() } : {}),
      ...(up && cfg.spec.nodes.length > 1 ? { nodes: await this.nodes() } : {}),
      externals: await this.externals(),
    };
  }

  /**
   * argv running `cmd` inside a pod ('x/a'), the node ('node') or an external ('ext:<name>'):
   * in its netns and its cgroup.
   */
  async execArgv(target: string, cmd: string[]): Promise<string[]> {
    return execArgv(await this.requireConfig(), target, cmd);
  }

  /** Removes everything of this lab, found from its configuration and from the kernel (after a crash). */
  async down(opts: { log?: Logger } = {}): Promise<void> {
    const log = opts.log ?? (() => undefined);
    await withLabLock(this.name, async () => {
      let cfg: LabConfig | undefined;
      try {
        cfg = await this.config();
      } catch {
        cfg = undefined; // corrupt: the kernel scan below still finds everything
      }
      const others = (await listLabs()).filter((l) => l !== this.name && l.startsWith(`${this.name}-`));
      const netnses = (await listNetns(`weir-${this.name}-`)).filter(
        (n) => !others.some((o) => n.startsWith(`weir-${o}-`)),
      );
      // An etcd the lab does not run stays; weir's keys and leases in it go (from the first node's
      // namespace, where it is reachable), so a later lab starts on an empty state.
      if (cfg?.kvstore && !cfg.kvstore.managed) await this.purgeKvstore(cfg, log);
      if (netnses.length) log(`removing ${netnses.length} netns of lab ${this.name}`);
      // Deleting a netns kills what runs in it (workloads; a node's agent, if still running).
      // Pods and externals before the node (their veth peers live in it).
      const nodes = new Set((cfg?.spec.nodes ?? []).map((n) => nodeNetns(this.name, n.name)));
      await Promise.all(netnses.filter((n) => !nodes.has(n)).map((n) => deleteNetns(n)));
      for (const n of netnses.filter((x) => nodes.has(x))) await deleteNetns(n);
      // Then the cgroups, killing anything left in them (e.g. a `lab exec` outside the netns). A
      // failure here still lets pins and state go: the next `lab down` retries the cgroups.
      let failure: unknown;
      for (const root of cgroupRoots(cfg?.cgroupRoot))
        await removeCgroup(join(root, `weir-${this.name}`)).catch((err: unknown) => (failure ??= err));
      await rm(join(pinRoot, this.name), { recursive: true, force: true });
      await rm(this.stateDir, { recursive: true, force: true });
      if (failure) throw failure;
      log(`lab ${this.name} is down`);
    });
  }
}

/** Removes every lab and every leftover weir netns, cgroup, pin and state, whoever made them. */
export async function labDownAll(opts: { log?: Logger } = {}): Promise<void> {
  const log = opts.log ?? (() => undefined);
  const roots = new Set<string>();
  for (const l of await listLabs()) {
    const c = await readConfig(l).catch(() => undefined);
    if (c) roots.add(c.cgroupRoot);
  }
  const all = await listNetns('weir-');
  log(`removing ${all.length} weir netns`);
  await Promise.all(all.map((n) => deleteNetns(n)));
  for (const root of cgroupRoots(...roots)) {
    const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
    for (const d of entries)
      if (d.isDirectory() && d.name.startsWith('weir-')) await removeCgroup(join(root, d.name));
  }
  await rm(pinRoot, { recursive: true, force: true });
  await rm(labsDir, { recursive: true, force: true });
  log('every weir lab is down');
}

function cgroupRoots(...known: (string | undefined)[]): string[] {
  return [...new Set([...known, findCgroup2()].filter((r): r is string => !!r && existsSync(r)))];
}
