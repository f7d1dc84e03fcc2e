// Running commands and probes inside a lab: a pod ('ns/pod'), a node ('node' the first,
// 'node:<name>' any) or an external ('ext:<name>'), found by their names in the kernel (this works
// while the nodes' agents are down).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { WeirError } from '../shared/errors.js';
import type { LabConfig } from './config.js';
import { externalOf, externalWorkload } from './external.js';
import { resolvConfFile } from './names.js';
import { nodeNamed, nodeOf, nodesOf, nodeWorkload } from './node.js';
import { netnsExists } from './netns.js';
import { PodDriver } from './pod.js';

export interface Place {
  netns: string;
  /** The cgroup its commands join ('' for none). */
  cgroupPath: string;
  /** The control socket of its workload. */
  socket: string;
}

/** 'x/a' -> {namespace: 'x', name: 'a'}; 'a' -> the default namespace. */
export function podRef(target: string): { namespace: string; name: string } {
  const [namespace, name] = target.includes('/') ? target.split('/', 2) : ['default', target];
  return { namespace: namespace as string, name: name as string };
}

/** Where `target` runs: its netns, cgroup and workload socket. */
export async function placeOf(cfg: LabConfig, target: string): Promise<Place> {
  if (target === 'node' || target.startsWith('node:')) {
    const node = nodeNamed(cfg, target === 'node' ? undefined : target.slice(5));
    const w = nodeWorkload(cfg, node);
    return { netns: node.netns, cgroupPath: node.cgroupPath, socket: w.config.socket };
  }
  if (target.startsWith('ext:')) {
    const e = externalOf(cfg, target.slice(4));
    return { netns: e.netns, cgroupPath: e.cgroupPath, socket: externalWorkload(cfg, e).config.socket };
  }
  // A pod's places follow from its name: no kernel lookup (probes are frequent).
  const ref = podRef(target);
  for (const node of cfg.spec.nodes.length > 1 ? nodesOf(cfg) : [nodeOf(cfg)]) {
    const driver = new PodDriver(cfg, node);
    const n = driver.names(ref.namespace, ref.name);
    if (netnsExists(n.netns))
      return { netns: n.netns, cgroupPath: n.cgroupPath, socket: driver.workload(ref, []).config.socket };
  }
  throw new WeirError('ERR_LAB_POD_NOT_FOUND', `no pod ${ref.namespace}/${ref.name} in lab ${cfg.name}`);
}

/** argv running `cmd` inside `target`: in its netns and its cgroup. */
export async function execArgv(cfg: LabConfig, target: string, cmd: string[]): Promise<string[]> {
  const place = await placeOf(cfg, target);
  // A pod's commands see the cluster DNS resolver (its namespace's search path) as /etc/resolv.conf.
  const resolv =
    target === 'node' || target.startsWith('node:') || target.startsWith('ext:')
      ? '-'
      : resolvConfFile(cfg.name, podRef(target).namespace);
  return [
    process.execPath,
    join(import.meta.dirname, 'enter.js'),
    place.cgroupPath,
    place.netns,
    existsSync(resolv) ? resolv : '-',
    ...cmd,
  ];
}
