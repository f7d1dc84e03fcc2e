// External hosts: network namespaces weir-<lab>-ext-<name> beside the node, each linked to it by a
// veth pair on a /31 from TEST-NET-3 and holding its own address on lo, routed through the node
// (clients and servers "outside the cluster" for NodePort, CIDR policies and the like).
import { gatewayCidr } from './gateway.js';
import { WeirError } from '../shared/errors.js';
import { ensureCgroup, removeCgroup } from './cgroup.js';
import { type Cidr4, host4, parseCidr4, transitHost } from './cidr.js';
import type { LabConfig } from './config.js';
import {
  externalCgroup,
  externalNetns,
  externalVeth,
  labCgroup,
  underlayNetns,
  vethName,
  workloadLog,
  workloadSocket,
} from './names.js';
import { addNetns, deleteNetns, ipBatch, ipIn, listNetns, netnsExists, sysctlIn } from './netns.js';
import type { Logger, NodeInfo } from './node.js';
import { transitCidr, underlayCidr } from './spec.js';
import { ensureWorkload, findWorkload } from './workload/spawn.js';
import type { WorkloadConfig } from './workload/protocol.js';

export interface ExternalInfo {
  name: string;
  ip: string;
  netns: string;
  /** The veth end in the node netns, and the /31 addresses of both ends. */
  nodeIfname: string;
  transitNodeIP: string;
  transitExtIP: string;
  serves: { port: number; protocol: 'TCP' | 'UDP' }[];
  cgroupPath: string;
  /** On the nodes' underlay too (several nodes): its address there. */
  underlayIP?: string;
}

/** An external's device on the underlay (in its namespace), and its address there. */
export const externalUnderlayDevice = 'weir_ul';
export const externalUnderlayAddress = (i: number) => host4(parseCidr4(underlayCidr) as Cidr4, 128 + i);

/** The externals of a lab configuration, in spec order (their /31s follow that order). */
export function externalsOf(cfg: LabConfig): ExternalInfo[] {
  const cg = labCgroup(cfg.cgroupRoot, cfg.name);
  return cfg.spec.externals.map((e, i) => ({
    name: e.name,
    ip: e.ip,
    netns: externalNetns(cfg.name, e.name),
    nodeIfname: externalVeth(e.name),
    transitNodeIP: transitHost(transitCidr, 2 * i),
    transitExtIP: transitHost(transitCidr, 2 * i + 1),
    serves: e.serves,
    cgroupPath: externalCgroup(cg, e.name),
    ...(e.underlay && cfg.spec.nodes.length > 1 ? { underlayIP: externalUnderlayAddress(i) } : {}),
  }));
}

export function externalWorkload(cfg: LabConfig, e: ExternalInfo): { config: WorkloadConfig; log: string } {
  const file = `ext-${e.name}`;
  return {
    config: {
      name: `ext:${e.name}`,
      socket: workloadSocket(cfg.name, file),
      cgroup: e.cgroupPath,
      ports: e.serves.map((s) => ({ port: s.port, protocol: s.protocol })),
    },
    log: workloadLog(cfg.name, file),
  };
}

export function externalOf(cfg: LabConfig, name: string): ExternalInfo {
  const e = externalsOf(cfg).find((x) => x.name === name);
  if (!e) throw new WeirError('ERR_LAB_EXTERNAL_NOT_FOUND', `no external ${name} in lab ${cfg.name}`);
  return e;
}

const addrsOf = async (netns: string, dev: string): Promise<string[]> => {
  const out = await ipIn(netns, ['-j', 'addr', 'show', 'dev', dev]).catch(() => '[]');
  const links = JSON.parse(out || '[]') as { addr_info?: { local: string }[] }[];
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local));
};

/** The kernel holds the external as configured (namespace, both veth ends and their addresses). */
async function intact(node: NodeInfo, e: ExternalInfo): Promise<boolean> {
  if (!netnsExists(e.netns)) return false;
  const [lo, eth0, nodeSide] = await Promise.all([
    addrsOf(e.netns, 'lo'),
    addrsOf(e.netns, 'eth0'),
    addrsOf(node.netns, e.nodeIfname),
  ]);
  return lo.includes(e.ip) && eth0.includes(e.transitExtIP) && nodeSide.includes(e.transitNodeIP);
}

