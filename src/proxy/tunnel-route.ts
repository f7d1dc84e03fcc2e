// Encryption between nodes for the connections the node proxy opens itself (docs/mtls.md, "The
// proxy's own upstreams"): with --encryption mtls, an upstream of an L7-redirected connection whose
// destination is a pod of another node must travel in the mTLS tunnel, as the pod's own connection
// would have, never as plain VXLAN from the node's stack.
//
//   worker thread (or the main thread)                 main thread (tunnel.ts)
//   ProxyServer.connect(conn)                          TunnelProxy handoff listener
//     needs(dst)? ── no ──► transparent upstream          <proxy dir>/tunnel.sock (root-only dir)
//     yes: unix socket ─── "<src ip> <src port>          reads the header, then carries the rest
//                           <dst ip> <dst port>\n" ─────► as a stream of the (src identity,
//                           then the HTTP bytes           dst identity, peer) tunnel, forwarded
//                                                         for="<src ip>:<src port>"
//
// Who decides: the datapath's own switch and the datapath's own test, read from the pinned maps
// (weir_tunnel[0].encrypt_port set, and the destination's ipcache entry a cluster identity behind a
// tunnel endpoint: bpf/lib/overlay.h overlay_encrypt_port), so the proxy tunnels exactly what the
// datapath would have sent to the tunnel listener. A map that cannot be read fails the upstream
// (fail closed); the main thread refuses a header whose source is not a pod of this node.
import { connect, isIP, type Socket } from 'node:net';
import { TypedMap, u32, type BpfMap } from '../bpf/index.js';
import { TunnelConfig as TunnelMapValue } from '../datapath/maps/tunnel/layout.js';
import type { IpcacheEntry } from '../datapath/maps/ipcache/index.js';

/** The hand-off header's source naming the node itself (tunnel.ts NODE_SOURCE). */
const NODE_SOURCE = 'node';

/** The hand-off's header: one line, at most this many bytes with its newline. */
export const HANDOFF_HEADER_MAX = 128;

/** Cluster identities (pods): IDENTITY_CLUSTER_MIN..; CIDR identities carry IDENTITY_LOCAL_FLAG (bpf/lib/common.h). */
const IDENTITY_CLUSTER_MIN = 256;
const IDENTITY_LOCAL_FLAG = 1 << 24;

export interface Address {
  ip: string;
  port: number;
}

/** The header line naming the original client (address and the upstream's source port) and destination. */
export function handoffHeader(src: Address, dst: Address): string {
  return `${src.ip} ${src.port} ${dst.ip} ${dst.port}\n`;
}

/** The header parsed, or undefined when it is not two addresses with ports. */
export function parseHandoffHeader(line: string): { src: Address; dst: Address } | undefined {
  const m = /^(\S+) (\d{1,5}) (\S+) (\d{1,5})$/.exec(line);
  if (!m) return undefined;
  const src = { ip: m[1] as string, port: Number(m[2]) };
  const dst = { ip: m[3] as string, port: Number(m[4]) };
  const good = (a: Address) => isIP(a.ip) !== 0 && a.port >= 1 && a.port <= 65535;
  // The node's own upstreams (connectNode): source "node 0", the main thread picks the address.
  const node = src.ip === NODE_SOURCE && src.port === 0;
  return (node || good(src)) && good(dst) ? { src, dst } : undefined;
}

/** Whether a destination is one the datapath tunnels (overlay_encrypt_port's test, for an entry). */
export function tunnelledEntry(e: IpcacheEntry | undefined): boolean {
  return (
    !!e?.tunnelEndpoint && e.identity >= IDENTITY_CLUSTER_MIN && (e.identity & IDENTITY_LOCAL_FLAG) === 0
  );
}

export interface TunnelRouteOptions {
  /** The pinned weir_tunnel (read only). */
  tunnelMap: BpfMap;
  /** The pinned ipcache's exact entry of an address. */
  entryOf(ip: string): IpcacheEntry | undefined;
  /** The main thread's hand-off listener (TunnelProxy.listenHandoff). */
  socketPath: string;
}

export class TunnelRoute {
  readonly #o: TunnelRouteOptions;
  readonly #map: TypedMap<number, ReturnType<typeof TunnelMapValue.decode>>;

  constructor(o: TunnelRouteOptions) {
    this.#o = o;
    this.#map = new TypedMap(o.tunnelMap, u32(), TunnelMapValue);
  }

  /**
   * True when an upstream to `dstIp` must go through the tunnel: encryption on in the datapath (a
   * VXLAN device and an encrypt port in weir_tunnel) and the destination another node's pod.
   * Throws when a map cannot be read: the caller fails the upstream.
   */
  needs(dstIp: string): boolean {
    const c = this.#map.lookup(0);
    if (!c?.ifindex || !c.encryptPort) return false;
    return tunnelledEntry(this.#o.entryOf(dstIp));
  }

  /**
   * A connection to `dst` carried by the main thread's tunnel, from `src` (the original client's
   * address and the source port the other node's proxy connects from). The socket connects at
   * once (a unix socket); the tunnel's failure closes it before any byte comes back.
   */
  connect(src: Address, dst: Address): Socket {
    const s = connect({ path: this.#o.socketPath, allowHalfOpen: true });
    s.write(handoffHeader(src, dst));
    return s;
  }

  /**
   * A connection of the node itself to `dst` (the Gateway's and mesh routes' upstreams, the DNS
   * proxy's TCP upstream) carried by the main thread's tunnel with the node SVID, from the node's
   * own address: the other node judges it as remote-node, as it judges the node's plain
   * connections. Fails like `connect` (closed before any byte comes back), never sent otherwise.
   */
  connectNode(dst: Address): Socket {
    return this.connect({ ip: NODE_SOURCE, port: 0 }, dst);
  }
}
