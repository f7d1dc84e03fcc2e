// The node proxy's DNS proxy (Cilium's in-agent DNS proxy, here in the node proxy process): the
// datapath hands it the UDP datagrams and TCP connections of every port whose egress policy has
// `toPorts[].rules.dns` (bpf/lib/proxy.h); it judges each query's name with the port's DNS rules
// for the pod's peer (src/policy/l7/dns-match.ts), forwards allowed queries to the original
// destination (the DNS server the pod asked) and relays the answer from that address; a denied
// query is answered by the proxy itself, REFUSED (Cilium's --tofqdns-dns-reject-response-code:
// `refused`, or `nameError` = NXDOMAIN). Nothing that cannot be identified goes anywhere: a
// datagram of no known endpoint or port is dropped, a TCP connection reset (fail closed).
//
// Bad input never stops it: a message that cannot be decoded is answered FORMERR when its header
// is readable (else dropped), TCP messages are bounded by their length prefix and the connection
// by an idle timeout, and each endpoint has at most `maxInflight` queries upstream at once
// (more are dropped, as Cilium's --dnsproxy-concurrency-limit); every case is counted.
import type { TunnelRoute } from '../tunnel-route.js';
import { createSocket } from 'node:dgram';
import { Socket, connect, createServer, type Server } from 'node:net';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Packet } from 'dns-packet';
import { judgeDns } from '../../policy/l7/dns-match.js';
import {
  TcpFramer,
  decodeMessage,
  encodeMessage,
  errorReply,
  frameTcp,
  questionsOf,
  rcodeOf,
  withRcode,
  type Rcode,
} from '../../dns/wire.js';
import { WeirError } from '../../shared/errors.js';
import type { ProxyMetrics } from '../metrics.js';
import type { SnapshotStore } from '../snapshot.js';
import { closeFd, listener } from '../transparent.js';
import type { L7Record } from '../types.js';
import { closeReplySockets, closeUdp, sendFrom, udpListener, type Datagram, type Endpoint4 } from './udp.js';

export type RejectCode = 'refused' | 'nameError';

export interface DnsProxyOptions {
  snapshots: SnapshotStore;
  identityOf(ip: string): number;
  metrics: ProxyMetrics;
  log: Logger;
  onRecord(r: L7Record): void;
  /**
   * --encryption mtls: a TCP query to a DNS server pod of another node goes through the main
   * thread's mTLS tunnel with the node SVID (tunnel-route.ts connectNode), never plain; a map that
   * cannot be read fails the query (SERVFAIL). UDP stays plain, as all UDP.
   */
  tunnel?: Pick<TunnelRoute, 'needs' | 'connectNode'>;
  /** Upstream answer timeout (Cilium's proxy: 10 s; the pod's resolver retries sooner). */
  upstreamTimeoutMs?: number;
  /** Queries of one endpoint upstream at once. */
  maxInflight?: number;
  /**
   * Called with an allowed answer before it is released to the pod (toFQDNs: the addresses must
   * be in the datapath first). The answer waits for it.
   */
  beforeRelease?(q: AnswerContext): Promise<void>;
}

export interface AnswerContext {
  endpointId: number;
  name: string;
  answer: Packet;
}

type Outcome = { reply: Buffer } | { drop: string };
interface Pending {
  from: string;
  done(buf: Buffer): void;
}

const UPSTREAM_TIMEOUT_MS = 5000;
const MAX_INFLIGHT = 256;
const TCP_IDLE_MS = 10_000;
/** The largest DNS message the proxy takes over TCP (its two-byte length allows 65535). */
const MAX_TCP_MESSAGE = 65535;

function nowNs(): string {
  return (BigInt(Date.now()) * 1_000_000n).toString();
}

export class DnsProxy {
  rejectCode: RejectCode = 'refused';
  #port = 0;
  #udpFd = -1;
  #worker: Worker | undefined;
  #stop: Int32Array | undefined;
  #servers: Server[] = [];
  readonly #inflight = new Map<number, number>();
  readonly #sockets = new Set<Socket>();

  constructor(private readonly o: DnsProxyOptions) {}

  get port(): number {
    return this.#port;
  }

