// The `dns` probe's message: one query (class IN, recursion desired) and the reading of its answer,
// shared by the pod workload host and the per-netns workload. TCP frames it with the two-byte
// length (RFC 1035 4.2.2).
import dnsPacket, { type Packet } from 'dns-packet';
import { rcodeOf } from '../../dns/wire.js';
import type { DnsProbeQuery, ProbeResult } from './protocol.js';

export function dnsQueryBytes(q: DnsProbeQuery, id: number, tcp: boolean): Buffer {
  const msg = dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: q.name, type: q.type as 'A', class: 'IN' }],
  });
  if (!tcp) return msg;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/**
 * The answer to query `id` in `buf` (UDP: one datagram; TCP: the bytes read so far), or undefined
 * when it is not (yet) there: another id, a query, or an incomplete TCP message.
 */
export function readDnsAnswer(buf: Buffer, id: number, tcp: boolean): Omit<ProbeResult, 'ms'> | undefined {
  let msg = buf;
  if (tcp) {
    if (buf.length < 2) return undefined;
    const len = buf.readUInt16BE(0);
    if (buf.length < 2 + len) return undefined;
    msg = buf.subarray(2, 2 + len);
  }
  if (msg.length < 12 || msg.readUInt16BE(0) !== id) return undefined;
  let p: Packet;
  try {
    p = dnsPacket.decode(msg);
  } catch {
    return { ok: false, error: 'EBADRESPONSE' };
  }
  if (p.type !== 'response') return undefined;
  const answers = (p.answers ?? [])
    .filter((a) => a.type === 'A' || a.type === 'AAAA')
    .map((a) => String((a as { data?: unknown }).data));
  return { ok: true, rcode: rcodeOf(p), answers };
}

/** A query id for one probe. */
export function dnsQueryId(): number {
  return Math.floor(Math.random() * 0xffff) + 1;
}
