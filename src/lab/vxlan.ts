// A node's VXLAN device for tunnel mode (Cilium's cilium_vxlan: pkg/datapath/loader/netlink.go,
// Vxlan{FlowBased: true}): external (collect_md) mode, so one device reaches every other node, the
// remote address and VNI coming from each packet's tunnel key (the datapath sets them:
// bpf/lib/overlay.h, and attaches to the device with Datapath.attachOverlay). Created in the node's
// netns only, never in the root netns.
import { ifindexIn } from '../bpf/index.js';
import { ipIn } from './netns.js';

/** The device's name in every node namespace. */
export const vxlanDevice = 'weir_vxlan';
/** Cilium's VXLAN port (the Linux default, not IANA's 4789). */
export const VXLAN_PORT = 8472;
/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14): a pod's MTU is the underlay's minus this. */
export const VXLAN_OVERHEAD = 50;

export interface VxlanOptions {
  /** Device name (default weir_vxlan). */
  name?: string;
  /** MTU of the device (default: the kernel's, the underlay's minus the overhead). */
  mtu?: number;
}

/**
 * Creates (or finds) the node's VXLAN device in `netns`: `ip link add <name> type vxlan external
 * dstport 8472`, no ARP and no IPv6 link-local address (nothing but pods' and the node's packets,
 * each with its tunnel key, ever leaves it), up. A device of that name that is not a VXLAN device
 * in external mode is an error naming it. Returns its ifindex.
 */
export async function ensureVxlan(netns: string, opts: VxlanOptions = {}): Promise<number> {
  const name = opts.name ?? vxlanDevice;
  const found = await vxlanInfo(netns, name);
  if (!found) {
    await ipIn(netns, ['link', 'add', name, 'type', 'vxlan', 'external', 'dstport', String(VXLAN_PORT)]);
  } else if (!found.external || found.port !== VXLAN_PORT) {
    throw new Error(
      `${netns}: device ${name} exists but is not a VXLAN device in external mode on port ${VXLAN_PORT}`,
    );
  }
  await ipIn(netns, ['link', 'set', 'dev', name, 'arp', 'off', 'addrgenmode', 'none']);
  if (opts.mtu !== undefined) await ipIn(netns, ['link', 'set', 'dev', name, 'mtu', String(opts.mtu)]);
  await ipIn(netns, ['link', 'set', 'dev', name, 'up']);
  return ifindexIn(netns, name);
}

/** Removes the device; one that is gone (or a namespace that is gone) is not an error. */
export async function removeVxlan(netns: string, name = vxlanDevice): Promise<void> {
  if (await vxlanInfo(netns, name).catch(() => undefined))
    await ipIn(netns, ['link', 'del', name]).catch(() => undefined);
}

/**
 * The node's own packets for a remote pod CIDR go into the tunnel (the device's tc egress program
 * gives them their key, identity remote-node): `ip route replace <cidr> dev <name> [src <src>]`.
 * `src`: the node's address within its own pod CIDR (Cilium's cilium_host address), so that the
 * answers come back through the tunnel too.
 */
export async function addTunnelRoute(
  netns: string,
  cidr: string,
  opts: { src?: string; name?: string } = {},
): Promise<void> {
  await ipIn(netns, [
    'route',
    'replace',
    cidr,
    'dev',
    opts.name ?? vxlanDevice,
    ...(opts.src ? ['src', opts.src] : []),
  ]);
}

async function vxlanInfo(
  netns: string,
  name: string,
): Promise<{ external: boolean; port: number } | undefined> {
  const out = await ipIn(netns, ['-d', '-j', 'link', 'show']);
  const links = JSON.parse(out || '[]') as {
    ifname: string;
    linkinfo?: { info_kind?: string; info_data?: { external?: boolean; port?: number } };
  }[];
  const link = links.find((l) => l.ifname === name);
  if (!link) return undefined;
  const data = link.linkinfo?.info_kind === 'vxlan' ? link.linkinfo.info_data : undefined;
  return { external: data?.external === true, port: data?.port ?? 0 };
}
