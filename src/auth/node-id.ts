// The node ids of weir_auth keys (bpf/lib/auth.h auth_remote_node): the datapath derives a peer's
// node id from the ipcache's tunnel endpoint of the peer's address — the underlay IPv4 address of
// the peer's node, written in both routing modes — as its low 16 bits (0 becomes 0xffff; 0 means this node). The agent maps ids
// back to the cluster's node records the same way; two nodes whose addresses give one id cannot
// be told apart, so a handshake for that id is refused (fail closed) and the clash logged.
import { isIPv4 } from 'node:net';

/** The weir_auth node id of a node whose underlay address is `underlayIP`; undefined without one. */
export function authNodeId(underlayIP: string | undefined): number | undefined {
  if (!underlayIP || !isIPv4(underlayIP)) return undefined;
  const [, , c, d] = underlayIP.split('.').map(Number) as [number, number, number, number];
  const id = ((c << 8) | d) & 0xffff;
  return id === 0 ? 0xffff : id;
}

export interface AuthNode {
  id: number;
  name: string;
  /** Where its auth listener is dialled: its underlay address. */
  address: string;
}

/** The nodes by weir_auth id; ids two nodes share map to undefined (ambiguous). */
export function authNodes(
  nodes: readonly { name: string; underlayIP?: string }[],
): Map<number, AuthNode | undefined> {
  const out = new Map<number, AuthNode | undefined>();
  for (const n of nodes) {
    const id = authNodeId(n.underlayIP);
    if (id === undefined) continue;
    out.set(id, out.has(id) ? undefined : { id, name: n.name, address: n.underlayIP as string });
  }
  return out;
}
