// L4 headers: TCP, UDP, SCTP, ICMP, ICMPv6 (echo, errors quoting a packet, neighbour discovery).
// An L4 value is encoded by the IP builder, which supplies the pseudo-header sum its checksum
// needs; `badChecksum` and the header-field overrides make malformed variants on purpose.
import { crc32c, inetChecksum, pseudoHeaderSum } from './checksum.js';
import { ipBytes, macBytes } from './addr.js';

export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;

/** Where the L4 bytes travel: the IP builder passes this to encode(). */
export interface L4Context {
  src: Buffer;
  dst: Buffer;
}

export interface L4 {
  readonly proto: number;
  encode(ctx: L4Context): Buffer;
}

const TCP_FLAG_BITS: Record<string, number> = {
  F: 0x01,
  S: 0x02,
  R: 0x04,
  P: 0x08,
  A: 0x10,
  U: 0x20,
  E: 0x40,
  C: 0x80,
};

/** TCP flags from letters ('S', 'SA', 'FA', 'R', 'PA') or a number. */
export function tcpFlags(flags: string | number): number {
  if (typeof flags === 'number') return flags;
  let bits = 0;
  for (const ch of flags.toUpperCase()) {
    const bit = TCP_FLAG_BITS[ch];
    if (bit === undefined) throw new Error(`unknown TCP flag '${ch}' in '${flags}'`);
    bits |= bit;
  }
  return bits;
}

export interface TcpOptions {
  sport: number;
  dport: number;
  /** Letters S, A, F, R, P, U, E, C or the flag byte. Default 'S'. */
  flags?: string | number;
  seq?: number;
  ack?: number;
  window?: number;
  /** Raw TCP options, padded to 4 bytes by the builder. */
  options?: Buffer;
  payload?: Buffer;
  /** Data offset in 32-bit words as written (malformed packets); default from the options. */
  doff?: number;
  badChecksum?: boolean;
}

export function tcp(o: TcpOptions): L4 {
  return {
    proto: IPPROTO.TCP,
    encode(ctx) {
      const opts = padTo4(o.options ?? Buffer.alloc(0));
      const payload = o.payload ?? Buffer.alloc(0);
      const hdr = Buffer.alloc(20 + opts.length);
      hdr.writeUInt16BE(o.sport, 0);
      hdr.writeUInt16BE(o.dport, 2);
      hdr.writeUInt32BE((o.seq ?? 1000) >>> 0, 4);
      hdr.writeUInt32BE((o.ack ?? 0) >>> 0, 8);
      hdr[12] = (o.doff ?? hdr.length / 4) << 4;
      hdr[13] = tcpFlags(o.flags ?? 'S');
      hdr.writeUInt16BE(o.window ?? 65535, 14);
      opts.copy(hdr, 20);
      const seg = Buffer.concat([hdr, payload]);
      setChecksum(seg, 16, ctx, IPPROTO.TCP, o.badChecksum);
      return seg;
    },
  };
}

export interface UdpOptions {
  sport: number;
  dport: number;
  payload?: Buffer;
  /** Length field as written (malformed packets); default header + payload. */
  length?: number;
  badChecksum?: boolean;
}

export function udp(o: UdpOptions): L4 {
  return {
    proto: IPPROTO.UDP,
    encode(ctx) {
      const payload = o.payload ?? Buffer.alloc(0);
      const dgram = Buffer.alloc(8 + payload.length);
      dgram.writeUInt16BE(o.sport, 0);
      dgram.writeUInt16BE(o.dport, 2);
      dgram.writeUInt16BE(o.length ?? dgram.length, 4);
      payload.copy(dgram, 8);
      setChecksum(dgram, 6, ctx, IPPROTO.UDP, o.badChecksum);
      // 0 means "no checksum" in UDP over IPv4; a computed 0 is sent as 0xffff (RFC 768).
      if (!o.badChecksum && dgram.readUInt16BE(6) === 0) dgram.writeUInt16BE(0xffff, 6);
      return dgram;
    },
  };
}

export interface SctpOptions {
  sport: number;
  dport: number;
  verificationTag?: number;
  /** Chunks, raw; default one INIT-like DATA-less chunk is not added: empty. */
  chunks?: Buffer;
}

/** The SCTP common header (12 bytes) and raw chunks; CRC32c checksum. */
export function sctp(o: SctpOptions): L4 {
  return {
    proto: IPPROTO.SCTP,
    encode() {
      const chunks = o.chunks ?? Buffer.alloc(0);
      const pkt = Buffer.alloc(12 + chunks.length);
      pkt.writeUInt16BE(o.sport, 0);
      pkt.writeUInt16BE(o.dport, 2);
      pkt.writeUInt32BE((o.verificationTag ?? 0) >>> 0, 4);
      chunks.copy(pkt, 12);
      pkt.writeUInt32LE(crc32c(pkt), 8);
      return pkt;
    },
  };
}

export const ICMP4 = {
  ECHO_REPLY: 0,
  DEST_UNREACH: 3,
  ECHO_REQUEST: 8,
  TIME_EXCEEDED: 11,
  PARAM_PROBLEM: 12,
} as const;
export const ICMP6 = {
  DEST_UNREACH: 1,
  PKT_TOOBIG: 2,
  TIME_EXCEEDED: 3,
  PARAM_PROBLEM: 4,
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
  ROUTER_SOLICIT: 133,
  ROUTER_ADVERT: 134,
  NEIGH_SOLICIT: 135,
  NEIGH_ADVERT: 136,
  REDIRECT: 137,
} as const;

