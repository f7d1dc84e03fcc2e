// IPv4 and IPv6 packets (with options / extension headers) and fragmentation of either.
// Builders return the IP packet (no L2); ethernet() frames it. Overrides of length fields make
// malformed packets on purpose.
import { WeirError } from '../../shared/errors.js';
import { ipBytes } from './addr.js';
import { inetChecksum } from './checksum.js';
import type { L4 } from './l4.js';

export const EXT = { HOPOPTS: 0, ROUTING: 43, FRAGMENT: 44, AH: 51, DSTOPTS: 60, NONE: 59 } as const;

export interface Ipv4Options {
  src: string;
  dst: string;
  payload: L4 | Buffer;
  /** Protocol number; default the L4's (required with a raw Buffer payload). */
  protocol?: number;
  ttl?: number;
  id?: number;
  tos?: number;
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in bytes (a multiple of 8). */
  fragOffset?: number;
  /** Raw IPv4 options, padded to 4 bytes with End-of-options. */
  options?: Buffer;
  /** Header length in 32-bit words as written (malformed packets). */
  ihl?: number;
  /** Total length as written (malformed packets). */
  totalLength?: number;
  badChecksum?: boolean;
}

export function ipv4(o: Ipv4Options): Buffer {
  const src = ipBytes(o.src);
  const dst = ipBytes(o.dst);
  if (src.length !== 4 || dst.length !== 4) throw addrError('ipv4', o.src, o.dst);
  const opts = o.options
    ? Buffer.concat([o.options, Buffer.alloc((4 - (o.options.length % 4)) % 4)])
    : Buffer.alloc(0);
  const { proto, body } = l4Bytes(o.payload, o.protocol, src, dst);
  const hdr = Buffer.alloc(20 + opts.length);
  hdr[0] = 0x40 | (o.ihl ?? hdr.length / 4);
  hdr[1] = o.tos ?? 0;
  hdr.writeUInt16BE(o.totalLength ?? hdr.length + body.length, 2);
  hdr.writeUInt16BE(o.id ?? 0x1234, 4);
  if ((o.fragOffset ?? 0) % 8 !== 0)
    throw new WeirError('ERR_PACKET_FRAGMENT', 'fragment offset must be a multiple of 8');
  hdr.writeUInt16BE((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOffset ?? 0) / 8), 6);
  hdr[8] = o.ttl ?? 64;
  hdr[9] = proto;
  src.copy(hdr, 12);
  dst.copy(hdr, 16);
  opts.copy(hdr, 20);
  hdr.writeUInt16BE(o.badChecksum ? 0xbeef : inetChecksum(hdr), 10);
  return Buffer.concat([hdr, body]);
}

export type Ipv6Ext =
  | { type: 'hop' | 'dest'; options?: Buffer }
  | { type: 'routing'; routingType?: number; segmentsLeft?: number; data?: Buffer }
  | { type: 'fragment'; offset?: number; more?: boolean; id?: number }
  | { type: 'raw'; nextHeaderSlot: number; bytes: Buffer };

export interface Ipv6Options {
  src: string;
  dst: string;
  payload: L4 | Buffer;
  /** Next header of the last extension header; default the L4's. */
  protocol?: number;
  ext?: Ipv6Ext[];
  hopLimit?: number;
  flowLabel?: number;
  trafficClass?: number;
  /** Payload length as written (malformed packets). */
  payloadLength?: number;
}

export function ipv6(o: Ipv6Options): Buffer {
  const src = ipBytes(o.src);
  const dst = ipBytes(o.dst);
  if (src.length !== 16 || dst.length !== 16) throw addrError('ipv6', o.src, o.dst);
  const { proto, body } = l4Bytes(o.payload, o.protocol, src, dst);
  const exts = o.ext ?? [];
  // Each header names the next one; the last names the L4.
  const extBufs = exts.map((e, i) => encodeExt(e, nextOf(exts[i + 1], proto)));
  const first = nextOf(exts[0], proto);
  const payload = Buffer.concat([...extBufs, body]);
  const hdr = Buffer.alloc(40);
  hdr.writeUInt32BE(((6 << 28) | ((o.trafficClass ?? 0) << 20) | (o.flowLabel ?? 0)) >>> 0, 0);
  hdr.writeUInt16BE(o.payloadLength ?? payload.length, 4);
  hdr[6] = first;
  hdr[7] = o.hopLimit ?? 64;
  src.copy(hdr, 8);
  dst.copy(hdr, 24);
  return Buffer.concat([hdr, payload]);
}

function nextOf(e: Ipv6Ext | undefined, proto: number): number {
  if (!e) return proto;
  switch (e.type) {
    case 'hop':
      return EXT.HOPOPTS;
    case 'dest':
      return EXT.DSTOPTS;
    case 'routing':
      return EXT.ROUTING;
    case 'fragment':
      return EXT.FRAGMENT;
    case 'raw':
      return e.nextHeaderSlot;
  }
}