  /** Listens on `port` (TCP and UDP); a changed port replaces the listeners. */
  async listen(port: number): Promise<void> {
    if (port === this.#port) return;
    await this.close();
    const tcpFd = listener({ family: 4, port });
    let server: Server;
    try {
      server = createServer({ allowHalfOpen: false }, (s) => this.#acceptTcp(s));
      server.on('error', (err) => this.o.log.error({ err, port }, 'DNS listener error'));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ fd: tcpFd }, () => resolve());
      });
    } catch (err) {
      closeFd(tcpFd);
      throw new WeirError('ERR_PROXY_LISTEN', `cannot listen on ${port}/tcp: ${(err as Error).message}`);
    }
    const udpFd = udpListener(port);
    const stop = new SharedArrayBuffer(4);
    const worker = new Worker(new URL('./udp-worker.js', import.meta.url), {
      workerData: { fd: udpFd, stop },
    });
    worker.on('message', (m: Datagram | { error: number }) => {
      if ('error' in m) return this.o.log.error({ errno: m.error }, 'DNS UDP receive failed');
      const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      void this.#udp({ ...m, data });
    });
    worker.on('error', (err) => this.o.log.error({ err }, 'DNS UDP reader failed'));
    worker.unref();
    this.#servers = [server];
    this.#udpFd = udpFd;
    this.#worker = worker;
    this.#stop = new Int32Array(stop);
    this.#port = port;
    this.o.log.info({ port }, 'DNS proxy listening (UDP, TCP)');
  }

  async close(): Promise<void> {
    for (const s of this.#servers) s.close();
    this.#servers = [];
    for (const s of this.#sockets) s.destroy();
    if (this.#stop) Atomics.store(this.#stop, 0, 1);
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await new Promise<void>((resolve) => (w.once('exit', () => resolve()), setTimeout(resolve, 2000)));
    this.#upstream?.socket.close();
    this.#upstream = undefined;
    if (this.#udpFd >= 0) closeUdp(this.#udpFd);
    closeReplySockets();
    this.#udpFd = -1;
    this.#port = 0;
  }

  async #udp(d: Datagram): Promise<void> {
    const out = await this.#judge(d.src, d.dst, 'UDP', d.data);
    if ('drop' in out) return;
    try {
      sendFrom(d.dst, d.src, out.reply);
    } catch (err) {
      this.o.metrics.dns.inc({ outcome: 'reply_error' });
      this.o.log.warn({ err, src: d.src, dst: d.dst }, 'DNS reply not sent');
    }
  }

  #acceptTcp(sock: Socket): void {
    const src = { ip: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 };
    const dst = { ip: sock.localAddress ?? '', port: sock.localPort ?? 0 };
    this.#sockets.add(sock);
    sock.once('close', () => this.#sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    const framer = new TcpFramer(MAX_TCP_MESSAGE);
    sock.on('data', (chunk: Buffer) => {
      let msgs: Buffer[];
      try {
        msgs = framer.push(chunk);
      } catch {
        this.o.metrics.dns.inc({ outcome: 'malformed' });
        return void sock.resetAndDestroy();
      }
      for (const m of msgs)
        void this.#judge(src, dst, 'TCP', m).then((out) => {
          if ('drop' in out) return void sock.resetAndDestroy();
          if (!sock.destroyed) sock.write(frameTcp(out.reply));
        });
    });
  }

  /** The verdict on one query and what goes back to the pod. */
  async #judge(src: Endpoint4, dst: Endpoint4, protocol: 'UDP' | 'TCP', msg: Buffer): Promise<Outcome> {
    const m = this.o.metrics;
    m.dns.inc({ outcome: 'received' });
    const ep = this.o.snapshots.endpointByIp(src.ip);
    const policy = ep && this.o.snapshots.portPolicy(ep.endpointId, 'egress', dst.port, protocol);
    if (!ep || !policy) {
      m.dns.inc({ outcome: 'unresolved' });
      return { drop: 'unresolved' };
    }
    const d = decodeMessage(msg);
    if (!d.ok) {
      m.dns.inc({ outcome: 'malformed' });
      return d.id === undefined ? { drop: 'malformed' } : { reply: errorReply(d.id, 'FORMERR') };
    }
    const q = d.packet;
    const question = q.questions?.[0];
    if (q.type !== 'query' || !question || q.questions?.length !== 1) {
      m.dns.inc({ outcome: 'malformed' });
      return { reply: errorReply(q.id ?? 0, 'FORMERR', q.questions ?? []) };
    }
    let remoteIdentity: number;
    try {
      remoteIdentity = this.o.identityOf(dst.ip);
    } catch {
      m.dns.inc({ outcome: 'unresolved' });
      return { drop: 'unresolved' };
    }
    const base = {
      transport: protocol,
      direction: 'egress' as const,
      endpointId: ep.endpointId,
      source: { ...src, identity: ep.identity },
      destination: { ...dst, identity: remoteIdentity },
    };
    const dnsOf = (p: Packet, rcode?: string) => ({
      query: question.name.endsWith('.') ? question.name : `${question.name}.`,
      qtypes: questionsOf(p).map((x) => x.type),
      ...(rcode !== undefined ? { rcode } : {}),
    });
    const verdict = judgeDns(policy, remoteIdentity, question.name);
    const t0 = process.hrtime.bigint();
    this.o.onRecord({
      ...base,
      timeNs: nowNs(),
      type: 'REQUEST',
      verdict: verdict.allowed ? 'FORWARDED' : 'DENIED',
      dns: dnsOf(q),
      ...(verdict.origin ? { policy: verdict.origin } : {}),
    });
    if (!verdict.allowed) {
      m.dns.inc({ outcome: 'denied' });
      const rcode: Rcode = this.rejectCode === 'nameError' ? 'NXDOMAIN' : 'REFUSED';
      const reply = encodeMessage({
        id: q.id ?? 0,
        type: 'response',
        flags: withRcode((q.flags ?? 0) & 0x0100, rcode),
        questions: q.questions,
      });
      this.o.onRecord({
        ...this.#reverse(base),
        timeNs: nowNs(),
        type: 'RESPONSE',
        verdict: 'DENIED',
        dns: { ...dnsOf(q, rcode), ips: [], ttl: 0 },
        detail: 'dns_policy_denied',
        latencyNs: Number(process.hrtime.bigint() - t0),
      });
      return { reply };
    }
    const n = this.#inflight.get(ep.endpointId) ?? 0;
    if (n >= (this.o.maxInflight ?? MAX_INFLIGHT)) {
      m.dns.inc({ outcome: 'overload' });
      return { drop: 'overload' };
    }
    this.#inflight.set(ep.endpointId, n + 1);
    let answer: Buffer;
    try {
      answer = protocol === 'UDP' ? await this.#forwardUdp(dst, msg) : await this.#forwardTcp(dst, msg);
    } catch (err) {
      m.dns.inc({ outcome: 'upstream_error' });
      this.o.log.warn({ err: (err as Error).message, dst, query: question.name }, 'DNS upstream failed');
      this.o.onRecord({
        ...this.#reverse(base),
        timeNs: nowNs(),
        type: 'RESPONSE',
        verdict: 'ERROR',
        dns: dnsOf(q, 'SERVFAIL'),
        detail: 'upstream_error',
      });
      return { reply: errorReply(q.id ?? 0, 'SERVFAIL', q.questions) };
    } finally {
      const left = (this.#inflight.get(ep.endpointId) ?? 1) - 1;
      if (left > 0) this.#inflight.set(ep.endpointId, left);
      else this.#inflight.delete(ep.endpointId);
    }
    const a = decodeMessage(answer);
    if (!a.ok || a.packet.id !== q.id) {
      m.dns.inc({ outcome: 'upstream_error' });
      return { reply: errorReply(q.id ?? 0, 'SERVFAIL', q.questions) };
    }
    // toFQDNs: the answer's addresses reach the datapath before the pod sees them.
    if (this.o.beforeRelease)
      try {
        await this.o.beforeRelease({ endpointId: ep.endpointId, name: question.name, answer: a.packet });
      } catch (err) {
        m.dns.inc({ outcome: 'learn_error' });
        this.o.log.error({ err, query: question.name }, 'FQDN addresses not in force: answer withheld');
        return { reply: errorReply(q.id ?? 0, 'SERVFAIL', q.questions) };
      }
    m.dns.inc({ outcome: 'forwarded' });
    const ips = (a.packet.answers ?? [])
      .filter((x) => x.type === 'A' || x.type === 'AAAA')
      .map((x) => String((x as { data: unknown }).data));
    const ttls = (a.packet.answers ?? []).map((x) => (x as { ttl?: number }).ttl ?? 0);
    this.o.onRecord({
      ...this.#reverse(base),
      timeNs: nowNs(),
      type: 'RESPONSE',
      verdict: 'FORWARDED',
      dns: {
        ...dnsOf(q, rcodeOf(a.packet)),
        ips,
        ttl: ttls.length ? Math.min(...ttls) : 0,
        rrtypes: (a.packet.answers ?? []).map((x) => String(x.type)),
        cnames: (a.packet.answers ?? [])
          .filter((x) => x.type === 'CNAME')
          .map((x) => String((x as { data: unknown }).data).replace(/\.?$/, '.')),
      },
      ...(verdict.origin ? { policy: verdict.origin } : {}),
      latencyNs: Number(process.hrtime.bigint() - t0),
    });
    return { reply: answer };
  }

  #reverse<T extends { source: unknown; destination: unknown }>(b: T): T {
    return { ...b, source: b.destination, destination: b.source };
  }

  /**
   * One upstream UDP socket for every query (one conntrack entry per DNS server, no socket per
   * query): each query goes out under a proxy-chosen ID, and the answer gets the client's ID back.
   */
  #forwardUdp(dst: Endpoint4, msg: Buffer): Promise<Buffer> {
    const up = (this.#upstream ??= this.#openUpstream());
    return new Promise((resolve, reject) => {
      let id = 0;
      for (let tries = 0; tries < 8; tries++) {
        id = Math.floor(Math.random() * 65536);
        if (!up.pending.has(id)) break;
      }
      if (up.pending.has(id)) return reject(new Error('no free upstream query ID'));
      const clientId = msg.readUInt16BE(0);
      const out = Buffer.from(msg);
      out.writeUInt16BE(id, 0);
      const timer = setTimeout(() => {
        up.pending.delete(id);
        reject(new Error(`no answer from ${dst.ip}:${dst.port}`));
      }, this.o.upstreamTimeoutMs ?? UPSTREAM_TIMEOUT_MS);
      up.pending.set(id, {
        from: `${dst.ip}:${dst.port}`,
        done: (buf) => {
          clearTimeout(timer);
          const answer = Buffer.from(buf);
          answer.writeUInt16BE(clientId, 0);
          resolve(answer);
        },
      });
      up.socket.send(out, dst.port, dst.ip, (err) => {
        if (!err) return;
        clearTimeout(timer);
        up.pending.delete(id);
        reject(err);
      });
    });
  }

  #upstream: { socket: ReturnType<typeof createSocket>; pending: Map<number, Pending> } | undefined;

  #openUpstream(): { socket: ReturnType<typeof createSocket>; pending: Map<number, Pending> } {
    const socket = createSocket('udp4');
    const pending = new Map<number, Pending>();
    socket.on('message', (buf, rinfo) => {
      if (buf.length < 12) return;
      const p = pending.get(buf.readUInt16BE(0));
      // Only the server the query went to answers it.
      if (!p || p.from !== `${rinfo.address}:${rinfo.port}`) return;
      pending.delete(buf.readUInt16BE(0));
      p.done(buf);
    });
    socket.on('error', (err) => this.o.log.warn({ err }, 'DNS upstream socket error'));
    socket.unref();
    return { socket, pending };
  }

  #forwardTcp(dst: Endpoint4, msg: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const framer = new TcpFramer(MAX_TCP_MESSAGE);
      let tunnelled: boolean;
      try {
        tunnelled = this.o.tunnel?.needs(dst.ip) ?? false;
      } catch (err) {
        reject(new Error(`cannot tell whether ${dst.ip} needs the mTLS tunnel: ${(err as Error).message}`));
        return;
      }
      // The tunnel's hand-off connects at once; the tunnel failing closes it before any answer.
      const s = tunnelled
        ? (this.o.tunnel as NonNullable<DnsProxyOptions['tunnel']>).connectNode(dst)
        : connect({ host: dst.ip, port: dst.port });
      const done = (err: Error | undefined, buf?: Buffer) => {
        clearTimeout(timer);
        s.destroy();
        if (err) reject(err);
        else resolve(buf as Buffer);
      };
      const timer = setTimeout(
        () => done(new Error(`no answer from ${dst.ip}:${dst.port}/tcp`)),
        this.o.upstreamTimeoutMs ?? UPSTREAM_TIMEOUT_MS,
      );
      s.on('error', (err) => done(err));
      s.on('connect', () => s.write(frameTcp(msg)));
      s.on('data', (chunk: Buffer) => {
        try {
          const [first] = framer.push(chunk);
          if (first) done(undefined, first);
        } catch (err) {
          done(err as Error);
        }
      });
      s.on('end', () => done(new Error('upstream closed')));
    });
  }
}
