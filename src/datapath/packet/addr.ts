// Address text <-> bytes for the packet builder: IPv4 dotted quads, IPv6 (with ::), MACs.
import { isIPv4, isIPv6 } from 'node:net';
import { WeirError } from '../../shared/errors.js';

/** 4 bytes of an IPv4 address or 16 of an IPv6 one, in network order. */
export function ipBytes(addr: string): Buffer {
  if (isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  if (isIPv6(addr)) return ipv6Bytes(addr);
  throw new WeirError('ERR_PACKET_ADDRESS', `'${addr}' is not an IPv4 or IPv6 address`, {
    location: { field: 'address' },
  });
}

function ipv6Bytes(addr: string): Buffer {
  let text = addr;
  const out = Buffer.alloc(16);
  // A trailing dotted quad (::ffff:10.0.0.1) stands for the last two groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad?.[1]) {
    const v4 = ipBytes(quad[1]);
    text = `${text.slice(0, quad.index)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = [
    ...headGroups,
    ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'),
    ...tailGroups,
  ];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Canonical text of 4 or 16 address bytes (IPv6 compressed as RFC 5952). */
export function ipText(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new WeirError('ERR_PACKET_ADDRESS', `${bytes.length} address bytes`);
  const buf = Buffer.from(bytes);
  const groups = Array.from({ length: 8 }, (_, i) => buf.readUInt16BE(i * 2));
  // Longest run (>= 2) of zero groups becomes '::'.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export function macBytes(mac: string): Buffer {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new WeirError('ERR_PACKET_ADDRESS', `'${mac}' is not a MAC address`, {
      location: { field: 'mac' },
    });
  }
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

export function macText(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}