function encodeExt(e: Ipv6Ext, next: number): Buffer {
  switch (e.type) {
    case 'hop':
    case 'dest': {
      // 2 bytes of header + options, padded with PadN to a multiple of 8.
      const opts = e.options ?? Buffer.alloc(0);
      const len = Math.ceil((2 + opts.length) / 8) * 8;
      const b = Buffer.alloc(len);
      b[0] = next;
      b[1] = len / 8 - 1;
      opts.copy(b, 2);
      const pad = len - 2 - opts.length;
      if (pad === 1)
        b[2 + opts.length] = 0; // Pad1
      else if (pad > 1) [b[2 + opts.length], b[3 + opts.length]] = [1, pad - 2]; // PadN
      return b;
    }
    case 'routing': {
      const data = e.data ?? Buffer.alloc(4);
      const len = Math.ceil((4 + data.length) / 8) * 8;
      const b = Buffer.alloc(len);
      b[0] = next;
      b[1] = len / 8 - 1;
      b[2] = e.routingType ?? 0;
      b[3] = e.segmentsLeft ?? 0;
      data.copy(b, 4);
      return b;
    }
    case 'fragment': {
      const b = Buffer.alloc(8);
      b[0] = next;
      if ((e.offset ?? 0) % 8 !== 0)
        throw new WeirError('ERR_PACKET_FRAGMENT', 'fragment offset must be a multiple of 8');
      b.writeUInt16BE((e.offset ?? 0) | (e.more ? 1 : 0), 2);
      b.writeUInt32BE((e.id ?? 0xcafe) >>> 0, 4);
      return b;
    }
    case 'raw': {
      const b = Buffer.from(e.bytes);
      b[0] = next;
      return b;
    }
  }
}

function l4Bytes(payload: L4 | Buffer, protocol: number | undefined, src: Buffer, dst: Buffer) {
  if (Buffer.isBuffer(payload)) {
    if (protocol === undefined) {
      throw new WeirError('ERR_PACKET_PROTOCOL', 'a raw payload needs an explicit protocol', {
        location: { field: 'protocol' },
      });
    }
    return { proto: protocol, body: payload };
  }
  return { proto: protocol ?? payload.proto, body: payload.encode({ src, dst }) };
}

function addrError(what: string, src: string, dst: string): WeirError {
  return new WeirError('ERR_PACKET_ADDRESS', `${what}: ${src} -> ${dst} is not an ${what} address pair`, {
    location: { field: 'src/dst' },
  });
}

/**
 * Split an IPv4 packet into fragments carrying at most `size` payload bytes each (a multiple of
 * 8). Later fragments keep only the options with the copied bit (RFC 791).
 */
export function fragment4(packet: Buffer, size: number): Buffer[] {
  if (size <= 0 || size % 8 !== 0)
    throw new WeirError('ERR_PACKET_FRAGMENT', `fragment size ${size} is not a positive multiple of 8`);
  const ihl = ((packet[0] ?? 0) & 0x0f) * 4;
  const header = packet.subarray(0, ihl);
  const body = packet.subarray(ihl, packet.readUInt16BE(2));
  const baseOffset = (packet.readUInt16BE(6) & 0x1fff) * 8;
  const keepsMf = (packet.readUInt16BE(6) & 0x2000) !== 0;
  const laterHeader = Buffer.concat([header.subarray(0, 20), copiedOptions(header.subarray(20))]);
  laterHeader[0] = 0x40 | (laterHeader.length / 4);
  const out: Buffer[] = [];
  for (let off = 0; off < body.length; off += size) {
    const chunk = body.subarray(off, Math.min(off + size, body.length));
    const hdr = Buffer.from(off === 0 ? header : laterHeader);
    const more = off + size < body.length || keepsMf;
    hdr.writeUInt16BE(hdr.length + chunk.length, 2);
    hdr.writeUInt16BE((packet.readUInt16BE(6) & 0x4000) | (more ? 0x2000 : 0) | ((baseOffset + off) / 8), 6);
    hdr.writeUInt16BE(0, 10);
    hdr.writeUInt16BE(inetChecksum(hdr), 10);
    out.push(Buffer.concat([hdr, chunk]));
  }
  return out;
}

function copiedOptions(opts: Buffer): Buffer {
  const kept: Buffer[] = [];
  for (let i = 0; i < opts.length;) {
    const type = opts[i] ?? 0;
    if (type === 0) break; // end of options
    if (type === 1) {
      i++;
      continue;
    }
    const len = Math.max(2, opts[i + 1] ?? 2);
    if (type & 0x80) kept.push(opts.subarray(i, i + len));
    i += len;
  }
  const all = Buffer.concat(kept);
  return Buffer.concat([all, Buffer.alloc((4 - (all.length % 4)) % 4)]);
}

/**
 * Split an IPv6 packet into fragments of at most `size` fragmentable bytes (a multiple of 8).
 * Hop-by-hop and routing headers at the front stay unfragmentable; a Fragment header follows them.
 */
export function fragment6(packet: Buffer, size: number, id = 0xcafe): Buffer[] {
  if (size <= 0 || size % 8 !== 0)
    throw new WeirError('ERR_PACKET_FRAGMENT', `fragment size ${size} is not a positive multiple of 8`);
  const end = 40 + packet.readUInt16BE(4);
  let off = 40;
  let nextSlot = 6; // where the "next header" value that must point at the Fragment header is
  let next = packet[6] ?? 0;
  while (next === EXT.HOPOPTS || next === EXT.ROUTING) {
    nextSlot = off;
    next = packet[off] ?? 0;
    off += ((packet[off + 1] ?? 0) + 1) * 8;
  }
  const unfrag = Buffer.from(packet.subarray(0, off));
  unfrag[nextSlot] = EXT.FRAGMENT;
  const body = packet.subarray(off, end);
  const out: Buffer[] = [];
  for (let pos = 0; pos < body.length; pos += size) {
    const chunk = body.subarray(pos, Math.min(pos + size, body.length));
    const fh = Buffer.alloc(8);
    fh[0] = next;
    fh.writeUInt16BE(pos | (pos + size < body.length ? 1 : 0), 2);
    fh.writeUInt32BE(id >>> 0, 4);
    const frag = Buffer.concat([unfrag, fh, chunk]);
    frag.writeUInt16BE(frag.length - 40, 4);
    out.push(frag);
  }
  return out;
}
