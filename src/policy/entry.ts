// Policy-map entries: the TypeScript side of struct policy_key / policy_entry (bpf/lib/common.h).
// Per endpoint, an LPM trie keyed {identity, direction, protocol, dport}; prefix lengths count
// identity (32) + direction (8) + protocol (8) + port bits (0..16).
import { portRangePrefixes } from '../shared/port-prefix.js';

export const DIR_INGRESS = 1;
export const DIR_EGRESS = 2;
export type Direction = typeof DIR_INGRESS | typeof DIR_EGRESS;

export const PROTO_ANY = 0;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_SCTP = 132;

export const PREFIX_PROTO_ANY = 40;
export const PREFIX_PORT_ANY = 48;
export const PREFIX_FULL = 64;

export interface PolicyMapEntry {
  identity: number;
  direction: Direction;
  /** IPPROTO_*, 0 = any (then port is 0 and prefixLen 40). */
  protocol: number;
  /** Host order here; the map stores it big-endian. */
  port: number;
  /** 40 (any protocol), 48 (any port), 49..64 (port prefix). */
  prefixLen: number;
  deny: boolean;
  /**
   * Allowed only once the two identities authenticated (`authentication.mode: required`; the
   * datapath's POLICY_F_AUTH and weir_auth). Absent: no authentication.
   */
  auth?: true;
  proxyPort: number;
  /** Id of the rule that produced the entry (see EngineOutput.cookies). */
  cookie: number;
  /** prefixLen - 40: bits of L4 matched, the datapath's precedence between its two lookups. */
  l4Prefix: number;
}

export const protocolNumbers: Record<string, number> = {
  ANY: PROTO_ANY,
  TCP: PROTO_TCP,
  UDP: PROTO_UDP,
  SCTP: PROTO_SCTP,
};

export function protocolName(n: number): string {
  return Object.entries(protocolNumbers).find(([, v]) => v === n)?.[0] ?? String(n);
}

export function directionName(d: Direction): 'ingress' | 'egress' {
  return d === DIR_INGRESS ? 'ingress' : 'egress';
}

/** L4 part of a key: protocol, port and prefix length (40..64). */
export interface L4Prefix {
  protocol: number;
  port: number;
  prefixLen: number;
}

/** L4 prefixes for a protocol number and port range (port 0 = any port). */
export function l4Prefixes(protocol: number, port: number, endPort?: number): L4Prefix[] {
  if (protocol === PROTO_ANY && port === 0) return [{ protocol: 0, port: 0, prefixLen: PREFIX_PROTO_ANY }];
  // LPM cannot wildcard the protocol under a port: ANY with a port becomes one entry per protocol.
  if (protocol === PROTO_ANY)
    return [PROTO_TCP, PROTO_UDP, PROTO_SCTP].flatMap((p) => l4Prefixes(p, port, endPort));
  if (port === 0) return [{ protocol, port: 0, prefixLen: PREFIX_PORT_ANY }];
  return portRangePrefixes(port, endPort ?? port).map((b) => ({
    protocol,
    port: b.port,
    prefixLen: PREFIX_PORT_ANY + b.portPrefixLen,
  }));
}

/** Does L4 prefix `outer` contain `inner` (equal counts)? */
export function l4Contains(outer: L4Prefix, inner: L4Prefix): boolean {
  if (outer.prefixLen > inner.prefixLen) return false;
  if (outer.prefixLen === PREFIX_PROTO_ANY) return true;
  if (outer.protocol !== inner.protocol) return false;
  return portInPrefix(inner.port, outer);
}

export function portInPrefix(port: number, p: L4Prefix): boolean {
  if (p.prefixLen <= PREFIX_PORT_ANY) return true;
  const shift = PREFIX_FULL - p.prefixLen;
  return port >>> shift === p.port >>> shift;
}

/** Does an entry's key match (identity, direction, protocol, port)? */
export function entryMatches(
  e: PolicyMapEntry,
  identity: number,
  direction: number,
  protocol: number,
  port: number,
): boolean {
  if (e.identity !== identity || e.direction !== direction) return false;
  if (e.prefixLen === PREFIX_PROTO_ANY) return true;
  return e.protocol === protocol && portInPrefix(port, e);
}

/** Unique key of an entry (what the map is keyed by). */
export function entryKey(
  e: Pick<PolicyMapEntry, 'identity' | 'direction' | 'protocol' | 'port' | 'prefixLen'>,
): string {
  return `${e.identity}/${e.direction}/${e.protocol}/${e.port}/${e.prefixLen}`;
}

export function compareEntries(a: PolicyMapEntry, b: PolicyMapEntry): number {
  return (
    a.direction - b.direction ||
    a.identity - b.identity ||
    a.protocol - b.protocol ||
    a.port - b.port ||
    a.prefixLen - b.prefixLen
  );
}

export function makeEntry(
  identity: number,
  direction: Direction,
  l4: L4Prefix,
  deny: boolean,
  cookie: number,
): PolicyMapEntry {
  return {
    identity,
    direction,
    protocol: l4.protocol,
    port: l4.port,
    prefixLen: l4.prefixLen,
    deny,
    proxyPort: 0,
    cookie,
    l4Prefix: l4.prefixLen - PREFIX_PROTO_ANY,
  };
}
