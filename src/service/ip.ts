// Address text for services: the family of an address, its canonical text (so the same address
// written two ways is one address to the allocator and the maps) and "address:port" as Kubernetes
// and Cilium print it ([v6]:port).
import { isIPv4, isIPv6 } from 'node:net';
import { ipBytes, ipText } from '../datapath/packet/addr.js';
import type { IPFamily } from './api/types.js';

/** IPv4, IPv6, or undefined for anything else (a scoped 'fe80::1%eth0' is not a service address). */
export function ipFamilyOf(ip: string): IPFamily | undefined {
  return isIPv4(ip) ? 'IPv4' : isIPv6(ip) && !ip.includes('%') ? 'IPv6' : undefined;
}

/** RFC 5952 text of an IPv6 address (lowercase, longest zero run compressed); IPv4 as it is. */
export function canonicalIP(ip: string): string {
  return isIPv6(ip) ? ipText(ipBytes(ip)) : ip;
}

export const hostPort = (address: string, port: number) =>
  isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
