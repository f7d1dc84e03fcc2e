// Parsing frames back into fields (tests check what the datapath let through, and the builder).
// Lenient: it reports what is there and flags what is broken instead of throwing.
import { WeirError } from '../../shared/errors.js';
import { ipText, macText } from './addr.js';
import { crc32c, inetChecksum, pseudoHeaderSum } from './checksum.js';
import { ETH_HLEN, ETH_P } from './ethernet.js';
import { EXT } from './ip.js';
import { IPPROTO } from './l4.js';

export interface ParsedIp {
  family: 4 | 6;
  src: string;
  dst: string;
  /** L4 protocol (IPv6: after the extension headers). */
  proto: number;
  ttl: number;
  /** IPv4: identification; IPv6: the Fragment header's. */
  id: number;
  more: boolean;
  fragOffset: number;
  /** IPv4 header checksum is right (always true for IPv6, which has none). */
  checksumOk: boolean;
  headerLength: number;
  /** IPv6 extension header types, in order. */
  ext: number[];
}

export interface ParsedL4 {
  proto: number;
  sport?: number;
  dport?: number;
  tcpFlags?: number;
  seq?: number;
  ack?: number;
  icmpType?: number;
  icmpCode?: number;
  echoId?: number;
  /** Checksum verified (undefined: not checkable, e.g. a fragment). */
  checksumOk?: boolean;
  payload: Buffer;
}

export interface ParsedFrame {
  dst: string;
  src: string;
  type: number;
  ip?: ParsedIp;
  l4?: ParsedL4;
}

export function parseFrame(frame: Buffer): ParsedFrame {
  if (frame.length < ETH_HLEN) throw new WeirError('ERR_PACKET_TRUNCATED', `${frame.length}-byte frame`);
  const out: ParsedFrame = {
    dst: macText(frame.subarray(0, 6)),
    src: macText(frame.subarray(6, 12)),
    type: frame.readUInt16BE(12),
  };
  const l3 = frame.subarray(ETH_HLEN);
  if (out.type === ETH_P.IP) Object.assign(out, parseIpv4(l3));
  else if (out.type === ETH_P.IPV6) Object.assign(out, parseIpv6(l3));
  return out;
}

export function parseIpv4(pkt: Buffer): { ip: ParsedIp; l4: ParsedL4 } {
  const ihl = ((pkt[0] ?? 0) & 0x0f) * 4;
  const total = pkt.readUInt16BE(2);
  const frag = pkt.readUInt16BE(6);
  const ip: ParsedIp = {
    family: 4,
    src: ipText(pkt.subarray(12, 16)),
    dst: ipText(pkt.subarray(16, 20)),
    proto: pkt[9] ?? 0,
    ttl: pkt[8] ?? 0,
    id: pkt.readUInt16BE(4),
    more: (frag & 0x2000) !== 0,
    fragOffset: (frag & 0x1fff) * 8,
    checksumOk: inetChecksum(pkt.subarray(0, ihl)) === 0,
    headerLength: ihl,
    ext: [],
  };
  const body = pkt.subarray(ihl, total);
  const whole = !ip.more && ip.fragOffset === 0;
  return {
    ip,
    l4: parseL4(ip.proto, body, pkt.subarray(12, 16), pkt.subarray(16, 20), whole, ip.fragOffset === 0),
  };
}

export function parseIpv6(pkt: Buffer): { ip: ParsedIp; l4: ParsedL4 } {
  const end = 40 + pkt.readUInt16BE(4);
  const ip: ParsedIp = {
    family: 6,
    src: ipText(pkt.subarray(8, 24)),
    dst: ipText(pkt.subarray(24, 40)),
    proto: pkt[6] ?? 0,
    ttl: pkt[7] ?? 0,
    id: 0,
    more: false,
    fragOffset: 0,
    checksumOk: true,
    headerLength: 40,
    ext: [],
  };
  let off = 40;
  const extTypes: number[] = [EXT.HOPOPTS, EXT.ROUTING, EXT.DSTOPTS, EXT.FRAGMENT, EXT.AH];
  while (extTypes.includes(ip.proto) && off + 8 <= end) {
    ip.ext.push(ip.proto);
    const next = pkt[off] ?? 0;
    if (ip.proto === EXT.FRAGMENT) {
      const fo = pkt.readUInt16BE(off + 2);
      ip.fragOffset = fo & 0xfff8;
      ip.more = (fo & 1) !== 0;
      ip.id = pkt.readUInt32BE(off + 4);
      off += 8;
    } else if (ip.proto === EXT.AH) off += ((pkt[off + 1] ?? 0) + 2) * 4;
    else off += ((pkt[off + 1] ?? 0) + 1) * 8;
    ip.proto = next;
  }
  ip.headerLength = off;
  const whole = !ip.more && ip.fragOffset === 0;
  return {
    ip,
    l4: parseL4(
      ip.proto,
      pkt.subarray(off, end),
      pkt.subarray(8, 24),
      pkt.subarray(24, 40),
      whole,
      ip.fragOffset === 0,
    ),
  };
}

function parseL4(
  proto: number,
  body: Buffer,
  src: Buffer,
  dst: Buffer,
  whole: boolean,
  hasHeader: boolean,
): ParsedL4 {
  const l4: ParsedL4 = { proto, payload: body };
  if (!hasHeader) return l4;
  const pseudo = () => pseudoHeaderSum(src, dst, proto, body.length);
  if ((proto === IPPROTO.TCP && body.length >= 20) || (proto === IPPROTO.UDP && body.length >= 8)) {
    l4.sport = body.readUInt16BE(0);
    l4.dport = body.readUInt16BE(2);
    if (whole) {
      // UDP over IPv4 may leave the checksum out (0).
      const none = proto === IPPROTO.UDP && src.length === 4 && body.readUInt16BE(6) === 0;
      l4.checksumOk = none || inetChecksum(body, pseudo()) === 0;
    }
    if (proto === IPPROTO.TCP) {
      l4.seq = body.readUInt32BE(4);
      l4.ack = body.readUInt32BE(8);
      l4.tcpFlags = body[13] ?? 0;
      l4.payload = body.subarray(((body[12] ?? 0) >> 4) * 4);
    } else l4.payload = body.subarray(8);
  } else if (proto === IPPROTO.SCTP && body.length >= 12) {
    l4.sport = body.readUInt16BE(0);
    l4.dport = body.readUInt16BE(2);
    if (whole) {
      const copy = Buffer.from(body);
      copy.writeUInt32LE(0, 8);
      l4.checksumOk = crc32c(copy) === body.readUInt32LE(8);
    }
    l4.payload = body.subarray(12);
  } else if ((proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6) && body.length >= 8) {
    l4.icmpType = body[0] ?? 0;
    l4.icmpCode = body[1] ?? 0;
    const echo = proto === IPPROTO.ICMP ? [0, 8] : [128, 129];
    if (echo.includes(l4.icmpType)) l4.echoId = body.readUInt16BE(4);
    if (whole) l4.checksumOk = inetChecksum(body, proto === IPPROTO.ICMPV6 ? pseudo() : 0) === 0;
    l4.payload = body.subarray(8);
  }
  return l4;
}
