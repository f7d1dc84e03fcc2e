// DNS wire helpers shared by the lab's DNS server and the DNS proxy: decoding that never throws
// past its caller, TCP framing (RFC 1035 4.2.2: a two-byte length before every message), and the
// UDP size rules (512 bytes, or the client's EDNS0 payload size; larger answers are truncated
// with TC set so the client retries over TCP, RFC 7766).
//
// dns-packet (npm) is the codec: a small, dependency-free encoder/decoder of the whole message
// (names with compression, EDNS0 OPT, every common record type) that rejects compression
// pointers that do not point backwards (no loops) and messages that end early.
import dnsPacket, { type Packet, type Question } from 'dns-packet';

export const maxUdpPayload = 512;
/** The largest EDNS0 payload size honoured for UDP answers (the DNS Flag Day 2020 value). */
export const maxEdnsPayload = 1232;
/** TCP messages are bounded by their two-byte length; the proxy also caps what it reads. */
export const maxTcpMessage = 65535;

/** Response codes (RFC 1035 4.1.1, RFC 2136): dns-packet decodes them but encodes only flags. */
export const rcodes = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = keyof typeof rcodes;

/** `flags` with its low four bits (the rcode) set to `rcode`. */
export function withRcode(flags: number | undefined, rcode: Rcode): number {
  return ((flags ?? 0) & ~0xf) | rcodes[rcode];
}

/** The rcode of a decoded message, by name. */
export function rcodeOf(p: Packet): string {
  return (p as Packet & { rcode?: string }).rcode ?? 'NOERROR';
}

export type DecodeResult = { ok: true; packet: Packet } | { ok: false; id?: number; reason: string };

/** Decodes one message; a malformed one gives its id (when at least the header is there). */
export function decodeMessage(buf: Buffer): DecodeResult {
  try {
    if (buf.length < 12) return { ok: false, reason: 'shorter than a header' };
    const packet = dnsPacket.decode(buf);
    return { ok: true, packet };
  } catch (err) {
    return {
      ok: false,
      ...(buf.length >= 2 ? { id: buf.readUInt16BE(0) } : {}),
      reason: (err as Error).message,
    };
  }
}

export function encodeMessage(p: Packet): Buffer {
  return dnsPacket.encode(p);
}

/** The UDP payload size the client accepts (its EDNS0 OPT record, else 512). */
export function udpLimit(query: Packet | undefined): number {
  const opt = query?.additionals?.find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
  const size = opt?.udpPayloadSize ?? maxUdpPayload;
  return Math.max(maxUdpPayload, Math.min(size, maxEdnsPayload));
}

/** A header-only answer to `id` with `rcode` (FORMERR for what cannot be read, REFUSED, ...). */
export function errorReply(id: number, rcode: Rcode, question?: Question[], flags = 0): Buffer {
  return dnsPacket.encode({
    id,
    type: 'response',
    flags: withRcode(flags, rcode),
    questions: question ?? [],
  });
}

/** The message as it goes over UDP: whole, or with TC and no records when it is too large. */
export function fitUdp(p: Packet, limit: number): { buf: Buffer; truncated: boolean } {
  const buf = dnsPacket.encode(p);
  if (buf.length <= limit) return { buf, truncated: false };
  const t = dnsPacket.encode({
    ...p,
    flags: (p.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE,
    answers: [],
    authorities: [],
    additionals: (p.additionals ?? []).filter((a) => a.type === 'OPT'),
  } as Packet);
  return { buf: t, truncated: true };
}

/**
 * Reassembles TCP-framed DNS messages from a byte stream. `push` returns the complete messages
 * so far; a length above `max` is an error (the caller closes the connection).
 */
export class TcpFramer {
  private buf = Buffer.alloc(0);
  constructor(private readonly max = maxTcpMessage) {}

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    const out: Buffer[] = [];
    while (this.buf.length >= 2) {
      const len = this.buf.readUInt16BE(0);
      if (len > this.max || len === 0) throw new Error(`TCP DNS message of ${len} bytes`);
      if (this.buf.length < 2 + len) break;
      out.push(Buffer.from(this.buf.subarray(2, 2 + len)));
      this.buf = this.buf.subarray(2 + len);
    }
    return out;
  }

  /** Bytes held waiting for the rest of a message. */
  get pending(): number {
    return this.buf.length;
  }
}

export function frameTcp(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/** Question names as sent (case kept), types, for flows and logs. */
export function questionsOf(p: Packet): { name: string; type: string }[] {
  return (p.questions ?? []).map((q) => ({ name: q.name, type: String(q.type) }));
}
