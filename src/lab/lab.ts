// The lab: one machine playing a Kubernetes node. The node, its pods and external hosts are
// network namespaces wired with veths (no containers, no API server); state.json records it all.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  podContainers,
  podPorts,
  podRunsWorkload,
  podTerminating,
  workloadAnnotation,
  type Pod,
} from '../k8s/core.js';
import { objectName, type Manifest } from '../k8s/manifest.js';
import { manifestRef, namespaceProblems } from '../k8s/namespaces.js';
import { ValidationError, WeirError } from '../shared/errors.js';
import { run } from '../shared/exec.js';
import { bpffsRoot, pinRoot } from '../shared/paths.js';
import { privateDir } from '../shared/private-fs.js';
import { ensureCgroup, ensureCgroup2, findCgroup2, removeCgroup } from './cgroup.js';
import { host4, host6, parseCidr4, parseCidr6, size4, transitHost } from './cidr.js';
import {
  addNetns,
  deleteNetns,
  ifindexIn,
  ipBatch,
  ipIn,
  killQuietly,
  listNetns,
  netnsExists,
  sysctlIn,
} from './netns.js';
import { parseLabSpec, transitCidr, type LabSpec } from './spec.js';
import {
  labDir,
  labsDir,
  listLabs,
  readState,
  withLabLock,
  writeState,
  type ExternalState,
  type LabState,
  type NamespaceState,
  type NodeState,
  type PodState,
  type WorkloadState,
} from './state.js';
import { startWorkload, stopWorkload, waitReady, workloadAlive } from './workload/spawn.js';
import type { WorkloadConfig } from './workload/protocol.js';

export const defaultLabName = () => process.env.WEIR_LAB || 'lab';
const hostDummy = 'weir_host';
const nsNameLabel = 'kubernetes.io/metadata.name';
const createConcurrency = 4;

/** A pod as the lab reports it: its state without the workload's bookkeeping, plus readiness. */
export type PodInfo = Omit<PodState, 'workload'> & { ready: boolean };

export interface NodeInfo {
  name: string;
  netns: string;
  ip: string;
  ip6?: string;
  podCIDR: string;
  podCIDRv6?: string;
  ready: boolean;
}

export interface ExternalInfo extends Omit<ExternalState, 'workload'> {
  ready: boolean;
}

export type Logger = (line: string) => void;

/** Callbacks run after state.json holds the change (the agent hooks in here). */
export interface ApplyOptions {
  log?: Logger;
  /** A new pod's veth exists but is still down (no traffic yet): the agent attaches here. */
  onPodPlumbed?: (pod: PodState) => void | Promise<void>;
  onPodCreated?: (pod: PodInfo) => void | Promise<void>;
  onPodUpdated?: (pod: PodInfo, previous: PodInfo) => void | Promise<void>;
  onPodRemoved?: (pod: PodInfo) => void | Promise<void>;
  onNamespaceUpdated?: (ns: NamespaceState) => void | Promise<void>;
}

export interface DeleteOptions extends ApplyOptions {
  ignoreNotFound?: boolean;
}

export interface ApplyResult {
  /** kubectl style: "pod/a", "namespace/x". */
  object: string;
  namespace?: string;
  action: 'created' | 'configured' | 'unchanged' | 'deleted' | 'not found';
}

export interface LabStatus {
  name: string;
  up: boolean;
  stateDir: string;
  node?: NodeInfo;
  externals: ExternalInfo[];
  namespaces: number;
  pods: number;
  podsReady: number;
}

