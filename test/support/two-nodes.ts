// Two "nodes" without a lab, for tunnel mode (test/integration/vxlan.privileged.test.ts,
// bench/vxlan.ts): node namespaces joined by a veth underlay (weirul, 192.168.250.0/24), each with
// the lab's VXLAN device (src/lab/vxlan.ts) and one pod (its own namespace, a veth whose host side
// holds the pod CIDRs' .1 and ::1 (the pod has IPv4 and IPv6), the pod's MTU the underlay's minus the encapsulation). Every name starts
// with `base` (weir-<test lab name>), so parallel checkouts keep theirs apart.
import { ensureVxlan, VXLAN_OVERHEAD } from '../../src/lab/index.js';
import { run } from '../../src/shared/exec.js';

export interface TwoNodesNode {
  ns: string;
  underlay: string;
  podCidr: string;
  podCidr6: string;
  /** The node's address in its pod CIDR (the pod's default gateway, on the host veth). */
  gw: string;
  gw6: string;
}
export interface TwoNodesPod {
  ns: string;
  ip: string;
  ip6: string;
  identity: number;
  endpointId: number;
  /** The host-side veth, in the node's namespace. */
  host: string;
}

export const ipIn = (ns: string, ...args: string[]) => run(['ip', '-n', ns, ...args]);

export class TwoNodes {
  readonly nodes: readonly [TwoNodesNode, TwoNodesNode];
  readonly pods: readonly [TwoNodesPod, TwoNodesPod];

  private constructor(base: string) {
    this.nodes = [
      {
        ns: `${base}-n1`,
        underlay: '192.168.250.1',
        podCidr: '10.244.1.0/24',
        podCidr6: 'fd00:10:244:1::/64',
        gw: '10.244.1.1',
        gw6: 'fd00:10:244:1::1',
      },
      {
        ns: `${base}-n2`,
        underlay: '192.168.250.2',
        podCidr: '10.244.2.0/24',
        podCidr6: 'fd00:10:244:2::/64',
        gw: '10.244.2.1',
        gw6: 'fd00:10:244:2::1',
      },
    ];
    this.pods = [
      {
        ns: `${base}-n1-a`,
        ip: '10.244.1.2',
        ip6: 'fd00:10:244:1::2',
        identity: 1001,
        endpointId: 1,
        host: 'weirtpa',
      },
      {
        ns: `${base}-n2-b`,
        ip: '10.244.2.2',
        ip6: 'fd00:10:244:2::2',
        identity: 1002,
        endpointId: 2,
        host: 'weirtpb',
      },
    ];
  }

  get namespaces(): string[] {
    return [...this.pods.map((p) => p.ns), ...this.nodes.map((n) => n.ns)];
  }

  static async create(base: string): Promise<TwoNodes> {
    const t = new TwoNodes(base);
    try {
      await t.#build();
    } catch (err) {
      await t.destroy();
      throw err;
    }
    return t;
  }

  async #build(): Promise<void> {
    const [n1, n2] = this.nodes;
    for (const ns of this.namespaces) await run(['ip', 'netns', 'add', ns]);
    await ipIn(n1.ns, 'link', 'add', 'weirul', 'type', 'veth', 'peer', 'name', 'weirul', 'netns', n2.ns);
    for (const [i, n] of this.nodes.entries()) {
      const pod = this.pods[i === 0 ? 0 : 1];
      await run(['ip', 'netns', 'exec', n.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      await ipIn(n.ns, 'addr', 'add', `${n.underlay}/24`, 'dev', 'weirul');
      await ipIn(n.ns, 'link', 'set', 'weirul', 'up');
      await ipIn(n.ns, 'link', 'set', 'lo', 'up');
      await ensureVxlan(n.ns);
      await ipIn(n.ns, 'link', 'add', pod.host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.ns);
      await ipIn(n.ns, 'addr', 'add', `${n.gw}/24`, 'dev', pod.host);
      await ipIn(n.ns, 'addr', 'add', `${n.gw6}/64`, 'dev', pod.host, 'nodad');
      await ipIn(n.ns, 'link', 'set', pod.host, 'up');
      // Cilium's pod MTU in tunnel mode: the underlay's minus the encapsulation.
      await ipIn(pod.ns, 'link', 'set', 'eth0', 'mtu', String(1500 - VXLAN_OVERHEAD));
      await ipIn(pod.ns, 'addr', 'add', `${pod.ip}/24`, 'dev', 'eth0');
      await ipIn(pod.ns, 'addr', 'add', `${pod.ip6}/64`, 'dev', 'eth0', 'nodad');
      await ipIn(pod.ns, 'link', 'set', 'eth0', 'up');
      await ipIn(pod.ns, 'link', 'set', 'lo', 'up');
      await ipIn(pod.ns, 'route', 'add', 'default', 'via', n.gw);
      await ipIn(pod.ns, '-6', 'route', 'add', 'default', 'via', n.gw6);
    }
  }

  /**
   * Without weir: a plain point-to-point VXLAN pair (VNI 42, UDP 4789 so that it never meets the
   * weir device's port) between the nodes, each node routing the other's pod CIDR into it.
   */
  async plainVxlan(): Promise<void> {
    for (const [i, n] of this.nodes.entries()) {
      const peer = this.nodes[1 - i] as TwoNodesNode;
      await ipIn(
        n.ns,
        'link',
        'add',
        'weirvxp',
        'type',
        'vxlan',
        'id',
        '42',
        'local',
        n.underlay,
        'remote',
        peer.underlay,
        'dstport',
        '4789',
      );
      await ipIn(n.ns, 'addr', 'add', `172.31.0.${i + 1}/30`, 'dev', 'weirvxp');
      await ipIn(n.ns, 'link', 'set', 'weirvxp', 'up');
      await ipIn(n.ns, 'route', 'replace', peer.podCidr, 'via', `172.31.0.${2 - i}`, 'dev', 'weirvxp');
    }
  }

  /** Native routing (no tunnel): each node routes the other's pod CIDR to it over the underlay. */
  async nativeRoutes(): Promise<void> {
    for (const [i, n] of this.nodes.entries()) {
      const peer = this.nodes[1 - i] as TwoNodesNode;
      await ipIn(n.ns, 'route', 'replace', peer.podCidr, 'via', peer.underlay, 'dev', 'weirul');
    }
  }

  async destroy(): Promise<void> {
    for (const ns of this.namespaces) await run(['ip', 'netns', 'del', ns], { check: false });
  }
}
