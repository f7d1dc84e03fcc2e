// Checksums: the Internet checksum (RFC 1071) with IPv4/IPv6 pseudo-headers, and CRC32c for SCTP.

/** One's-complement sum of 16-bit words, folded, not inverted (so sums can be chained). */
export function onesSum(data: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < data.length; i += 2) sum += ((data[i] ?? 0) << 8) | (data[i + 1] ?? 0);
  if (data.length % 2 === 1) sum += (data[data.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The Internet checksum of `data` (with an optional pre-summed pseudo-header). */
export function inetChecksum(data: Uint8Array, initial = 0): number {
  return ~onesSum(data, initial) & 0xffff;
}

/** Sum of the pseudo-header used by TCP, UDP and ICMPv6 (IPv4: RFC 793; IPv6: RFC 8200 8.1). */
export function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, proto: number, length: number): number {
  if (src.length === 4) {
    const ph = Buffer.alloc(12);
    ph.set(src, 0);
    ph.set(dst, 4);
    ph[9] = proto;
    ph.writeUInt16BE(length, 10);
    return onesSum(ph);
  }
  const ph = Buffer.alloc(40);
  ph.set(src, 0);
  ph.set(dst, 16);
  ph.writeUInt32BE(length, 32);
  ph[39] = proto;
  return onesSum(ph);
}

const crc32cTable = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC32c (Castagnoli), as SCTP uses it (RFC 9260 appendix A). */
export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of data) crc = (crc32cTable[(crc ^ b) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
