// Gateway addresses on a lab node: each Gateway's address (198.51.100.0/24, TEST-NET-2: no other
// lab range uses it) is held by the node's weir_host device, like a LoadBalancer VIP on the node,
// so the node proxy can listen on it and the lab's externals (routed to the range through the
// node) reach it. Only addresses of that range are added or removed; nothing else is touched.
import { hostDevice } from './node.js';
import { ipBatch, ipIn } from './netns.js';

export const gatewayCidr = '198.51.100.0/24';
const inRange = (ip: string) => ip.startsWith('198.51.100.');

/** Makes the node's weir_host hold exactly `addresses` of the gateway range. */
export async function syncGatewayAddresses(nodeNetns: string, addresses: string[]): Promise<void> {
  const out = JSON.parse(await ipIn(nodeNetns, ['-j', 'addr', 'show', 'dev', hostDevice])) as {
    addr_info?: { family: string; local: string; prefixlen: number }[];
  }[];
  const have = new Set(
    (out[0]?.addr_info ?? []).filter((a) => a.family === 'inet' && inRange(a.local)).map((a) => a.local),
  );
  const want = new Set(addresses.filter(inRange));
  const cmds: string[][] = [];
  for (const a of want) if (!have.has(a)) cmds.push(['addr', 'add', `${a}/32`, 'dev', hostDevice]);
  for (const a of have) if (!want.has(a)) cmds.push(['addr', 'del', `${a}/32`, 'dev', hostDevice]);
  await ipBatch(nodeNetns, cmds);
}
