// A lab node: its network namespace (weir-<lab>-<node>) with the node IP on weir_host, forwarding
// on, its cgroup and a workload serving the node's ports (a host-network server). Pods and
// externals hang off it with veths.
import { readFileSync } from 'node:fs';
import { run } from '../shared/exec.js';
import { bpffsRoot } from '../shared/paths.js';
import { WeirError } from '../shared/errors.js';
import { ensureCgroup } from './cgroup.js';
import { host4, host6, parseCidr4, parseCidr6 } from './cidr.js';
import type { LabConfig } from './config.js';
import { labCgroup, nodeCgroup, nodeNetns, workloadLog, workloadSocket } from './names.js';
import { addNetns, ipBatch, sysctlIn } from './netns.js';
import type { NodeSpec } from './spec.js';
import { ensureWorkload, findWorkload } from './workload/spawn.js';
import { underlayAddress } from './underlay.js';
import type { WorkloadConfig } from './workload/protocol.js';

export const hostDevice = 'weir_host';

export type Logger = (line: string) => void;

export interface NodeInfo {
  name: string;
  netns: string;
  ip: string;
  ip6?: string;
  podCIDR: string;
  podCIDRv6?: string;
  /** The node's own processes (its workload, `weir lab exec node`). */
  cgroupPath: string;
  /** Its address on the lab's underlay (labs of several nodes, or with an outside etcd). */
  underlayIP?: string;
}

/** Whether the lab's nodes share a cluster Store (etcd) and an underlay. */
export const isCluster = (cfg: LabConfig) => cfg.spec.nodes.length > 1 || cfg.kvstore !== undefined;

/**
 * How pods of different nodes reach each other: 'tunnel' (VXLAN, the default, as Cilium's) or
 * 'native' (routes on the underlay); undefined for a lab of one node without a cluster Store.
 */
export function routingOf(cfg: LabConfig): 'tunnel' | 'native' | undefined {
  return isCluster(cfg) ? (cfg.spec.routing ?? 'tunnel') : undefined;
}

/** Every node of the lab, in spec order. */
export function nodesOf(cfg: LabConfig): NodeInfo[] {
  return cfg.spec.nodes.map((n) => nodeOf(cfg, n));
}

/** The node named `name` (undefined: the first); ERR_LAB_NODE_NOT_FOUND naming the nodes if none. */
export function nodeNamed(cfg: LabConfig, name: string | undefined): NodeInfo {
  if (name === undefined) return nodeOf(cfg);
  const spec = cfg.spec.nodes.find((n) => n.name === name);
  if (!spec)
    throw new WeirError(
      'ERR_LAB_NODE_NOT_FOUND',
      `lab ${cfg.name} has no node '${name}' (nodes: ${cfg.spec.nodes.map((n) => n.name).join(', ')})`,
    );
  return nodeOf(cfg, spec);
}

/** The node of a lab configuration (the first of its spec unless another is given). */
export function nodeOf(cfg: LabConfig, spec: NodeSpec | undefined = cfg.spec.nodes[0]): NodeInfo {
  if (!spec) throw new WeirError('ERR_LAB_SPEC_INVALID', 'a lab needs one node');
  const index = cfg.spec.nodes.indexOf(spec);
  const pods = parseCidr4(spec.podCIDR);
  if (!pods) throw new WeirError('ERR_LAB_SPEC_INVALID', `bad podCIDR ${spec.podCIDR}`);
  const pods6 = spec.podCIDRv6 === undefined ? undefined : parseCidr6(spec.podCIDRv6);
  return {
    name: spec.name,
    netns: nodeNetns(cfg.name, spec.name),
    ip: host4(pods, 1),
    ...(pods6 ? { ip6: host6(pods6, 1), podCIDRv6: spec.podCIDRv6 } : {}),
    podCIDR: spec.podCIDR,
    cgroupPath: nodeCgroup(labCgroup(cfg.cgroupRoot, cfg.name), spec.name),
    ...(isCluster(cfg) && index >= 0 ? { underlayIP: underlayAddress(index) } : {}),
  };
}

export function nodeWorkload(cfg: LabConfig, node: NodeInfo): { config: WorkloadConfig; log: string } {
  const spec = cfg.spec.nodes.find((n) => n.name === node.name);
  const file = `node-${node.name}`;
  return {
    config: {
      name: 'node',
      socket: workloadSocket(cfg.name, file),
      cgroup: node.cgroupPath,
      ports: (spec?.serves ?? []).map((s) => ({ port: s.port, protocol: s.protocol })),
    },
    log: workloadLog(cfg.name, file),
  };
}

/** Creates (or completes) the node: netns, sysctls, host device and addresses, cgroup, workload. */
export async function ensureNode(cfg: LabConfig, node: NodeInfo, log: Logger): Promise<void> {
  log(`node ${node.name}: netns ${node.netns}, InternalIP ${node.ip}${node.ip6 ? ` ${node.ip6}` : ''}`);
  await addNetns(node.netns);
  await sysctlIn(node.netns, {
    'net.ipv4.ip_forward': 1,
    ...(node.ip6 ? { 'net.ipv6.conf.all.forwarding': 1, 'net.ipv6.conf.default.accept_dad': 0 } : {}),
  });
  const hasDevice =
    (await run(['ip', '-n', node.netns, 'link', 'show', hostDevice], { check: false })).code === 0;
  if (!hasDevice) await addHostDevice(node.netns);
  await ipBatch(node.netns, [
    ['link', 'set', 'lo', 'up'],
    ['addr', 'replace', `${node.ip}/32`, 'dev', hostDevice],
    ...(node.ip6 ? [['addr', 'replace', `${node.ip6}/128`, 'dev', hostDevice, 'nodad']] : []),
    ['link', 'set', hostDevice, 'up'],
  ]);
  await ensureCgroup(node.cgroupPath);
  const w = nodeWorkload(cfg, node);
  await ensureWorkload(node.netns, w.config, w.log);
}

export async function nodeReady(cfg: LabConfig, node: NodeInfo): Promise<boolean> {
  const w = nodeWorkload(cfg, node);
  return (await findWorkload(w.config, w.log)) !== undefined;
}

/**
 * The device holding the node IP: a dummy, or where the kernel lacks dummy support, a veth pair
 * weir_host/weir_net inside the node netns (the shape of Cilium's cilium_host/cilium_net).
 */
async function addHostDevice(netns: string): Promise<void> {
  const dummy = await run(['ip', '-n', netns, 'link', 'add', hostDevice, 'type', 'dummy'], { check: false });
  if (dummy.code === 0) return;
  await ipBatch(netns, [
    ['link', 'add', hostDevice, 'type', 'veth', 'peer', 'name', 'weir_net'],
    ['link', 'set', 'weir_net', 'up'],
  ]);
}

export async function ensureBpffs(log: Logger): Promise<void> {
  const mounted = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === bpffsRoot && l.split(' ')[2] === 'bpf');
  if (mounted) return;
  log(`mounting bpffs at ${bpffsRoot}`);
  await run(['mount', '-t', 'bpf', 'bpf', bpffsRoot], { timeoutMs: 10_000 });
}