/** Host-side veth name (≤ 15 chars): weir + 8 hex digits of a hash of namespace/name. */
export function vethName(prefix: string, key: string): string {
  return prefix + createHash('sha256').update(key).digest('hex').slice(0, 8);
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

  state(): Promise<LabState | undefined> {
    return readState(this.name);
  }

  /** The state of a lab that exists (up or not), or ERR_LAB_NOT_UP saying it does not exist. */
  async requireExists(): Promise<LabState> {
    const s = await this.state();
    if (!s)
      throw new WeirError(
        'ERR_LAB_NOT_UP',
        `lab "${this.name}" does not exist (create it with 'weir lab up --lab ${this.name}')`,
      );
    return s;
  }

  /** The state of a lab that is up, or ERR_LAB_NOT_UP saying why not. */
  async requireState(): Promise<LabState & { node: NodeState }> {
    const s = await this.requireExists();
    if (!s.node || !netnsExists(s.node.netns))
      throw new WeirError(
        'ERR_LAB_NOT_UP',
        `lab "${this.name}" is not up (${s.node ? `its node namespace ${s.node.netns} is gone` : 'it has no node yet'}; ` +
          `'weir lab up --lab ${this.name}' brings it up)`,
      );
    return s as LabState & { node: NodeState };
  }

  /** Creates (or completes, or checks) the lab: node netns, externals, workloads. Idempotent. */
  async up(specIn: LabSpec = parseLabSpec({ name: this.name }), opts: { log?: Logger } = {}): Promise<void> {
    const spec: LabSpec = { ...specIn, name: this.name };
    const log = opts.log ?? (() => undefined);
    await withLabLock(this.name, async () => {
      await ensureBpffs(log);
      const old = await this.state();
      if (old && JSON.stringify(old.spec) !== JSON.stringify(spec) && Object.keys(old.pods).length > 0)
        throw new WeirError(
          'ERR_LAB_SPEC_CHANGED',
          `lab ${this.name} is up with another spec and has pods; run 'weir lab down --lab ${this.name}' first`,
        );
      const cgroupRoot = old?.cgroupRoot ?? (await ensureCgroup2());
      const state: LabState = old ?? {
        version: 1,
        name: this.name,
        spec,
        cgroupRoot,
        cgroupPath: join(cgroupRoot, `weir-${this.name}`),
        createdAt: new Date().toISOString(),
        externals: [],
        namespaces: {
          default: {
            name: 'default',
            labels: { [nsNameLabel]: 'default' },
            uid: randomUUID(),
            createdAt: new Date().toISOString(),
          },
        },
        pods: {},
      };
      state.spec = spec;
      // Root's alone, like the state: logs name pods and addresses, sockets drive workloads.
      await privateDir(join(this.stateDir, 'logs'));
      await privateDir(join(this.stateDir, 'sockets'));
      const nodeSpec = spec.nodes[0];
      if (!nodeSpec) throw new WeirError('ERR_LAB_SPEC_INVALID', 'a lab needs one node');
      const pods = parseCidr4(nodeSpec.podCIDR);
      const pods6 = nodeSpec.podCIDRv6 === undefined ? undefined : parseCidr6(nodeSpec.podCIDRv6);
      if (!pods) throw new WeirError('ERR_LAB_SPEC_INVALID', `bad podCIDR ${nodeSpec.podCIDR}`);
      const node: NodeState = {
        name: nodeSpec.name,
        netns: `weir-${this.name}-${nodeSpec.name}`,
        ip: host4(pods, 1),
        ...(pods6 ? { ip6: host6(pods6, 1), podCIDRv6: nodeSpec.podCIDRv6 } : {}),
        podCIDR: nodeSpec.podCIDR,
        cgroupPath: join(state.cgroupPath, `weir-node.${nodeSpec.name}`),
        ...(old?.node?.workload ? { workload: old.node.workload } : {}),
      };
      state.node = node;
      // Write ahead: a `lab up` killed from here on leaves a state naming what it was creating.
      await writeState(state);

      log(`node ${node.name}: netns ${node.netns}, InternalIP ${node.ip}${node.ip6 ? ` ${node.ip6}` : ''}`);
      await addNetns(node.netns);
      await sysctlIn(node.netns, {
        'net.ipv4.ip_forward': 1,
        ...(pods6 ? { 'net.ipv6.conf.all.forwarding': 1, 'net.ipv6.conf.default.accept_dad': 0 } : {}),
      });
      const hasDummy =
        (await run(['ip', '-n', node.netns, 'link', 'show', hostDummy], { check: false })).code === 0;
      if (!hasDummy) await addHostDevice(node.netns);
      await ipBatch(node.netns, [
        ['link', 'set', 'lo', 'up'],
        ['addr', 'replace', `${node.ip}/32`, 'dev', hostDummy],
        ...(node.ip6 ? [['addr', 'replace', `${node.ip6}/128`, 'dev', hostDummy, 'nodad']] : []),
        ['link', 'set', hostDummy, 'up'],
      ]);
      await ensureCgroup(node.cgroupPath);
      node.workload = await this.ensureWorkload(node.netns, node.workload, {
        name: 'node',
        file: `node-${node.name}`,
        cgroup: node.cgroupPath,
        ports: (nodeSpec.serves ?? []).map((s) => ({ port: s.port, protocol: s.protocol })),
      });
      await writeState(state);

      state.externals = await this.ensureExternals(state, spec, log);
      await writeState(state);

      // Bring back pod workloads that died (e.g. after a reboot of the workload processes).
      for (const p of Object.values(state.pods)) {
        if (!netnsExists(p.netns))
          throw new WeirError(
            'ERR_LAB_BROKEN',
            `pod ${p.namespace}/${p.name} lost its netns ${p.netns}; run 'weir lab down'`,
          );
        if (!p.noWorkload) p.workload = await this.ensureWorkload(p.netns, p.workload, podWorkload(p));
      }
      await writeState(state);
      const all = [
        node.workload,
        ...state.externals.map((e) => e.workload),
        ...Object.values(state.pods).map((p) => p.workload),
      ];
      await Promise.all(all.map((w) => (w ? waitReady(this.name, w) : undefined)));
      log(`lab ${this.name} is up (state ${this.stateDir})`);
    });
  }

  private async ensureExternals(state: LabState, spec: LabSpec, log: Logger): Promise<ExternalState[]> {
    const node = state.node as NodeState;
    const out: ExternalState[] = [];
    const wanted = new Set(spec.externals.map((e) => e.name));
    for (const e of state.externals.filter((x) => !wanted.has(x.name))) {
      log(`external ${e.name}: removing`);
      await stopWorkload(e.workload);
      await removeCgroup(e.cgroupPath);
      await deleteNetns(e.netns);
      await ipIn(node.netns, ['route', 'del', `${e.ip}/32`]).catch(() => undefined);
    }
    for (const [i, e] of spec.externals.entries()) {
      const old = state.externals.find((x) => x.name === e.name);
      const ext: ExternalState = {
        name: e.name,
        ip: e.ip,
        netns: `weir-${this.name}-ext-${e.name}`,
        nodeIfname: vethName('weirx', e.name),
        transitNodeIP: transitHost(transitCidr, 2 * i),
        transitExtIP: transitHost(transitCidr, 2 * i + 1),
        serves: e.serves,
        cgroupPath: join(state.cgroupPath, `weir-ext.${e.name}`),
        ...(old?.workload ? { workload: old.workload } : {}),
      };
      const same =
        old &&
        JSON.stringify({ ...old, workload: undefined }) === JSON.stringify({ ...ext, workload: undefined });
      if (!same || !netnsExists(ext.netns)) {
        log(`external ${e.name}: netns ${ext.netns}, ${e.ip} via ${ext.transitNodeIP}/31`);
        if (old) await stopWorkload(old.workload);
        delete ext.workload;
        await deleteNetns(ext.netns);
        await ipIn(node.netns, ['link', 'del', ext.nodeIfname]).catch(() => undefined);
        await addNetns(ext.netns);
        await ipIn(node.netns, [
          'link',
          'add',
          ext.nodeIfname,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          ext.netns,
        ]);
        await ipBatch(node.netns, [
          ['addr', 'add', `${ext.transitNodeIP}/31`, 'dev', ext.nodeIfname],
          ['link', 'set', ext.nodeIfname, 'up'],
          [
            'route',
            'replace',
            `${ext.ip}/32`,
            'via',
            ext.transitExtIP,
            'dev',
            ext.nodeIfname,
            'src',
            node.ip,
          ],
        ]);
        await ipBatch(ext.netns, [
          ['link', 'set', 'lo', 'up'],
          ['addr', 'add', `${ext.ip}/32`, 'dev', 'lo'],
          ['addr', 'add', `${ext.transitExtIP}/31`, 'dev', 'eth0'],
          ['link', 'set', 'eth0', 'up'],
          ['route', 'add', node.podCIDR, 'via', ext.transitNodeIP, 'dev', 'eth0', 'src', ext.ip],
          ['route', 'add', `${node.ip}/32`, 'via', ext.transitNodeIP, 'dev', 'eth0', 'src', ext.ip],
        ]);
      }
      await ensureCgroup(ext.cgroupPath);
      ext.workload = await this.ensureWorkload(ext.netns, ext.workload, {
        name: `ext:${e.name}`,
        file: `ext-${e.name}`,
        cgroup: ext.cgroupPath,
        ports: e.serves.map((s) => ({ port: s.port, protocol: s.protocol })),
      });
      out.push(ext);
    }
    return out;
  }

  /** Starts the workload unless the recorded one still runs. */
  private async ensureWorkload(
    netns: string,
    current: WorkloadState | undefined,
    w: { name: string; file: string; cgroup: string; ports: WorkloadConfig['ports'] },
  ): Promise<WorkloadState> {
    if (current && workloadAlive(current)) return current;
    const cfg: WorkloadConfig = {
      name: w.name,
      socket: join(this.stateDir, 'sockets', `${vethName('', w.file)}.sock`),
      cgroup: w.cgroup,
      ports: w.ports,
    };
    return startWorkload(netns, cfg, join(this.stateDir, 'logs', `${w.file}.log`));
  }

  /** Creates or updates Namespaces and Pods. Everything is validated before anything is created. */
  async apply(manifests: Manifest[], opts: ApplyOptions = {}): Promise<ApplyResult[]> {
    const log = opts.log ?? (() => undefined);
    const after: (() => void | Promise<void>)[] = [];
    const results = await withLabLock(this.name, async () => {
      const state = await this.requireState();
      const problems = unsupported(manifests);
      const nsManifests = manifests.filter((m) => m.kind === 'Namespace');
      const podManifests = manifests.filter((m) => m.kind === 'Pod') as Manifest<Pod>[];
      problems.push(...namespaceProblems(manifests.map(manifestRef), Object.keys(state.namespaces)));
      for (const m of podManifests) {
        const prev = state.pods[podKey(m)];
        if (prev && !prev.noWorkload !== podRunsWorkload(m.object))
          problems.push(
            new WeirError(
              'ERR_LAB_WORKLOAD_IMMUTABLE',
              `annotation ${workloadAnnotation} cannot change on an existing pod (delete and re-create it)`,
              {
                location: {
                  file: m.file,
                  object: objectName(m),
                  field: `metadata.annotations["${workloadAnnotation}"]`,
                },
              },
            ),
          );
      }
      const fresh = podManifests.filter((m) => !state.pods[podKey(m)]);
      problems.push(...nameCollisions(state, fresh, this.name));
      const ips = allocate(state, fresh.length);
      if (!ips && fresh.length > 0)
        problems.push(
          new WeirError(
            'ERR_LAB_IPAM_EXHAUSTED',
            `the pod CIDR ${state.node.podCIDR} has no room for ${fresh.length} more pods`,
            {
              location: { file: fresh[0]?.file, object: fresh[0] && objectName(fresh[0]) },
            },
          ),
        );
      if (problems.length > 0) throw new ValidationError(problems);

      const results: ApplyResult[] = [];
      for (const m of nsManifests) {
        const labels = { ...(m.metadata.labels ?? {}), [nsNameLabel]: m.metadata.name };
        const annotations = annotationsOf(m);
        const prev = state.namespaces[m.metadata.name];
        const ns: NamespaceState = {
          name: m.metadata.name,
          labels,
          ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
          uid: prev?.uid ?? randomUUID(),
          createdAt: prev?.createdAt ?? new Date().toISOString(),
        };
        const changed = !prev || !sameLabels(prev.labels, labels);
        const annotated = !!prev && !sameLabels(prev.annotations ?? {}, annotations);
        state.namespaces[ns.name] = ns;
        results.push({
          object: `namespace/${ns.name}`,
          action: !prev ? 'created' : changed || annotated ? 'configured' : 'unchanged',
        });
        if (changed && opts.onNamespaceUpdated) after.push(() => opts.onNamespaceUpdated?.(ns));
      }

      // Existing pods: labels change in place, a change of ports restarts the workload.
      for (const m of podManifests.filter((x) => state.pods[podKey(x)])) {
        const prev = state.pods[podKey(m)] as PodState;
        const labels = m.metadata.labels ?? {};
        const annotations = annotationsOf(m);
        const containers = podContainers(m.object);
        const ports = podPorts(m.object);
        const labelsChanged = !sameLabels(prev.labels, labels);
        const portsChanged = JSON.stringify(prev.ports) !== JSON.stringify(ports);
        // Annotations and container names or images: recorded, nothing to redo.
        const recordChanged =
          !sameLabels(prev.annotations ?? {}, annotations) ||
          JSON.stringify(prev.containers) !== JSON.stringify(containers);
        const terminating = podTerminating(m.object);
        const terminatingChanged = terminating !== (prev.terminating === true);
        const { terminating: _t, annotations: _a, ...rest } = prev;
        const pod: PodState = {
          ...rest,
          labels,
          ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
          containers,
          ports,
          ...(terminating ? { terminating: true as const } : {}),
        };
        if (portsChanged && !pod.noWorkload) {
          log(`pod ${podKey(m)}: ports changed, restarting its workload`);
          await stopWorkload(prev.workload);
          delete pod.workload;
          pod.workload = await this.ensureWorkload(pod.netns, undefined, podWorkload(pod));
          await waitReady(podKey(m), pod.workload);
        }
        state.pods[podKey(m)] = pod;
        results.push({
          object: `pod/${m.metadata.name}`,
          namespace: pod.namespace,
          action:
            labelsChanged || portsChanged || terminatingChanged || recordChanged ? 'configured' : 'unchanged',
        });
        if ((labelsChanged || portsChanged || terminatingChanged) && opts.onPodUpdated)
          after.push(() => opts.onPodUpdated?.(podInfo(pod), podInfo(prev)));
      }

      // New pods, a few at a time; if one fails, the ones created by this apply are removed again.
      const created: PodState[] = [];
      const queue = fresh.map((m, i) => ({ m, ip: ips?.[i] as { ip: string; ip6?: string } }));
      let failure: unknown;
      const worker = async () => {
        for (let job = queue.shift(); job && failure === undefined; job = queue.shift()) {
          try {
            created.push(await this.createPod(state, job.m, job.ip, log, opts.onPodPlumbed));
          } catch (err) {
            failure ??= err;
          }
        }
      };
      await Promise.all(Array.from({ length: createConcurrency }, worker));
      if (failure !== undefined) {
        await Promise.all(created.map((p) => this.destroyPod(p)));
        throw failure;
      }
      await Promise.all(
        created.map((p) => (p.workload ? waitReady(`${p.namespace}/${p.name}`, p.workload) : undefined)),
      );
      for (const p of created) {
        state.pods[`${p.namespace}/${p.name}`] = p;
        results.push({ object: `pod/${p.name}`, namespace: p.namespace, action: 'created' });
        if (opts.onPodCreated) after.push(() => opts.onPodCreated?.(podInfo(p)));
      }
      await writeState(state);
      return results;
    });
    for (const cb of after) await cb();
    return results;
  }

  private async createPod(
    state: LabState & { node: NodeState },
    m: Manifest<Pod>,
    addr: { ip: string; ip6?: string },
    log: Logger,
    onPlumbed?: (pod: PodState) => void | Promise<void>,
  ): Promise<PodState> {
    const node = state.node;
    const ns = m.metadata.namespace ?? 'default';
    const name = m.metadata.name;
    const annotations = annotationsOf(m);
    const pod: PodState = {
      namespace: ns,
      name,
      uid: randomUUID(),
      labels: m.metadata.labels ?? {},
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      containers: podContainers(m.object),
      ports: podPorts(m.object),
      node: node.name,
      ip: addr.ip,
      ...(addr.ip6 ? { ip6: addr.ip6 } : {}),
      netns: podNetns(this.name, node.name, ns, name),
      hostIfname: vethName('weir', `${ns}/${name}`),
      hostIfindex: 0,
      cgroupPath: join(state.cgroupPath, `weir-${ns}-${name}`),
      ...(podRunsWorkload(m.object) ? {} : { noWorkload: true as const }),
      ...(podTerminating(m.object) ? { terminating: true as const } : {}),
      createdAt: new Date().toISOString(),
    };
    log(`pod ${ns}/${name}: ${pod.ip}${pod.ip6 ? ` ${pod.ip6}` : ''} on ${pod.hostIfname}`);
    try {
      // Leftovers of an interrupted earlier attempt would make `link add` fail.
      await deleteNetns(pod.netns);
      await ipIn(node.netns, ['link', 'del', pod.hostIfname]).catch(() => undefined);
      await addNetns(pod.netns);
      if (pod.ip6)
        await sysctlIn(pod.netns, {
          'net.ipv6.conf.all.accept_dad': 0,
          'net.ipv6.conf.default.accept_dad': 0,
        });
      await ipIn(node.netns, [
        'link',
        'add',
        pod.hostIfname,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        pod.netns,
      ]);
      await ipBatch(pod.netns, [
        ['link', 'set', 'lo', 'up'],
        ['addr', 'add', `${pod.ip}/32`, 'dev', 'eth0'],
        ...(pod.ip6 ? [['addr', 'add', `${pod.ip6}/128`, 'dev', 'eth0', 'nodad']] : []),
        ['link', 'set', 'eth0', 'up'],
        ['route', 'add', node.ip, 'dev', 'eth0', 'scope', 'link'],
        ['route', 'add', 'default', 'via', node.ip, 'dev', 'eth0'],
        ...(pod.ip6 ? [['route', 'add', '::/0', 'via', 'fe80::1', 'dev', 'eth0']] : []),
      ]);
      await sysctlIn(node.netns, { [`net.ipv4.conf.${pod.hostIfname}.proxy_arp`]: 1 });
      // The datapath attaches while the host veth is still down: the pod is never reachable
      // before its policy is enforced (fail closed).
      pod.hostIfindex = await ifindexIn(node.netns, pod.hostIfname);
      // The cgroup exists before the agent attaches, so its socket hooks are in before any process.
      await ensureCgroup(pod.cgroupPath);
      await onPlumbed?.(pod);
      await ipBatch(node.netns, [
        ['link', 'set', pod.hostIfname, 'up'],
        ...(pod.ip6 ? [['addr', 'add', 'fe80::1/64', 'dev', pod.hostIfname, 'nodad']] : []),
        ['route', 'replace', `${pod.ip}/32`, 'dev', pod.hostIfname, 'src', node.ip],
        ...(pod.ip6 ? [['route', 'replace', `${pod.ip6}/128`, 'dev', pod.hostIfname]] : []),
      ]);
      if (!pod.noWorkload) pod.workload = await this.ensureWorkload(pod.netns, undefined, podWorkload(pod));
      return pod;
    } catch (err) {
      await this.destroyPod(pod);
      throw err;
    }
  }

  private async destroyPod(p: PodState): Promise<void> {
    await stopWorkload(p.workload);
    await removeCgroup(p.cgroupPath);
    await deleteNetns(p.netns);
    if (p.workload) await rm(p.workload.socket, { force: true });
  }

  /** Removes Pods and Namespaces (a Namespace only once no pod is left in it). */
  async delete(manifests: Manifest[], opts: DeleteOptions = {}): Promise<ApplyResult[]> {
    const after: (() => void | Promise<void>)[] = [];
    const results = await withLabLock(this.name, async () => {
      const state = await this.requireState();
      const problems = unsupported(manifests);
      const pods = manifests.filter((m) => m.kind === 'Pod');
      const nss = manifests.filter((m) => m.kind === 'Namespace');
      const results: ApplyResult[] = [];
      const leaving = new Set(pods.map(podKey));
      for (const m of [...pods, ...nss]) {
        const exists = m.kind === 'Pod' ? state.pods[podKey(m)] : state.namespaces[m.metadata.name];
        if (!exists && !opts.ignoreNotFound)
          problems.push(
            new WeirError('ERR_LAB_NOT_FOUND', `${objectName(m)} does not exist in lab ${this.name}`, {
              location: { file: m.file, object: objectName(m), field: 'metadata.name' },
            }),
          );
      }
      for (const m of nss) {
        const location = { file: m.file, object: objectName(m), field: 'metadata.name' };
        if (m.metadata.name === 'default')
          problems.push(
            new WeirError('ERR_LAB_NAMESPACE_PROTECTED', 'the default namespace cannot be deleted', {
              location,
            }),
          );
        const left = Object.keys(state.pods).filter(
          (k) => k.startsWith(`${m.metadata.name}/`) && !leaving.has(k),
        );
        if (left.length > 0)
          problems.push(
            new WeirError('ERR_LAB_NAMESPACE_NOT_EMPTY', `namespace still has pods: ${left.join(', ')}`, {
              location,
            }),
          );
      }
      if (problems.length > 0) throw new ValidationError(problems);
      const gone = pods.map((m) => state.pods[podKey(m)]).filter((p): p is PodState => p !== undefined);
      await Promise.all(gone.map((p) => this.destroyPod(p)));
      for (const m of pods) {
        const p = state.pods[podKey(m)];
        delete state.pods[podKey(m)];
        results.push({
          object: `pod/${m.metadata.name}`,
          namespace: m.metadata.namespace,
          action: p ? 'deleted' : 'not found',
        });
        if (p && opts.onPodRemoved) after.push(() => opts.onPodRemoved?.(podInfo(p)));
      }
      for (const m of nss) {
        const existed = state.namespaces[m.metadata.name] !== undefined;
        delete state.namespaces[m.metadata.name];
        results.push({ object: `namespace/${m.metadata.name}`, action: existed ? 'deleted' : 'not found' });
      }
      await writeState(state);
      return results;
    });
    for (const cb of after) await cb();
    return results;
  }

  async pods(namespace?: string): Promise<PodInfo[]> {
    const s = await this.state();
    return Object.values(s?.pods ?? {})
      .filter((p) => namespace === undefined || p.namespace === namespace)
      .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name))
      .map(podInfo);
  }

  async pod(key: string): Promise<PodInfo> {
    const k = key.includes('/') ? key : `default/${key}`;
    const p = (await this.state())?.pods[k];
    if (!p) throw new WeirError('ERR_LAB_POD_NOT_FOUND', `no pod ${k} in lab ${this.name}`);
    return podInfo(p);
  }

  async namespaces(): Promise<NamespaceState[]> {
    const s = await this.state();
    return Object.values(s?.namespaces ?? {}).sort((a, b) => a.name.localeCompare(b.name));
  }

  async node(): Promise<NodeInfo> {
    const { node } = await this.requireState();
    const { workload, cgroupPath: _cg, ...rest } = node;
    return { ...rest, ready: workloadAlive(workload) };
  }

  async externals(): Promise<ExternalInfo[]> {
    const s = await this.state();
    return (s?.externals ?? []).map(({ workload, ...e }) => ({ ...e, ready: workloadAlive(workload) }));
  }

  async status(): Promise<LabStatus> {
    const s = await this.state();
    const up = !!s?.node && netnsExists(s.node.netns);
    const pods = Object.values(s?.pods ?? {});
    return {
      name: this.name,
      up,
      stateDir: this.stateDir,
      ...(up ? { node: await this.node() } : {}),
      externals: await this.externals(),
      namespaces: Object.keys(s?.namespaces ?? {}).length,
      pods: pods.length,
      podsReady: pods.filter(podReady).length,
    };
  }

  /**
   * argv running `cmd` inside a pod ('x/a'), the node ('node') or an external ('ext:<name>'):
   * in its netns and, for pods, its cgroup.
   */
  async execArgv(target: string, cmd: string[]): Promise<string[]> {
    const s = await this.requireState();
    const enter = join(import.meta.dirname, 'enter.js');
    let cgroup: string;
    let netns: string;
    if (target === 'node') [cgroup, netns] = [s.node.cgroupPath, s.node.netns];
    else if (target.startsWith('ext:')) {
      const e = s.externals.find((x) => x.name === target.slice(4));
      if (!e)
        throw new WeirError(
          'ERR_LAB_EXTERNAL_NOT_FOUND',
          `no external ${target.slice(4)} in lab ${this.name}`,
        );
      [cgroup, netns] = [e.cgroupPath, e.netns];
    } else {
      const p = await this.pod(target);
      [cgroup, netns] = [p.cgroupPath, p.netns];
    }
    return [process.execPath, enter, cgroup, netns, ...cmd];
  }

  /** Removes everything of this lab, found from state.json and from the kernel (after a crash). */
  async down(opts: { log?: Logger } = {}): Promise<void> {
    const log = opts.log ?? (() => undefined);
    await withLabLock(this.name, async () => {
      let state: LabState | undefined;
      try {
        state = await this.state();
      } catch {
        state = undefined; // corrupt state: the kernel scan below still finds everything
      }
      const others = (await listLabs()).filter((l) => l !== this.name && l.startsWith(`${this.name}-`));
      const ours = (await listNetns(`weir-${this.name}-`)).filter(
        (n) => !others.some((o) => n.startsWith(`weir-${o}-`)),
      );
      const fromState = [
        ...Object.values(state?.pods ?? {}).map((p) => p.netns),
        ...(state?.externals ?? []).map((e) => e.netns),
        ...(state?.node ? [state.node.netns] : []),
      ];
      const workloads = [
        ...Object.values(state?.pods ?? {}).map((p) => p.workload),
        ...(state?.externals ?? []).map((e) => e.workload),
        state?.node?.workload,
      ];
      for (const w of workloads) if (w && workloadAlive(w)) killQuietly(w.pid, 'SIGKILL');
      const netnses = [...new Set([...fromState, ...ours])];
      if (netnses.length) log(`removing ${netnses.length} netns of lab ${this.name}`);
      // Pods and externals first, the node last (their veth peers live in it).
      const node = state?.node?.netns;
      await Promise.all(netnses.filter((n) => n !== node).map((n) => deleteNetns(n)));
      if (node) await deleteNetns(node);
      for (const root of cgroupRoots(state?.cgroupRoot)) await removeCgroup(join(root, `weir-${this.name}`));
      await rm(join(pinRoot, this.name), { recursive: true, force: true });
      await rm(this.stateDir, { recursive: true, force: true });
      log(`lab ${this.name} is down`);
    });
  }
}

