// Addresses in datapath keys: 16 bytes with a separate family (IPv4 in the first 4 bytes), and
// CIDR prefixes as the ipcache writes them.
import { isIPv4, isIPv6 } from 'node:net';
import { WeirError, type ErrorLocation } from '../shared/errors.js';
import { ipBytes, ipText } from './packet/addr.js';

export type Family = 4 | 6;

/** An address as a key's 16 bytes, and its family. */
export function addrKey(addr: string, location: ErrorLocation = {}): { family: Family; bytes: Buffer } {
  const family = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : undefined;
  if (!family) {
    throw new WeirError('ERR_DATAPATH_ADDRESS', `'${addr}' is not an IPv4 or IPv6 address`, { location });
  }
  const bytes = Buffer.alloc(16);
  ipBytes(addr).copy(bytes);
  return { family, bytes };
}

/** Text of a key's 16 address bytes. */
export function addrText(bytes: Buffer, family: number): string {
  return ipText(bytes.subarray(0, family === 4 ? 4 : 16));
}

export interface Prefix {
  family: Family;
  /** Network bytes (16; host bits cleared). */
  bytes: Buffer;
  bits: number;
  /** Canonical text: network/bits. */
  text: string;
}

/** '10.0.0.0/8', 'fd00::/64' or a bare address (a host prefix). Host bits are cleared. */
export function parsePrefix(prefix: string, location: ErrorLocation = {}): Prefix {
  const [addr = '', len, extra] = prefix.split('/');
  const { family, bytes } = addrKey(addr, location);
  const max = family === 4 ? 32 : 128;
  const bits = len === undefined ? max : Number(len);
  if (extra !== undefined || !/^\d*$/.test(len ?? '') || !Number.isInteger(bits) || bits < 0 || bits > max) {
    throw new WeirError('ERR_DATAPATH_PREFIX', `'${prefix}' is not a valid prefix (length 0..${max})`, {
      location,
    });
  }
  for (let bit = bits; bit < 128; bit++) bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) & ~(0x80 >> (bit & 7));
  return { family, bytes, bits, text: `${addrText(bytes, family)}/${bits}` };
}
