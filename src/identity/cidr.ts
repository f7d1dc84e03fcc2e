// IP addresses and prefixes as plain data (family + 128-bit bigint), parsed like Go's
// net.ParseCIDR: host bits are allowed and masked off, so "10.244.0.7/4" is the /4 network.
import { WeirError } from '../shared/errors.js';

export type Family = 4 | 6;

export interface Prefix {
  family: Family;
  /** Network address, host bits cleared. */
  addr: bigint;
  len: number;
}

const bits = (f: Family) => (f === 4 ? 32 : 128);

function parseIPv4(s: string): bigint | undefined {
  // By hand: this runs for every address of every policy and pod on each regeneration.
  let v = 0;
  let parts = 0;
  let i = 0;
  while (i <= s.length) {
    const begin = i;
    let n = 0;
    while (i < s.length) {
      const c = s.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      n = n * 10 + c;
      i++;
    }
    const digits = i - begin;
    // 1..3 digits, no leading zero, at most 255.
    if (digits === 0 || digits > 3 || (digits > 1 && s.charCodeAt(begin) === 48) || n > 255) return undefined;
    v = v * 256 + n;
    parts++;
    if (i === s.length) break;
    if (s.charCodeAt(i) !== 46 || parts === 4) return undefined;
    i++;
  }
  return parts === 4 ? BigInt(v) : undefined;
}

function parseIPv6(s: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  let tail4: bigint | undefined;
  let str = s;
  // An embedded IPv4 tail (::ffff:1.2.3.4) counts as two groups.
  const lastColon = str.lastIndexOf(':');
  if (str.includes('.')) {
    tail4 = parseIPv4(str.slice(lastColon + 1));
    if (tail4 === undefined) return undefined;
    str = str.slice(0, lastColon + 1) + '0:0';
  }
  const halves = str.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string) => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0] ?? '');
  const tail = halves.length === 2 ? groups(halves[1] ?? '') : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  let v = 0n;
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  if (tail4 !== undefined) v = (v & ~0xffffffffn) | tail4;
  return v;
}

/** Parses an IPv4 or IPv6 address; undefined if it is not one. */
export function parseIP(s: string): { family: Family; addr: bigint } | undefined {
  const v4 = parseIPv4(s);
  if (v4 !== undefined) return { family: 4, addr: v4 };
  if (s.includes(':')) {
    const v6 = parseIPv6(s);
    if (v6 !== undefined) return { family: 6, addr: v6 };
  }
  return undefined;
}

function computeMask(total: number, len: number): bigint {
  return ((1n << BigInt(total)) - 1n) ^ ((1n << BigInt(total - len)) - 1n);
}

// Masks are computed once per length: bigint shifts dominate containment checks otherwise.
const masks4 = Array.from({ length: 33 }, (_, len) => computeMask(32, len));
const masks6 = Array.from({ length: 129 }, (_, len) => computeMask(128, len));

function mask(family: Family, len: number): bigint {
  return (family === 4 ? masks4[len] : masks6[len]) ?? computeMask(bits(family), len);
}

/** The last address of a prefix. */
export function lastAddress(p: Prefix): bigint {
  return p.addr | (mask(p.family, p.len) ^ mask(p.family, bits(p.family)));
}

/**
 * Parses "addr/len" (Go ParseCIDR semantics, host bits masked). With `allowBareIP`, a plain
 * address means a host prefix (/32 or /128), as Cilium's toCIDR accepts. Undefined if invalid.
 */
export function parsePrefix(s: string, opts: { allowBareIP?: boolean } = {}): Prefix | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) {
    if (!opts.allowBareIP) return undefined;
    const ip = parseIP(s);
    return ip ? { family: ip.family, addr: ip.addr, len: bits(ip.family) } : undefined;
  }
  const ip = parseIP(s.slice(0, slash));
  const lenStr = s.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(lenStr)) return undefined;
  const len = Number(lenStr);
  if (len > bits(ip.family)) return undefined;
  return { family: ip.family, addr: ip.addr & mask(ip.family, len), len };
}