export interface IcmpOptions {
  type: number;
  code?: number;
  /** The 4 bytes after the checksum (echo: id and sequence; too-big: MTU; unreachable: unused). */
  rest?: Buffer;
  payload?: Buffer;
  badChecksum?: boolean;
}

/** ICMP for IPv4 (checksum over the message only). */
export function icmp4(o: IcmpOptions): L4 {
  return { proto: IPPROTO.ICMP, encode: (ctx) => encodeIcmp(o, ctx, false) };
}

/** ICMPv6 (checksum includes the IPv6 pseudo-header). */
export function icmp6(o: IcmpOptions): L4 {
  return { proto: IPPROTO.ICMPV6, encode: (ctx) => encodeIcmp(o, ctx, true) };
}

function encodeIcmp(o: IcmpOptions, ctx: L4Context, v6: boolean): Buffer {
  const rest = o.rest ?? Buffer.alloc(4);
  const payload = o.payload ?? Buffer.alloc(0);
  const msg = Buffer.concat([Buffer.from([o.type, o.code ?? 0, 0, 0]), rest, payload]);
  const initial = v6 ? pseudoHeaderSum(ctx.src, ctx.dst, IPPROTO.ICMPV6, msg.length) : 0;
  msg.writeUInt16BE(o.badChecksum ? 0xdead : inetChecksum(msg, initial), 2);
  return msg;
}

function idSeq(id: number, seq: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(seq, 2);
  return b;
}

export interface EchoOptions {
  id: number;
  seq?: number;
  reply?: boolean;
  payload?: Buffer;
}

export function icmp4Echo(o: EchoOptions): L4 {
  return icmp4({
    type: o.reply ? ICMP4.ECHO_REPLY : ICMP4.ECHO_REQUEST,
    rest: idSeq(o.id, o.seq ?? 1),
    payload: o.payload ?? Buffer.from('weir-ping'),
  });
}

export function icmp6Echo(o: EchoOptions): L4 {
  return icmp6({
    type: o.reply ? ICMP6.ECHO_REPLY : ICMP6.ECHO_REQUEST,
    rest: idSeq(o.id, o.seq ?? 1),
    payload: o.payload ?? Buffer.from('weir-ping'),
  });
}

export interface IcmpErrorOptions {
  /** ICMP4.DEST_UNREACH / TIME_EXCEEDED / PARAM_PROBLEM (or ICMP6.* for icmp6Error). */
  type: number;
  code?: number;
  /** The offending IP packet (from ipv4()/ipv6()); quoted up to `quoteBytes`. */
  quoted: Buffer;
  /** Default: IPv4 header + 8 bytes (RFC 792); IPv6: as much as fits 1280 bytes (RFC 4443). */
  quoteBytes?: number;
  /** Packet too big: the MTU. */
  mtu?: number;
}

export function icmp4Error(o: IcmpErrorOptions): L4 {
  const ihl = ((o.quoted[0] ?? 0x45) & 0x0f) * 4;
  return icmp4({ type: o.type, code: o.code ?? 0, payload: o.quoted.subarray(0, o.quoteBytes ?? ihl + 8) });
}

export function icmp6Error(o: IcmpErrorOptions): L4 {
  const rest = Buffer.alloc(4);
  if (o.mtu !== undefined) rest.writeUInt32BE(o.mtu, 0);
  return icmp6({
    type: o.type,
    code: o.code ?? 0,
    rest,
    payload: o.quoted.subarray(0, o.quoteBytes ?? 1232),
  });
}

/** Neighbour solicitation for `target` (with the source link-layer address option). */
export function ndpNeighborSolicit(target: string, srcMac = '02:00:00:00:00:01'): L4 {
  const body = Buffer.concat([ipBytes(target), Buffer.from([1, 1]), macBytes(srcMac)]);
  return icmp6({ type: ICMP6.NEIGH_SOLICIT, payload: body });
}

/** Solicited neighbour advertisement for `target` (with the target link-layer address option). */
export function ndpNeighborAdvert(target: string, targetMac = '02:00:00:00:00:02'): L4 {
  const flags = Buffer.from([0x60, 0, 0, 0]); // solicited + override
  const body = Buffer.concat([ipBytes(target), Buffer.from([2, 1]), macBytes(targetMac)]);
  return icmp6({ type: ICMP6.NEIGH_ADVERT, rest: flags, payload: body });
}

/** Any protocol number with raw bytes (unknown L4, or L4 bytes built by hand). */
export function rawL4(proto: number, bytes: Buffer): L4 {
  return { proto, encode: () => Buffer.from(bytes) };
}

function setChecksum(seg: Buffer, at: number, ctx: L4Context, proto: number, bad?: boolean): void {
  seg.writeUInt16BE(0, at);
  const sum = inetChecksum(seg, pseudoHeaderSum(ctx.src, ctx.dst, proto, seg.length));
  seg.writeUInt16BE(bad ? sum ^ 0xffff || 1 : sum, at);
}

function padTo4(b: Buffer): Buffer {
  const pad = (4 - (b.length % 4)) % 4;
  return pad ? Buffer.concat([b, Buffer.alloc(pad, 1)]) : b; // pad with NOP (1)
}
