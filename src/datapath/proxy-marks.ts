// skb->mark values shared by the datapath (bpf/lib/common.h MARK_MAGIC_*, bpf/lib/proxy.h), the
// node proxy's upstream sockets (SO_MARK) and the node's policy routing (fwmark rule -> table).
// proxy-marks.test.ts keeps them equal to the header.

export const ProxyMark = {
  /** Bits 8-11 hold the magic (Cilium's layout); a port may sit in the upper 16 bits. */
  MASK: 0x0f00,
  /** Set by the datapath: deliver locally to a proxy socket (the policy routing rule's fwmark). */
  TO_PROXY: 0x0200,
  /** SO_MARK of the proxy's upstream sockets of its ingress listener: not redirected again. */
  PROXY_INGRESS: 0x0a00,
  /** SO_MARK of the proxy's upstream sockets of its egress listener. */
  PROXY_EGRESS: 0x0b00,
  /**
   * SO_MARK of the mTLS tunnel's inbound upstream sockets (--encryption mtls): the identity the
   * peer's certificate proved, laid out as IDENTITY's; weir_to_container judges it with that.
   */
  PROXY_TUNNEL: 0x0c00,
  /**
   * Set by weir_from_overlay on a tunnelled packet it hands to the node's stack: the source
   * identity (bits 0-15 in the mark's bits 16-31, bits 16-23 in 0-7) for weir_to_container.
   */
  IDENTITY: 0x0f00,
} as const;

/**
 * SO_MARK of an upstream socket of the egress listener: PROXY_EGRESS with the client's identity laid
 * out as IDENTITY's (Cilium's MARK_MAGIC_EGRESS), so that its packets through the tunnel carry the
 * client's identity to the other node (bpf/lib/overlay.h), not the node's.
 */
export function proxyEgressMark(identity: number): number {
  return (ProxyMark.PROXY_EGRESS | ((identity & 0xffff) << 16) | ((identity >>> 16) & 0xff)) >>> 0;
}

/** SO_MARK of a tunnel's inbound upstream socket: PROXY_TUNNEL with the proven identity. */
export function proxyTunnelMark(identity: number): number {
  return (ProxyMark.PROXY_TUNNEL | ((identity & 0xffff) << 16) | ((identity >>> 16) & 0xff)) >>> 0;
}

/** The routing table the fwmark rule points at: `local 0.0.0.0/0 dev lo` and `local ::/0 dev lo`. */
export const PROXY_ROUTE_TABLE = 2004;

/** The policy routing the node namespace needs for the proxy (ip rule / ip route arguments). */
export function proxyRouting(): { rule: string[]; routes: { family: 4 | 6; args: string[] }[] } {
  const mark = `0x${ProxyMark.TO_PROXY.toString(16)}/0x${ProxyMark.MASK.toString(16)}`;
  return {
    rule: ['fwmark', mark, 'lookup', String(PROXY_ROUTE_TABLE)],
    routes: [
      { family: 4, args: ['local', '0.0.0.0/0', 'dev', 'lo', 'table', String(PROXY_ROUTE_TABLE)] },
      { family: 6, args: ['local', '::/0', 'dev', 'lo', 'table', String(PROXY_ROUTE_TABLE)] },
    ],
  };
}
