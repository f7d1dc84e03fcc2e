// Pods of a lab node: a network namespace weir-<lab>-<node>-<ns>-<pod> joined to the node by a
// veth pair (eth0 in the pod, weir<8hex> in the node, its alias naming the pod), the pod's
// addresses and routes, a cgroup, and the built-in workload serving its ports. The node's agent
// calls this driver for the pods scheduled on its node; the kernel is the driver's only record
// (names are derived, the host veth's alias names the pod, its /32 route holds the pod's IP).
import { existsSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { clusterDnsPod } from '../dns/zone.js';
import type { PodPort } from '../k8s/core.js';
import { ensureCgroup, removeCgroup } from './cgroup.js';
import type { LabConfig } from './config.js';
import {
  dnsZoneFile,
  labCgroup,
  podAlias,
  podCgroup,
  podHostCgroup,
  podHostFile,
  podNetns,
  podOfAlias,
  podVeth,
  podWorkloadFile,
  workloadLog,
  workloadSocket,
} from './names.js';
import { deleteNetns, ipBatchEach, ipIn, netnsExists } from './netns.js';
import { macHere } from '../bpf/index.js';
import { Rtnl, ifindexHere as fnIfindex, ifindexInSync, inNetns, sysctlInSync } from './workload/sock.js';
import type { NodeInfo } from './node.js';
import { hostAdd, hostHas, hostRemove, type PodHostPlace } from './workload/host-client.js';
import type { WorkloadState } from './workload/spawn.js';
import { WeirError } from '../shared/errors.js';
import type { WorkloadConfig } from './workload/protocol.js';

/** What the agent asks for: a pod with these addresses and ports. */
export interface PodSpec {
  namespace: string;
  name: string;
  ip: string;
  ip6?: string;
  ports: PodPort[];
  /** Annotated weir.dev/workload: "none": no workload process, ever. */
  noWorkload?: boolean;
}

/** A pod as it exists in the kernel. */
export interface PodRuntime {
  namespace: string;
  name: string;
  node: string;
  netns: string;
  /** The host-side veth, in the node netns: where tc programs for this pod attach. */
  hostIfname: string;
  hostIfindex: number;
  cgroupPath: string;
  ip: string;
  ip6?: string;
  /** MACs of the pod's eth0 and of its host veth, when just created (eBPF host routing needs them). */
  mac?: string;
  hostMac?: string;
}

/** A pod's host veth as found in the node's netns. */
interface HostVeth {
  namespace: string;
  name: string;
  hostIfname: string;
  hostIfindex: number;
  ip?: string;
  ip6?: string;
}

export class PodDriver {
  constructor(
    readonly cfg: LabConfig,
    readonly node: NodeInfo,
  ) {}

  /** The node's pod workload host: one process serving every pod's workload (workload/host.ts). */
  get podHost(): PodHostPlace {
    const file = podHostFile(this.node.name);
    return {
      nodeNetns: this.node.netns,
      config: {
        name: `pods of ${this.node.name}`,
        socket: workloadSocket(this.cfg.name, file),
        cgroup: podHostCgroup(labCgroup(this.cfg.cgroupRoot, this.cfg.name), this.node.name),
      },
      log: workloadLog(this.cfg.name, file),
    };
  }

  /** netns, host veth and cgroup of a pod of this node (whether it exists or not). */
  names(namespace: string, name: string) {
    return {
      netns: podNetns(this.cfg.name, this.node.name, namespace, name),
      hostIfname: podVeth(namespace, name),
      cgroupPath: podCgroup(labCgroup(this.cfg.cgroupRoot, this.cfg.name), namespace, name),
    };
  }

  workload(
    pod: { namespace: string; name: string },
    ports: PodPort[],
  ): { config: WorkloadConfig; log: string } {
    const file = podWorkloadFile(pod.namespace, pod.name);
    return {
      config: {
        name: `${pod.namespace}/${pod.name}`,
        socket: workloadSocket(this.cfg.name, file),
        cgroup: this.names(pod.namespace, pod.name).cgroupPath,
        // SCTP ports are recorded but not served: Node has no SCTP sockets.
        ports: ports
          .filter((x) => x.protocol !== 'SCTP')
          .map((x) => ({ port: x.containerPort, protocol: x.protocol as 'TCP' | 'UDP' })),
        // The lab's cluster DNS pod runs the DNS server (docs/dns.md).
        ...(pod.namespace === clusterDnsPod.namespace && pod.name === clusterDnsPod.name
          ? { dns: { zoneFile: dnsZoneFile(this.cfg.name) } }
          : {}),
      },
      log: workloadLog(this.cfg.name, file),
    };
  }

  /**
   * Creates the pod. `onPlumbed` runs while the host veth exists but is still down (no traffic
   * can pass yet): the agent attaches the datapath there, so a pod is never reachable before its
   * policy is enforced. Its workload is served when this returns. A failure removes whatever this
   * attempt created.
   */
  async create(
    spec: PodSpec,
    onPlumbed?: (pod: PodRuntime) => void | Promise<void>,
  ): Promise<PodRuntime & { workload?: WorkloadState }> {
    const [r] = await this.createMany([spec], onPlumbed);
    if (!r || 'error' in r) throw r?.error ?? new Error('no result');
    return r.pod;
  }

  /**
   * Creates many pods with a few processes in all: the namespaces in one `ip -batch`, the veth
   * pairs in one, the host sides up and routed in one; each pod's own addresses and routes by
   * rtnetlink from inside it, sysctls, ifindexes and MACs by setns (no process), the cgroups all
   * at once. Every pod gets its own result, in order: one that fails is removed again and the
   * others go on. Calls for different pods may run at the same time.
   */
  async createMany(
    specs: PodSpec[],
    onPlumbed?: (pod: PodRuntime) => void | Promise<void>,
  ): Promise<({ pod: PodRuntime & { workload?: WorkloadState } } | { error: Error })[]> {
    const node = this.node;
    const pods: PodRuntime[] = specs.map((spec) => ({
      namespace: spec.namespace,
      name: spec.name,
      node: node.name,
      ...this.names(spec.namespace, spec.name),
      hostIfindex: 0,
      ip: spec.ip,
      ...(spec.ip6 ? { ip6: spec.ip6 } : {}),
    }));
    const errors = new Map<number, Error>();
    const live = () => pods.map((_, i) => i).filter((i) => !errors.has(i));
    const step = async (i: number, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        errors.set(i, err instanceof Error ? err : new Error(String(err)));
      }
    };
    // Leftovers of an interrupted earlier attempt would make `link add` fail.
    for (const i of live()) {
      const p = pods[i] as PodRuntime;
      if (netnsExists(p.netns) || existsSync(p.cgroupPath))
        await step(i, () => this.destroy(p.namespace, p.name));
    }
    await ipBatchEach(
      undefined,
      live().map((i) => ({ i, cmd: ['netns', 'add', (pods[i] as PodRuntime).netns] })),
      errors,
    );
    for (const i of live()) {
      const p = pods[i] as PodRuntime;
      if (p.ip6)
        await step(i, () =>
          sysctlInSync(p.netns, { 'net.ipv6.conf.all.accept_dad': 0, 'net.ipv6.conf.default.accept_dad': 0 }),
        );
    }
    await ipBatchEach(
      node.netns,
      live().flatMap((i) => {
        const p = pods[i] as PodRuntime;
        return [
          { i, cmd: ['link', 'add', p.hostIfname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', p.netns] },
          { i, cmd: ['link', 'set', 'dev', p.hostIfname, 'alias', `"${podAlias(p.namespace, p.name)}"`] },
        ];
      }),
      errors,
    );
    // Each pod's own side through rtnetlink from inside it (no process per pod).
    for (const i of live())
      await step(i, () => {
        const p = pods[i] as PodRuntime;
        inNetns(p.netns, () => {
          const nl = new Rtnl();
          try {
            const eth0 = nl.ifindex('eth0');
            if (!eth0) throw new Error(`no eth0 in ${p.netns}`);
            nl.linkUp(1);
            nl.addrAdd(eth0, p.ip, 32);
            if (p.ip6) nl.addrAdd(eth0, p.ip6, 128);
            nl.linkUp(eth0);
            nl.routeAdd(node.ip, 32, eth0, { scopeLink: true });
            nl.routeAdd('0.0.0.0', 0, eth0, { via: node.ip });
            if (p.ip6) nl.routeAdd('::', 0, eth0, { via: 'fe80::1' });
            p.mac = macHere('eth0', p.netns);
          } finally {
            nl.close();
          }
        });
      });
    for (const i of live())
      await step(i, () => {
        const p = pods[i] as PodRuntime;
        inNetns(node.netns, () => {
          writeFileSync(`/proc/sys/net/ipv4/conf/${p.hostIfname}/proxy_arp`, '1');
          p.hostIfindex = fnIfindex(p.hostIfname);
          if (!p.hostIfindex) throw new Error(`no ${p.hostIfname} in ${node.netns}`);
          p.hostMac = macHere(p.hostIfname, node.netns);
        });
      });
    // The cgroups exist before the agent attaches, so their socket hooks are in before any process.
    await Promise.all(live().map((i) => step(i, () => ensureCgroup((pods[i] as PodRuntime).cgroupPath))));
    for (const i of live()) await step(i, () => onPlumbed?.(pods[i] as PodRuntime));
    await ipBatchEach(
      node.netns,
      live().flatMap((i) => {
        const p = pods[i] as PodRuntime;
        return [
          { i, cmd: ['link', 'set', p.hostIfname, 'up'] },
          ...(p.ip6 ? [{ i, cmd: ['addr', 'add', 'fe80::1/64', 'dev', p.hostIfname, 'nodad'] }] : []),
          { i, cmd: ['route', 'replace', `${p.ip}/32`, 'dev', p.hostIfname, 'src', node.ip] },
          ...(p.ip6 ? [{ i, cmd: ['route', 'replace', `${p.ip6}/128`, 'dev', p.hostIfname] }] : []),
        ];
      }),
      errors,
    );
    const workloads = new Map<number, WorkloadState>();
    await Promise.all(
      live()
        .filter((i) => !specs[i]?.noWorkload)
        .map((i) =>
          step(i, async () => {
            const p = pods[i] as PodRuntime;
            const w = this.workload(p, specs[i]?.ports ?? []);
            workloads.set(i, await hostAdd(this.podHost, p.netns, w.config, w.log));
          }),
        ),
    );
    for (const i of errors.keys()) {
      const p = pods[i] as PodRuntime;
      await this.destroy(p.namespace, p.name).catch(() => undefined);
    }
    return pods.map((p, i) => {
      const err = errors.get(i);
      if (err) return { error: err };
      const w = workloads.get(i);
      return { pod: w ? { ...p, workload: w } : p };
    });
  }

  /** Waits (bounded) until a started workload answers: the host served it before create returned. */
  async waitReady(pod: PodRuntime & { workload?: WorkloadState }): Promise<void> {
    if (pod.workload && !(await hostHas(this.podHost, `${pod.namespace}/${pod.name}`)))
      throw new WeirError(
        'ERR_LAB_WORKLOAD_START',
        `the workload of ${pod.namespace}/${pod.name} is not served`,
      );
  }

  /** Runs the pod's workload with these ports (served anew when they changed, or after the host died). */
  async ensureWorkload(pod: PodRuntime, ports: PodPort[]): Promise<void> {
    const w = this.workload(pod, ports);
    await hostAdd(this.podHost, pod.netns, w.config, w.log);
  }

  /** Whether the pod's workload runs (a pod without one is ready once it exists). */
  async ready(
    pod: { namespace: string; name: string },
    ports: PodPort[],
    noWorkload?: boolean,
  ): Promise<boolean> {
    if (noWorkload) return netnsExists(this.names(pod.namespace, pod.name).netns);
    return hostHas(this.podHost, this.workload(pod, ports).config.name);
  }

  /** Removes the pod: its processes (with its cgroup), netns (and so both veth ends), socket. */
  async destroy(namespace: string, name: string): Promise<void> {
    const n = this.names(namespace, name);
    // The host first: it must never be inside the pod's cgroup when that is killed and removed.
    await hostRemove(this.podHost, `${namespace}/${name}`);
    await removeCgroup(n.cgroupPath);
    // Deleting the netns takes both veth ends; a host veth left without it is removed too.
    await deleteNetns(n.netns);
    if (netnsExists(this.node.netns) && ifindexInSync(this.node.netns, n.hostIfname))
      await ipIn(this.node.netns, ['link', 'del', n.hostIfname]).catch(() => undefined);
    await rm(this.workload({ namespace, name }, []).config.socket, { force: true });
  }

  /**
   * The pod as the kernel holds it, or undefined when its netns or veth is gone: one look at the
   * pod's eth0 (its addresses, and its peer's ifindex: the host veth).
   */
  async inspect(namespace: string, name: string): Promise<PodRuntime | undefined> {
    const n = this.names(namespace, name);
    if (!netnsExists(n.netns)) return undefined;
    const out = await ipIn(n.netns, ['-j', 'addr', 'show', 'dev', 'eth0']).catch(() => '[]');
    const eth0 = (
      JSON.parse(out || '[]') as {
        link_index?: number;
        addr_info?: { family: string; local: string; scope: string }[];
      }[]
    )[0];
    const global = (eth0?.addr_info ?? []).filter((a) => a.scope === 'global');
    const ip = global.find((a) => a.family === 'inet')?.local;
    const ip6 = global.find((a) => a.family === 'inet6')?.local;
    if (!eth0?.link_index || !ip) return undefined;
    return {
      namespace,
      name,
      node: this.node.name,
      ...n,
      hostIfindex: eth0.link_index,
      ip,
      ...(ip6 ? { ip6 } : {}),
    };
  }

  /** Every pod of this node the kernel holds (from the host veths' aliases and routes). */
  async list(): Promise<PodRuntime[]> {
    // A host veth lives exactly as long as its pod's netns (its peer is the pod's eth0).
    return (await this.hostVeths())
      .filter((v) => v.ip !== undefined)
      .map((v) => ({
        namespace: v.namespace,
        name: v.name,
        node: this.node.name,
        ...this.names(v.namespace, v.name),
        hostIfname: v.hostIfname,
        hostIfindex: v.hostIfindex,
        ip: v.ip as string,
        ...(v.ip6 ? { ip6: v.ip6 } : {}),
      }));
  }

  private async hostVeths(): Promise<HostVeth[]> {
    const ns = this.node.netns;
    if (!netnsExists(ns)) return [];
    const [links, routes, routes6] = await Promise.all([
      ipIn(ns, ['-j', 'link', 'show']),
      ipIn(ns, ['-j', 'route', 'show']),
      ipIn(ns, ['-6', '-j', 'route', 'show']),
    ]);
    const ip4 = new Map<string, string>();
    const ip6 = new Map<string, string>();
    for (const r of JSON.parse(routes || '[]') as { dst: string; dev?: string }[])
      if (r.dev && /^[\d.]+$/.test(r.dst)) ip4.set(r.dev, r.dst);
    for (const r of JSON.parse(routes6 || '[]') as { dst: string; dev?: string }[])
      if (r.dev && r.dst.includes(':') && !r.dst.startsWith('fe80:'))
        ip6.set(r.dev, r.dst.replace(/\/128$/, ''));
    const out: HostVeth[] = [];
    for (const l of JSON.parse(links || '[]') as { ifindex: number; ifname: string; ifalias?: string }[]) {
      const pod = podOfAlias(l.ifalias);
      if (!pod) continue;
      out.push({
        ...pod,
        hostIfname: l.ifname,
        hostIfindex: l.ifindex,
        ...(ip4.has(l.ifname) ? { ip: ip4.get(l.ifname) } : {}),
        ...(ip6.has(l.ifname) ? { ip6: ip6.get(l.ifname) } : {}),
      });
    }
    return out;
  }
}
