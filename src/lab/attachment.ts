// Containers a runtime created (podman, containerd through kubelet) and handed to weir-cni: the
// driver joins the container's network namespace, as the runtime gives it, to the node by a veth
// pair — CNI_IFNAME in the container, weir<8hex> in the node (the same name and alias as a lab
// pod's, so the node's pods are still listed from the kernel alone) — with the pod's addresses and
// routes. It creates no netns, cgroup or workload: those are the runtime's.
//
// The runtime's netns is reached by path (a bind mount under /run/netns, or /proc/<pid>/fd/<n> of
// the plugin while its ADD waits: a runtime in a private mount namespace has the only bind mount).
// iproute2 takes netns names only, so the container's side runs under nsenter --net=<path>.
import { statSync } from 'node:fs';
import { run } from '../shared/exec.js';
import { WeirError } from '../shared/errors.js';
import { podAlias } from './names.js';
import { ifindexIn, ipBatch, netnsPath, sysctlIn } from './netns.js';
import type { NodeInfo } from './node.js';
import type { PodDriver, PodRuntime } from './pod.js';

const ipTimeout = 10_000;

/** What the agent asks for: the pod's addresses in the runtime's netns, under CNI_IFNAME. */
export interface AttachmentSpec {
  namespace: string;
  name: string;
  ip: string;
  ip6?: string;
  /** The container's netns, as a path the agent can open. */
  netnsPath: string;
  /** Its inode when the runtime gave it: the path must still name that namespace. */
  netnsInode?: number;
  ifname: string;
}

/** An attached container as created: the pod's runtime view plus its interface's MAC. */
export interface AttachedContainer extends PodRuntime {
  ifname: string;
  mac: string;
}

async function ipInPath(path: string, commands: string[][]): Promise<string> {
  return (
    await run(['nsenter', `--net=${path}`, 'ip', '-batch', '-'], {
      input: commands.map((c) => c.join(' ')).join('\n') + '\n',
      timeoutMs: ipTimeout,
    })
  ).stdout;
}

/** One `ip` command inside the netns at `path`; its stdout. */
async function ipAtPath(path: string, args: string[]): Promise<string> {
  return (await run(['nsenter', `--net=${path}`, 'ip', ...args], { timeoutMs: ipTimeout })).stdout;
}

/**
 * The inode of a network namespace: the runtime's must be neither the machine's (pid 1's) nor the
 * node's own, or the veth would land where weir must never create anything.
 */
function checkNetns(path: string, node: NodeInfo, inode?: number): void {
  let ino: number;
  try {
    ino = statSync(path).ino;
  } catch (err) {
    throw new WeirError('ERR_CNI_NETNS', `the container's network namespace ${path} cannot be opened`, {
      location: { object: path, field: 'CNI_NETNS' },
      cause: err,
    });
  }
  if (inode !== undefined && ino !== inode)
    throw new WeirError(
      'ERR_CNI_NETNS',
      `the container's network namespace is gone (${path} names another one now): the runtime must ADD again`,
      { location: { object: path, field: 'CNI_NETNS' } },
    );
  const forbidden = [
    ['the machine', '/proc/1/ns/net'],
    [`node ${node.name}`, netnsPath(node.netns)],
  ] as const;
  for (const [what, p] of forbidden) {
    let other: number | undefined;
    try {
      other = statSync(p).ino;
    } catch {
      other = undefined;
    }
    if (other === ino)
      throw new WeirError(
        'ERR_CNI_NETNS',
        `CNI_NETNS ${path} is the network namespace of ${what}, not a container's: refused`,
        { location: { object: path, field: 'CNI_NETNS' } },
      );
  }
}

/**
 * Creates the veth pair for a container: made inside the container's netns, its host end moved to
 * the node. `onPlumbed` runs while the host veth is still down (the agent attaches the datapath
 * there, so the container is never reachable before its policy is enforced). A failure removes
 * whatever this attempt created.
 */
export async function attachContainer(
  driver: PodDriver,
  spec: AttachmentSpec,
  onPlumbed?: (pod: PodRuntime & { mac: string }) => void | Promise<void>,
): Promise<AttachedContainer> {
  const node = driver.node;
  checkNetns(spec.netnsPath, node, spec.netnsInode);
  const n = driver.names(spec.namespace, spec.name);
  const pod: AttachedContainer = {
    namespace: spec.namespace,
    name: spec.name,
    node: node.name,
    netns: spec.netnsPath,
    hostIfname: n.hostIfname,
    hostIfindex: 0,
    // The runtime's cgroup is not known to CNI: no socket-LB hooks (services are translated at tc).
    cgroupPath: '',
    ip: spec.ip,
    ...(spec.ip6 ? { ip6: spec.ip6 } : {}),
    ifname: spec.ifname,
    mac: '',
  };
  try {
    // Leftovers of an interrupted earlier attempt (same pod) would make `link add` fail.
    await driver.destroy(spec.namespace, spec.name);
    await ipInPath(spec.netnsPath, [
      ['link', 'add', spec.ifname, 'type', 'veth', 'peer', 'name', n.hostIfname],
      ['link', 'set', n.hostIfname, 'netns', node.netns],
      ['link', 'set', 'lo', 'up'],
      ['addr', 'add', `${spec.ip}/32`, 'dev', spec.ifname],
      ...(spec.ip6 ? [['addr', 'add', `${spec.ip6}/128`, 'dev', spec.ifname, 'nodad']] : []),
      ['link', 'set', spec.ifname, 'up'],
      ['route', 'add', node.ip, 'dev', spec.ifname, 'scope', 'link'],
      ['route', 'add', 'default', 'via', node.ip, 'dev', spec.ifname],
      ...(spec.ip6 ? [['route', 'add', '::/0', 'via', 'fe80::1', 'dev', spec.ifname]] : []),
    ]);
    const links = JSON.parse(await ipAtPath(spec.netnsPath, ['-j', 'link', 'show', 'dev', spec.ifname])) as {
      address?: string;
    }[];
    pod.mac = links[0]?.address ?? '';
    await ipBatch(node.netns, [
      ['link', 'set', 'dev', n.hostIfname, 'alias', `"${podAlias(spec.namespace, spec.name)}"`],
    ]);
    await sysctlIn(node.netns, { [`net.ipv4.conf.${n.hostIfname}.proxy_arp`]: 1 });
    pod.hostIfindex = await ifindexIn(node.netns, n.hostIfname);
    await onPlumbed?.(pod);
    await ipBatch(node.netns, [
      ['link', 'set', n.hostIfname, 'up'],
      ...(spec.ip6 ? [['addr', 'add', 'fe80::1/64', 'dev', n.hostIfname, 'nodad']] : []),
      ['route', 'replace', `${spec.ip}/32`, 'dev', n.hostIfname, 'src', node.ip],
      ...(spec.ip6 ? [['route', 'replace', `${spec.ip6}/128`, 'dev', n.hostIfname]] : []),
    ]);
    return pod;
  } catch (err) {
    await driver.destroy(spec.namespace, spec.name);
    throw err;
  }
}

/** The container's side as the kernel holds it: its interface's addresses (CHECK). */
export async function containerAddresses(netnsPath: string, ifname: string): Promise<string[]> {
  const out = await ipAtPath(netnsPath, ['-j', 'addr', 'show', 'dev', ifname]);
  const links = JSON.parse(out || '[]') as { addr_info?: { local: string; scope: string }[] }[];
  return (links[0]?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => a.local);
}