/** Makes the kernel hold exactly the configured externals, each with its workload. */
export async function ensureExternals(cfg: LabConfig, node: NodeInfo, log: Logger): Promise<void> {
  const wanted = externalsOf(cfg);
  const names = new Set(wanted.map((e) => e.netns));
  const cg = labCgroup(cfg.cgroupRoot, cfg.name);
  for (const netns of await listNetns(externalNetns(cfg.name, ''))) {
    if (names.has(netns)) continue;
    const name = netns.slice(externalNetns(cfg.name, '').length);
    log(`external ${name}: removing`);
    await removeCgroup(externalCgroup(cg, name));
    await deleteNetns(netns);
  }
  for (const ext of wanted) {
    if (!(await intact(node, ext))) {
      log(`external ${ext.name}: netns ${ext.netns}, ${ext.ip} via ${ext.transitNodeIP}/31`);
      await removeCgroup(ext.cgroupPath);
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
        ['route', 'replace', `${ext.ip}/32`, 'via', ext.transitExtIP, 'dev', ext.nodeIfname, 'src', node.ip],
      ]);
      await ipBatch(ext.netns, [
        ['link', 'set', 'lo', 'up'],
        ['addr', 'add', `${ext.ip}/32`, 'dev', 'lo'],
        ['addr', 'add', `${ext.transitExtIP}/31`, 'dev', 'eth0'],
        ['link', 'set', 'eth0', 'up'],
        ['route', 'add', node.podCIDR, 'via', ext.transitNodeIP, 'dev', 'eth0', 'src', ext.ip],
        ['route', 'add', `${node.ip}/32`, 'via', ext.transitNodeIP, 'dev', 'eth0', 'src', ext.ip],
        // Gateways' addresses live on the node (src/lab/gateway.ts).
        ['route', 'add', gatewayCidr, 'via', ext.transitNodeIP, 'dev', 'eth0', 'src', ext.ip],
      ]);
    }
    await ensureCgroup(ext.cgroupPath);
    const w = externalWorkload(cfg, ext);
    await ensureWorkload(ext.netns, w.config, w.log);
  }
}

export async function externalReady(cfg: LabConfig, e: ExternalInfo): Promise<boolean> {
  const w = externalWorkload(cfg, e);
  return (await findWorkload(w.config, w.log)) !== undefined;
}

/**
 * Several nodes: the externals hang off the first node, so they route every other node's pod CIDR
 * via it too, and the other nodes reach the externals via the first node's underlay address.
 */
export async function ensureExternalRoutes(cfg: LabConfig, nodes: NodeInfo[], device: string): Promise<void> {
  const [first, ...others] = nodes;
  if (!first?.underlayIP) return;
  for (const ext of externalsOf(cfg)) {
    await ipBatch(
      ext.netns,
      others.map((n) => [
        'route',
        'replace',
        n.podCIDR,
        'via',
        ext.transitNodeIP,
        'dev',
        'eth0',
        'src',
        ext.ip,
      ]),
    );
    if (ext.underlayIP) await ensureExternalUnderlay(cfg, ext);
    for (const n of others)
      await ipIn(n.netns, [
        'route',
        'replace',
        `${ext.ip}/32`,
        'via',
        ext.underlayIP ?? first.underlayIP,
        'dev',
        device,
      ]);
  }
}

/**
 * An external on the underlay: a veth from its namespace (weir_ul) to the underlay's bridge, its
 * address there. Packets to it from the other nodes arrive on that device while its own still
 * leave through the first node, so its reverse-path filter is off. Idempotent.
 */
async function ensureExternalUnderlay(cfg: LabConfig, ext: ExternalInfo): Promise<void> {
  const ns = underlayNetns(cfg.name);
  const peer = vethName('weirue', ext.name);
  const links = JSON.parse(await ipIn(ns, ['-j', 'link', 'show'])) as { ifname: string }[];
  if (!links.some((l) => l.ifname === peer)) {
    await ipIn(ext.netns, ['link', 'del', externalUnderlayDevice]).catch(() => undefined);
    await ipIn(ext.netns, [
      'link',
      'add',
      externalUnderlayDevice,
      'type',
      'veth',
      'peer',
      'name',
      peer,
      'netns',
      ns,
    ]);
  }
  await ipBatch(ns, [
    ['link', 'set', peer, 'master', 'weir_ul'],
    ['link', 'set', peer, 'up'],
  ]);
  await sysctlIn(ext.netns, { 'net.ipv4.conf.all.rp_filter': 0, 'net.ipv4.conf.default.rp_filter': 0 });
  await ipBatch(ext.netns, [
    [
      'addr',
      'replace',
      `${ext.underlayIP as string}/${(parseCidr4(underlayCidr) as Cidr4).prefix}`,
      'dev',
      externalUnderlayDevice,
    ],
    ['link', 'set', externalUnderlayDevice, 'up'],
  ]);
  await sysctlIn(ext.netns, { [`net.ipv4.conf.${externalUnderlayDevice}.rp_filter`]: 0 });
}
