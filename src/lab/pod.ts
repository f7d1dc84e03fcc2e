// Pods of a lab node: a network namespace weir-<lab>-<node>-<ns>-<pod> joined to the node by a
// veth pair (eth0 in the pod, weir<8hex> in the node, its alias naming the pod), the pod's
// addresses and routes, a cgroup, and the built-in workload serving its ports. The node's agent
// calls this driver for the pods scheduled on its node; the kernel is the driver's only record
// (names are derived, the host veth's alias names the pod, its /32 route holds the pod's IP).
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
  podNetns,
  podOfAlias,
  podVeth,
  podWorkloadFile,
  workloadLog,
  workloadSocket,
} from './names.js';
import { addNetns, deleteNetns, ifindexIn, ipBatch, ipIn, netnsExists, sysctlIn } from './netns.js';
import type { NodeInfo } from './node.js';
import {
  ensureWorkload,
  findWorkload,
  startWorkload,
  waitReady,
  type WorkloadState,
} from './workload/spawn.js';
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
   * policy is enforced. The workload is started, not awaited (see ready()). A failure removes
   * whatever this attempt created.
   */
  async create(
    spec: PodSpec,
    onPlumbed?: (pod: PodRuntime) => void | Promise<void>,
  ): Promise<PodRuntime & { workload?: WorkloadState }> {
    const node = this.node;
    const n = this.names(spec.namespace, spec.name);
    const pod: PodRuntime = {
      namespace: spec.namespace,
      name: spec.name,
      node: node.name,
      ...n,
      hostIfindex: 0,
      ip: spec.ip,
      ...(spec.ip6 ? { ip6: spec.ip6 } : {}),
    };
    try {
      // Leftovers of an interrupted earlier attempt would make `link add` fail.
      await this.destroy(spec.namespace, spec.name);
      await addNetns(pod.netns);
      if (pod.ip6)
        await sysctlIn(pod.netns, {
          'net.ipv6.conf.all.accept_dad': 0,
          'net.ipv6.conf.default.accept_dad': 0,
        });
      await ipBatch(node.netns, [
        ['link', 'add', pod.hostIfname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.netns],
        ['link', 'set', 'dev', pod.hostIfname, 'alias', `"${podAlias(spec.namespace, spec.name)}"`],
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
      if (spec.noWorkload) return pod;
      const w = this.workload(pod, spec.ports);
      return { ...pod, workload: startWorkload(pod.netns, w.config, w.log) };
    } catch (err) {
      await this.destroy(spec.namespace, spec.name);
      throw err;
    }
  }

  /** Waits (bounded) until a started workload answers. */
  async waitReady(pod: PodRuntime & { workload?: WorkloadState }): Promise<void> {
    if (pod.workload) await waitReady(`${pod.namespace}/${pod.name}`, pod.workload);
  }

  /** Runs the pod's workload with these ports (restarting one that serves others, or died). */
  async ensureWorkload(pod: PodRuntime, ports: PodPort[]): Promise<void> {
    const w = this.workload(pod, ports);
    const before = await findWorkload(w.config, w.log);
    if (before?.current) return;
    const started = await ensureWorkload(pod.netns, w.config, w.log);
    await waitReady(`${pod.namespace}/${pod.name}`, started);
  }

  /** Whether the pod's workload runs (a pod without one is ready once it exists). */
  async ready(
    pod: { namespace: string; name: string },
    ports: PodPort[],
    noWorkload?: boolean,
  ): Promise<boolean> {
    if (noWorkload) return netnsExists(this.names(pod.namespace, pod.name).netns);
    const w = this.workload(pod, ports);
    return (await findWorkload(w.config, w.log)) !== undefined;
  }

  /** Removes the pod: its processes (with its cgroup), netns (and so both veth ends), socket. */
  async destroy(namespace: string, name: string): Promise<void> {
    const n = this.names(namespace, name);
    await removeCgroup(n.cgroupPath);
    await deleteNetns(n.netns);
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
