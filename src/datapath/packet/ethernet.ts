// Ethernet II frames, ARP, and helpers to damage a frame (truncate).
import { ipBytes, macBytes } from './addr.js';

export const ETH_P = { IP: 0x0800, ARP: 0x0806, VLAN: 0x8100, IPV6: 0x86dd } as const;
export const ETH_HLEN = 14;

export interface EthernetOptions {
  payload: Buffer;
  src?: string;
  dst?: string;
  /** Ethertype; default from the payload's IP version nibble. */
  type?: number;
}

export function ethernet(o: EthernetOptions): Buffer {
  const hdr = Buffer.alloc(ETH_HLEN);
  macBytes(o.dst ?? '02:00:00:00:00:02').copy(hdr, 0);
  macBytes(o.src ?? '02:00:00:00:00:01').copy(hdr, 6);
  const version = (o.payload[0] ?? 0) >> 4;
  hdr.writeUInt16BE(o.type ?? (version === 6 ? ETH_P.IPV6 : ETH_P.IP), 12);
  return Buffer.concat([hdr, o.payload]);
}

export interface ArpOptions {
  op?: 'request' | 'reply';
  senderMac?: string;
  senderIp: string;
  targetMac?: string;
  targetIp: string;
}

/** An ARP packet (Ethernet/IPv4), without the Ethernet header: frame it with type ETH_P.ARP. */
export function arp(o: ArpOptions): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0); // Ethernet
  b.writeUInt16BE(ETH_P.IP, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(o.op === 'reply' ? 2 : 1, 6);
  macBytes(o.senderMac ?? '02:00:00:00:00:01').copy(b, 8);
  ipBytes(o.senderIp).copy(b, 14);
  macBytes(o.targetMac ?? '00:00:00:00:00:00').copy(b, 18);
  ipBytes(o.targetIp).copy(b, 24);
  return b;
}

/** The first `length` bytes of a frame (a truncated packet). */
export function truncate(frame: Buffer, length: number): Buffer {
  return Buffer.from(frame.subarray(0, length));
}