/** Like parsePrefix, but throws ERR_POLICY_INVALID_CIDR. */
export function mustParsePrefix(s: string): Prefix {
  const p = parsePrefix(s, { allowBareIP: true });
  if (!p) throw new WeirError('ERR_POLICY_INVALID_CIDR', `'${s}' is not a valid CIDR`);
  return p;
}

export function formatIP(family: Family, addr: bigint): string {
  if (family === 4) {
    const n = Number(addr);
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  const groups = [...Array(8).keys()].map((i) => Number((addr >> BigInt(112 - 16 * i)) & 0xffffn));
  // Longest run of zero groups (length ≥ 2) becomes "::" (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = (g: number[]) => g.map((n) => n.toString(16)).join(':');
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}

export function formatPrefix(p: Prefix): string {
  return `${formatIP(p.family, p.addr)}/${p.len}`;
}

/** Does `outer` contain `inner` (equal counts)? */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  return (
    outer.family === inner.family &&
    outer.len <= inner.len &&
    (inner.addr & mask(outer.family, outer.len)) === outer.addr
  );
}

export function hostPrefix(ip: string): Prefix | undefined {
  const p = parseIP(ip);
  return p ? { family: p.family, addr: p.addr, len: bits(p.family) } : undefined;
}

export function comparePrefix(a: Prefix, b: Prefix): number {
  if (a.family !== b.family) return a.family - b.family;
  if (a.addr !== b.addr) return a.addr < b.addr ? -1 : 1;
  return a.len - b.len;
}

/** Nth address of a prefix (n = 0 is the network address). */
export function nthAddress(p: Prefix, n: number): string {
  return formatIP(p.family, p.addr + BigInt(n));
}

export interface IpcacheEntry {
  prefix: string;
  identity: number;
}

/**
 * Prefixes with a value, for longest-prefix match: one hash map per prefix length present, so a
 * lookup costs one probe per distinct length instead of a scan of every prefix.
 */
export class PrefixTable<T> {
  private readonly byLen = { 4: new Map<number, Map<bigint, T>>(), 6: new Map<number, Map<bigint, T>>() };
  /** Lengths present per family, longest first. */
  private lens: { 4: number[]; 6: number[] } | undefined;

  /** Adds (or replaces) the value of a prefix. */
  set(p: Prefix, value: T): void {
    const lens = this.byLen[p.family];
    let m = lens.get(p.len);
    if (!m) {
      lens.set(p.len, (m = new Map()));
      this.lens = undefined;
    }
    m.set(p.addr, value);
  }

  /** The value of the longest prefix containing `p` (`p` itself included). */
  longest(p: Prefix): T | undefined {
    this.lens ??= {
      4: [...this.byLen[4].keys()].sort((a, b) => b - a),
      6: [...this.byLen[6].keys()].sort((a, b) => b - a),
    };
    const byLen = this.byLen[p.family];
    for (const len of this.lens[p.family]) {
      if (len > p.len) continue;
      const v = byLen.get(len)?.get(p.addr & mask(p.family, len));
      if (v !== undefined) return v;
    }
    return undefined;
  }
}

/** An ipcache's entries indexed for lookups; built once per entries array. */
const ipcacheIndexes = new WeakMap<readonly IpcacheEntry[], PrefixTable<IpcacheEntry>>();

/** Longest-prefix match of `ip` over ipcache entries (the datapath's weir_ipcache, in TS). */
export function lookupIpcache(entries: readonly IpcacheEntry[], ip: string): IpcacheEntry | undefined {
  const host = hostPrefix(ip);
  if (!host) return undefined;
  let table = ipcacheIndexes.get(entries);
  if (!table) {
    table = new PrefixTable();
    // The first of equal prefixes wins, as the linear scan it replaces did.
    for (const e of [...entries].reverse()) {
      const p = parsePrefix(e.prefix);
      if (p) table.set(p, e);
    }
    ipcacheIndexes.set(entries, table);
  }
  return table.longest(host);
}
