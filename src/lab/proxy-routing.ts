// The node namespace's policy routing for the node proxy (bpf/lib/proxy.h): packets the datapath
// marked MARK_MAGIC_TO_PROXY are delivered locally (to the proxy socket they were assigned to)
// instead of being forwarded. Cilium's rule, in the NODE namespace only (`ip -n`):
//   ip rule add fwmark 0x200/0xf00 lookup 2004 pref 9      (and the IPv6 twin)
//   ip route replace local 0.0.0.0/0 dev lo table 2004     (and local ::/0)
// and early demux off (net.ipv4.ip_early_demux=0, which covers IPv6 too): the node's stack would
// otherwise hand a pod's packet to a proxy socket of the same tuple as soon as it arrives (before
// routing), and drop it when that socket is still in its handshake (a forwarded packet must not
// carry a socket); without it the packet reaches the destination's veth, whose weir_to_container
// redirects it to the proxy. Idempotent; nothing else in the namespace changes.
import { proxyRouting } from '../datapath/proxy-marks.js';
import { ipIn, sysctlIn } from './netns.js';

/** The rule's priority: before the main table (32766), as Cilium's (9). */
const RULE_PREF = '9';

export async function ensureProxyRouting(netns: string, opts: { ipv6: boolean }): Promise<void> {
  await sysctlIn(netns, { 'net.ipv4.ip_early_demux': 0 });
  await ensureFamily(netns, '-4');
  // A namespace with IPv6 turned off has no IPv6 routing to set up (and no IPv6 to redirect).
  if (opts.ipv6) await ensureFamily(netns, '-6').catch(() => undefined);
}

async function ensureFamily(netns: string, family: '-4' | '-6'): Promise<void> {
  const { rule, routes } = proxyRouting();
  const rules = JSON.parse(await ipIn(netns, ['-j', family, 'rule', 'show'])) as {
    priority?: number;
    fwmark?: string;
    fwmask?: string;
    table?: string;
  }[];
  const [, markMask = ''] = rule;
  const [mark, mask] = markMask.split('/');
  const have = rules.some(
    (r) => String(r.priority) === RULE_PREF && r.fwmark === mark && r.fwmask === mask && r.table === rule[3],
  );
  if (!have) await ipIn(netns, [family, 'rule', 'add', ...rule, 'pref', RULE_PREF]);
  const route = routes.find((r) => `-${r.family}` === family);
  if (route) await ipIn(netns, [family, 'route', 'replace', ...route.args]);
}
