// A lab's underlay: the network its nodes share, as machines share a LAN. A bridge (weir_ul) in the
// lab's own namespace weir-<lab>-underlay holding the underlay's first address; each node joins it
// with a veth (weir_ul in the node's namespace, weirul<hash> on the bridge) carrying the node's
// underlay address. With native routing each node routes the other nodes' pod CIDRs via their
// underlay addresses; with tunnel mode each node has a VXLAN device (external) into which its pods'
// traffic to other nodes is encapsulated, and routes the other nodes' pod CIDRs into it for its
// own packets. The underlay's MTU (9000) leaves room for the encapsulation of 1500-byte packets.
// The lab's etcd (a cluster's Store) listens on the bridge's address.
import { host4, parseCidr4 } from './cidr.js';
import { underlayNetns, vethName } from './names.js';
import { addNetns, ipBatch, ipIn, sysctlIn } from './netns.js';
import { addTunnelRoute, ensureVxlan, vxlanDevice } from './vxlan.js';
import type { Logger, NodeInfo } from './node.js';
import { underlayCidr } from './spec.js';

/** The device joining a node to the underlay (in the node's namespace) and the bridge. */
export const underlayDevice = 'weir_ul';
const bridge = 'weir_ul';
const cidr = parseCidr4(underlayCidr) as { base: number; prefix: number };
const prefixLen = cidr.prefix;
const underlayMtu = 9000;

/** The bridge's address (the lab's etcd listens there). */
export const underlayGateway = host4(cidr, 1);
/** Node i (0-based, spec order) of the lab: 198.18.0.(11+i). */
export const underlayAddress = (i: number) => host4(cidr, 11 + i);
/** The client port of the lab's etcd on the underlay. */
export const etcdPort = 2379;

/** Creates (or completes) the underlay and joins every node to it. Idempotent. */
export async function ensureUnderlay(lab: string, nodes: NodeInfo[], log: Logger): Promise<void> {
  const ns = underlayNetns(lab);
  log(`underlay: bridge ${bridge} in ${ns}, ${underlayCidr}`);
  await addNetns(ns);
  const links = JSON.parse(await ipIn(ns, ['-j', 'link', 'show'])) as { ifname: string }[];
  const have = new Set(links.map((l) => l.ifname));
  await ipBatch(ns, [
    ['link', 'set', 'lo', 'up'],
    ...(have.has(bridge) ? [] : [['link', 'add', bridge, 'type', 'bridge']]),
    ['addr', 'replace', `${underlayGateway}/${prefixLen}`, 'dev', bridge],
    ['link', 'set', bridge, 'mtu', String(underlayMtu), 'up'],
  ]);
  for (const n of nodes) {
    if (!n.underlayIP) continue;
    const peer = vethName('weirul', n.name);
    if (!have.has(peer)) {
      // Created in the node's namespace, its peer moved to the underlay's.
      await ipIn(n.netns, ['link', 'del', underlayDevice]).catch(() => undefined);
      await ipIn(n.netns, ['link', 'add', underlayDevice, 'type', 'veth', 'peer', 'name', peer, 'netns', ns]);
    }
    await ipBatch(ns, [
      ['link', 'set', peer, 'mtu', String(underlayMtu)],
      ['link', 'set', peer, 'master', bridge],
      ['link', 'set', peer, 'up'],
    ]);
    await ipBatch(n.netns, [
      ['addr', 'replace', `${n.underlayIP}/${prefixLen}`, 'dev', underlayDevice],
      ['link', 'set', underlayDevice, 'mtu', String(underlayMtu), 'up'],
    ]);
  }
}

/**
 * Tunnel mode: each node's VXLAN device (MTU 1500: the underlay carries the 50 bytes more), and
 * routes for the other nodes' pod CIDRs into it with the node's own address as source (its
 * packets get their tunnel key from the device's program; answers come back through the tunnel).
 */
export async function ensureTunnel(nodes: NodeInfo[], log: Logger): Promise<void> {
  for (const n of nodes) {
    if (!n.underlayIP) continue;
    await ensureVxlan(n.netns, { mtu: 1500 });
    const others = nodes.filter((o) => o !== n && o.underlayIP);
    log(`node ${n.name}: ${vxlanDevice}, routes to ${others.map((o) => o.podCIDR).join(', ') || 'none'}`);
    for (const o of others) {
      await addTunnelRoute(n.netns, o.podCIDR, { src: n.ip });
      if (o.podCIDRv6 && n.ip6) await addTunnelRoute(n.netns, o.podCIDRv6, { src: n.ip6 });
    }
  }
}

/**
 * Native routing: in each node's namespace, a route for every other node's pod CIDR via that
 * node's underlay address (replaced, so running it again is fine).
 */
export async function ensureNativeRoutes(nodes: NodeInfo[], log: Logger): Promise<void> {
  for (const n of nodes) {
    const others = nodes.filter((o) => o !== n && o.underlayIP);
    if (!n.underlayIP || others.length === 0) continue;
    log(`node ${n.name}: routes to ${others.map((o) => `${o.podCIDR} via ${o.underlayIP}`).join(', ')}`);
    await sysctlIn(n.netns, { 'net.ipv4.conf.all.rp_filter': 0 });
    await ipBatch(
      n.netns,
      others.map((o) => [
        'route',
        'replace',
        o.podCIDR,
        'via',
        o.underlayIP as string,
        'dev',
        underlayDevice,
      ]),
    );
  }
}
