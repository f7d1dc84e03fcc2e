// The lab's cluster DNS server (the workload of pod kube-system/coredns): authoritative for the
// zone the agent computes (zone.ts), over UDP and TCP on one port. Unknown names are NXDOMAIN, a
// known name without records of the asked type is NOERROR with no answers; names are matched
// case-insensitively and the question is echoed as sent. Nothing is forwarded anywhere.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import dnsPacket, { type Answer, type Packet } from 'dns-packet';
import { canonicalName, type Zone, type ZoneEntry } from './zone.js';
import { TcpFramer, decodeMessage, errorReply, fitUdp, frameTcp, udpLimit, withRcode } from './wire.js';

const emptyZone: Zone = { domain: 'cluster.local', ttl: 30, origins: [], names: {} };

/** The answer to one query (pure): undefined when nothing can be said (no header). */
export function respond(zone: Zone, query: Buffer): { packet: Packet } | { raw: Buffer } | undefined {
  const d = decodeMessage(query);
  if (!d.ok) return d.id === undefined ? undefined : { raw: errorReply(d.id, 'FORMERR') };
  const q = d.packet;
  if (q.type !== 'query') return undefined;
  const question = q.questions?.[0];
  const flags = dnsPacket.AUTHORITATIVE_ANSWER | ((q.flags ?? 0) & dnsPacket.RECURSION_DESIRED);
  const base = { id: q.id ?? 0, type: 'response' as const, questions: q.questions ?? [] };
  if (!question || (q.questions?.length ?? 0) !== 1)
    return { packet: { ...base, flags: withRcode(flags, 'FORMERR') } };
  const name = canonicalName(question.name);
  const entry = zone.names[name];
  if (!entry) {
    // An empty non-terminal (a name above existing ones) exists: NOERROR without records.
    const suffix = `.${name}`;
    const exists = Object.keys(zone.names).some((n) => n.endsWith(suffix));
    return { packet: { ...base, flags: withRcode(flags, exists ? 'NOERROR' : 'NXDOMAIN') } };
  }
  const answers = answersOf(zone, question.name, entry, String(question.type));
  const additionals: Answer[] = [];
  for (const a of answers)
    if (a.type === 'SRV') {
      const t = zone.names[canonicalName(a.data.target)];
      if (t)
        additionals.push(
          ...recordsOf(zone, a.data.target, t, 'A'),
          ...recordsOf(zone, a.data.target, t, 'AAAA'),
        );
    }
  return { packet: { ...base, flags, answers, additionals } };
}

/** Longest CNAME chain followed in one answer (a loop ends there too). */
const MAX_CHAIN = 8;

/**
 * The records of a name; an alias answers its CNAME and then the records of the target, followed
 * through the chain inside the zone (a target outside it: the CNAME alone, the client resolves on).
 */
function answersOf(zone: Zone, asked: string, e: ZoneEntry, type: string): Answer[] {
  const out: Answer[] = [];
  let name = asked;
  let entry: ZoneEntry | undefined = e;
  for (let hop = 0; entry?.cname !== undefined && hop < MAX_CHAIN; hop++) {
    out.push({ name, type: 'CNAME', ttl: entry.ttl ?? zone.ttl, data: entry.cname });
    if (type === 'CNAME') return out;
    name = entry.cname;
    entry = zone.names[name];
  }
  if (entry && entry.cname === undefined) out.push(...recordsOf(zone, name, entry, type));
  return out;
}

function recordsOf(zone: Zone, asked: string, e: ZoneEntry, type: string): Answer[] {
  const ttl = e.ttl ?? zone.ttl;
  const any = type === 'ANY';
  const out: Answer[] = [];
  if (type === 'A' || any) for (const ip of e.a) out.push({ name: asked, type: 'A', ttl, data: ip });
  if (type === 'AAAA' || any) for (const ip of e.aaaa) out.push({ name: asked, type: 'AAAA', ttl, data: ip });
  if (type === 'SRV' || any)
    for (const s of e.srv)
      out.push({
        name: asked,
        type: 'SRV',
        ttl,
        data: { priority: s.priority, weight: s.weight, port: s.port, target: s.target },
      });
  return out;
}

export interface DnsServerStats {
  queries: number;
  malformed: number;
  truncated: number;
}

/** UDP and TCP on `port` of `host`, answering from the zone it holds (replaced with setZone). */
export class DnsServer {
  private zone: Zone = emptyZone;
  private udp?: UdpSocket;
  private tcp?: Server;
  readonly stats: DnsServerStats = { queries: 0, malformed: 0, truncated: 0 };

  setZone(zone: Zone): void {
    this.zone = zone;
  }

  async listen(port: number, host = '0.0.0.0'): Promise<void> {
    const udp = createSocket({ type: 'udp4' });
    udp.on('message', (msg, rinfo) => {
      const buf = this.datagram(msg);
      if (buf) udp.send(buf, rinfo.port, rinfo.address);
    });
    udp.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, host, () => resolve());
    });
    this.udp = udp;
    const tcp = createServer((sock) => this.serveTcp(sock));
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, host, () => resolve());
    });
    this.tcp = tcp;
  }

  /**
   * The reply datagram to a query datagram (truncated with TC to what the query allows), or
   * undefined when nothing can be said. For sockets this class does not own (the lab's pod host).
   */
  datagram(msg: Buffer): Buffer | undefined {
    const r = this.answer(msg);
    if (!r) return undefined;
    if (!r.packet) return r.raw;
    const fit = fitUdp(r.packet, udpLimit(r.query));
    if (fit.truncated) this.stats.truncated++;
    return fit.buf;
  }

  private answer(msg: Buffer): { packet?: Packet; raw?: Buffer; query?: Packet } | undefined {
    this.stats.queries++;
    const r = respond(this.zone, msg);
    if (!r) {
      this.stats.malformed++;
      return undefined;
    }
    if ('raw' in r) {
      this.stats.malformed++;
      return { raw: r.raw };
    }
    const d = decodeMessage(msg);
    return { packet: r.packet, ...(d.ok ? { query: d.packet } : {}) };
  }

  /** Serves one TCP connection (length-prefixed messages). */
  serveTcp(sock: Socket): void {
    const framer = new TcpFramer();
    sock.setTimeout(10_000, () => sock.destroy());
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: Buffer) => {
      let msgs: Buffer[];
      try {
        msgs = framer.push(chunk);
      } catch {
        this.stats.malformed++;
        return void sock.destroy();
      }
      for (const m of msgs) {
        const r = this.answer(m);
        if (!r) continue;
        sock.write(frameTcp(r.raw ?? dnsPacket.encode(r.packet as Packet)));
      }
    });
  }

  close(): void {
    this.udp?.close();
    this.tcp?.close();
    this.#watcher?.close();
    clearTimeout(this.#reload);
  }

  #watcher?: FSWatcher;
  #reload?: NodeJS.Timeout;

  /** Serves the zone of `file` (the agent replaces it after every regeneration), reloaded on change. */
  followZoneFile(file: string, log: (msg: string) => void): void {
    const load = () => {
      try {
        this.setZone(JSON.parse(readFileSync(file, 'utf8')) as Zone);
      } catch (err) {
        log(`zone ${file} not loaded: ${(err as Error).message}`);
      }
    };
    load();
    this.#watcher = watch(dirname(file), () => {
      clearTimeout(this.#reload);
      this.#reload = setTimeout(load, 20);
    });
  }
}