/** Removes every lab and every leftover weir netns, cgroup, pin and state, whoever made them. */
export async function labDownAll(opts: { log?: Logger } = {}): Promise<void> {
  const log = opts.log ?? (() => undefined);
  const roots = new Set<string>();
  for (const l of await listLabs()) {
    const s = await readState(l).catch(() => undefined);
    if (s) roots.add(s.cgroupRoot);
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

/**
 * The device holding the node IP: a dummy, or where the kernel lacks dummy support, a veth pair
 * weir_host/weir_net inside the node netns (the shape of Cilium's cilium_host/cilium_net).
 */
async function addHostDevice(netns: string): Promise<void> {
  const dummy = await run(['ip', '-n', netns, 'link', 'add', hostDummy, 'type', 'dummy'], { check: false });
  if (dummy.code === 0) return;
  await ipBatch(netns, [
    ['link', 'add', hostDummy, 'type', 'veth', 'peer', 'name', 'weir_net'],
    ['link', 'set', 'weir_net', 'up'],
  ]);
}

async function ensureBpffs(log: Logger): Promise<void> {
  const mounted = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === bpffsRoot && l.split(' ')[2] === 'bpf');
  if (mounted) return;
  log(`mounting bpffs at ${bpffsRoot}`);
  await run(['mount', '-t', 'bpf', 'bpf', bpffsRoot], { timeoutMs: 10_000 });
}

export const podNetns = (lab: string, node: string, ns: string, name: string) =>
  `weir-${lab}-${node}-${ns}-${name}`;
const podKey = (m: Pick<Manifest, 'metadata'>) => `${m.metadata.namespace ?? 'default'}/${m.metadata.name}`;

function podWorkload(p: PodState) {
  return {
    name: `${p.namespace}/${p.name}`,
    file: `pod-${p.namespace}-${p.name}`,
    cgroup: p.cgroupPath,
    // SCTP ports are recorded but not served: Node has no SCTP sockets.
    ports: p.ports
      .filter((x) => x.protocol !== 'SCTP')
      .map((x) => ({ port: x.containerPort, protocol: x.protocol as 'TCP' | 'UDP' })),
  };
}

/** A pod without a workload is ready once it exists (there is nothing to wait for). */
export const podReady = (p: PodState) => p.noWorkload === true || workloadAlive(p.workload);

function podInfo(p: PodState): PodInfo {
  const { workload: _w, ...rest } = p;
  return { ...rest, ready: podReady(p) };
}

/** metadata.annotations of a manifest as written ({} when it has none). */
function annotationsOf(m: Manifest): Record<string, string> {
  const meta = (m.raw as { metadata?: { annotations?: unknown } }).metadata;
  const a = meta?.annotations;
  return a && typeof a === 'object' && !Array.isArray(a) ? { ...(a as Record<string, string>) } : {};
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

function unsupported(manifests: Manifest[]): WeirError[] {
  return manifests
    .filter((m) => m.apiVersion !== 'v1' || (m.kind !== 'Pod' && m.kind !== 'Namespace'))
    .map(
      (m) =>
        new WeirError(
          'ERR_LAB_KIND_UNSUPPORTED',
          `the lab runs only v1 Namespace and Pod, not ${m.apiVersion} ${m.kind}`,
          {
            location: { file: m.file, object: objectName(m), field: 'kind' },
          },
        ),
    );
}

/** Pods whose netns, cgroup or veth name would clash with another pod's ("a-b"/"c" vs "a"/"b-c"). */
function nameCollisions(state: LabState & { node: NodeState }, fresh: Manifest[], lab: string): WeirError[] {
  const taken = new Map<string, string>();
  const add = (p: { namespace: string; name: string }) => [
    podNetns(lab, state.node.name, p.namespace, p.name),
    vethName('weir', `${p.namespace}/${p.name}`),
  ];
  for (const p of Object.values(state.pods)) for (const n of add(p)) taken.set(n, `${p.namespace}/${p.name}`);
  const out: WeirError[] = [];
  for (const m of fresh) {
    const key = podKey(m);
    for (const n of add({ namespace: m.metadata.namespace ?? 'default', name: m.metadata.name })) {
      const other = taken.get(n);
      if (other && other !== key)
        out.push(
          new WeirError('ERR_LAB_NAME_COLLISION', `its lab name ${n} is already used by pod ${other}`, {
            location: { file: m.file, object: objectName(m), field: 'metadata.name' },
          }),
        );
      taken.set(n, key);
    }
  }
  return out;
}

/** The next free addresses (same host number in the v4 and v6 CIDR), skipping network and node. */
function allocate(
  state: LabState & { node: NodeState },
  n: number,
): { ip: string; ip6?: string }[] | undefined {
  const c4 = parseCidr4(state.node.podCIDR);
  const c6 = state.node.podCIDRv6 ? parseCidr6(state.node.podCIDRv6) : undefined;
  if (!c4) return undefined;
  const used = new Set(Object.values(state.pods).map((p) => p.ip));
  const out: { ip: string; ip6?: string }[] = [];
  for (let i = 2; i < size4(c4) - 1 && out.length < n; i++) {
    const ip = host4(c4, i);
    if (!used.has(ip)) out.push({ ip, ...(c6 ? { ip6: host6(c6, i) } : {}) });
  }
  return out.length === n ? out : undefined;
}
