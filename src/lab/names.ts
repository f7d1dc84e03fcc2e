// The names of everything a lab creates, derived from the lab, node, namespace and pod names alone:
// anyone (the agent, `weir lab exec`, `weir lab down` after a crash) finds a pod's netns, veth and
// cgroup without a record of them. Every name starts with weir.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { runDir } from '../shared/paths.js';

export const labsDir = join(runDir, 'labs');
export const labDir = (lab: string) => join(labsDir, lab);

export const nodeNetns = (lab: string, node: string) => `weir-${lab}-${node}`;
export const podNetns = (lab: string, node: string, ns: string, name: string) =>
  `weir-${lab}-${node}-${ns}-${name}`;
export const externalNetns = (lab: string, name: string) => `weir-${lab}-ext-${name}`;
/** The lab's underlay: a bridge joining the nodes (and where the lab's etcd listens). */
export const underlayNetns = (lab: string) => `weir-${lab}-underlay`;

/** Host-side veth name (≤ 15 chars): the prefix + 8 hex digits of a hash of `key`. */
export function vethName(prefix: string, key: string): string {
  return prefix + createHash('sha256').update(key).digest('hex').slice(0, 8);
}
export const podVeth = (ns: string, name: string) => vethName('weir', `${ns}/${name}`);
export const externalVeth = (name: string) => vethName('weirx', name);

/**
 * The alias (ifalias) of a pod's host veth: which pod it belongs to, kept by the kernel, so the
 * node's pods can be listed from the node's netns alone.
 */
export const podAlias = (ns: string, name: string) => `weir pod ${ns}/${name}`;
export function podOfAlias(alias: string | undefined): { namespace: string; name: string } | undefined {
  const m = /^weir pod ([^/\s]+)\/(\S+)$/.exec(alias ?? '');
  return m ? { namespace: m[1] as string, name: m[2] as string } : undefined;
}

/** <cgroupRoot>/weir-<lab>: every workload cgroup of the lab lives below it. */
export const labCgroup = (cgroupRoot: string, lab: string) => join(cgroupRoot, `weir-${lab}`);
export const podCgroup = (labCg: string, ns: string, name: string) => join(labCg, `weir-${ns}-${name}`);
export const nodeCgroup = (labCg: string, node: string) => join(labCg, `weir-node.${node}`);
export const externalCgroup = (labCg: string, name: string) => join(labCg, `weir-ext.${name}`);
/** The cgroup of a node's pod workload host (workload/host.ts) when it is not inside a pod. */
export const podHostCgroup = (labCg: string, node: string) => join(labCg, `weir-podhost.${node}`);

/** A workload's control socket and log ("pod-<ns>-<name>", "node-<node>", "ext-<name>"). */
export const workloadSocket = (lab: string, file: string) =>
  join(labDir(lab), 'sockets', `${vethName('', file)}.sock`);
export const workloadLog = (lab: string, file: string) => join(labDir(lab), 'logs', `${file}.log`);
export const podWorkloadFile = (ns: string, name: string) => `pod-${ns}-${name}`;
export const podHostFile = (node: string) => `podhost-${node}`;

/** The cluster DNS zone the node's agent writes and the DNS pod serves; pods' resolv.conf files. */
export const dnsDir = (lab: string) => join(labDir(lab), 'dns');
export const dnsZoneFile = (lab: string) => join(dnsDir(lab), 'zone.json');
export const resolvConfFile = (lab: string, ns: string) => join(dnsDir(lab), `resolv.${ns}.conf`);
