// Address arithmetic for the lab's pod CIDRs (IPv4 as numbers, IPv6 as bigints).
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr4 {
  base: number;
  prefix: number;
}

export function parseCidr4(cidr: string): Cidr4 | undefined {
  const [ip, len] = cidr.split('/');
  const prefix = Number(len);
  if (!ip || !isIPv4(ip) || !Number.isInteger(prefix) || prefix < 0 || prefix > 32 || len === '')
    return undefined;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (ip4ToNum(ip) & mask) >>> 0, prefix };
}

export function ip4ToNum(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function numToIp4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** The i-th address of the CIDR (0 = the network address). */
export function host4(c: Cidr4, i: number): string {
  return numToIp4((c.base + i) >>> 0);
}

export function size4(c: Cidr4): number {
  return 2 ** (32 - c.prefix);
}

export function contains4(c: Cidr4, ip: string): boolean {
  return isIPv4(ip) && ip4ToNum(ip) >= c.base && ip4ToNum(ip) < c.base + size4(c);
}

export interface Cidr6 {
  base: bigint;
  prefix: number;
}

export function parseCidr6(cidr: string): Cidr6 | undefined {
  const slash = cidr.lastIndexOf('/');
  const ip = cidr.slice(0, slash);
  const prefix = Number(cidr.slice(slash + 1));
  if (slash < 0 || !isIPv6(ip) || !Number.isInteger(prefix) || prefix < 0 || prefix > 128) return undefined;
  const mask = ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefix)) - 1n);
  return { base: ip6ToBig(ip) & mask, prefix };
}

function ip6ToBig(ip: string): bigint {
  const [head = '', tail] = ip.split('::');
  const parts = (s: string) => (s ? s.split(':') : []);
  const h = parts(head);
  const t = tail === undefined ? [] : parts(tail);
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** Canonical text (RFC 5952: lowercase, longest zero run compressed). */
export function bigToIp6(n: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt((7 - i) * 16)) & 0xffffn));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export function host6(c: Cidr6, i: number): string {
  return bigToIp6(c.base + BigInt(i));
}

/** The i-th address of an IPv4 CIDR given as text. */
export function transitHost(cidr: string, i: number): string {
  const c = parseCidr4(cidr);
  if (!c) throw new Error(`bad CIDR ${cidr}`);
  return host4(c, i);
}
