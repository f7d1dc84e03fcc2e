// Encryption between nodes (--encryption mtls; docs/mtls.md): the node proxy's side of Istio
// ambient's HBONE. Pod TCP connections to other nodes' pods travel in HTTP/2 CONNECT tunnels over
// mutual TLS 1.3 between the two nodes' proxies, one tunnel (HTTP/2 connection) per
// (source identity, destination identity, peer node), each application connection one stream.
//
//   node1                                                      node2
//   pod A ── SYN ──► weir_from_container (egress policy,       TunnelServer :15008 (0.0.0.0)
//                    then sk_assign to :15001)                   SNI dst-<B>.src-<A>.weir-hbone
//   TunnelClient :15001 (transparent)                            → presents <B>'s SVID
//     src A (ipcache: local pod), dst B (ipcache: endpoint)      verifies: chain to the lab CA,
//     TLS 1.3 to <B's node>:15008, client cert <A>'s SVID ──────► an SVID, its ID is <A>
//     expects <B>'s SVID; HTTP/2 CONNECT :authority B:port        CONNECT B:port, forwarded: for=A
//     forwarded: for="A:sport"                                    checks: B a local pod of <B>,
//                                                                 A of identity <A> behind the peer
//                                                                 upstream from A (IP_TRANSPARENT),
//                                                                 SO_MARK PROXY_TUNNEL | <A>
//                                                                 → weir_to_container judges <A>
//
// The node's own upstreams (Gateway, mesh routes, DNS over TCP: tunnel-route.ts connectNode) use
// tunnels of (node, dst identity, peer) with SNI dst-<B>.node-<name>.weir-hbone and the node SVID
// (spiffe://<td>/node/<name>); the receiver accepts it only from that node's underlay address (its
// node record) with a forwarded source of that node's own address, and marks the upstream with
// remote-node, the identity the kernel gives the node's plain traffic.
//
// The datapath decides which connections come here (bpf/lib/overlay.h overlay_encrypt_port) and
// fails closed when no listener runs. SVIDs and the CA bundle come from the agent (PUT /v1/tunnel).
// Every refusal is counted by reason.
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, rmSync } from 'node:fs';
import {
  connect as h2connect,
  constants as h2c,
  createSecureServer,
  type ClientHttp2Session,
  type Http2SecureServer,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import { Socket, createServer, isIP, isIPv6, type Server } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { z } from 'zod';
import { splitBundle, svidId } from '../auth/ca.js';
import { identityOfSpiffeId, identitySpiffeId, isNodeName, nodeOfSpiffeId } from '../auth/spiffe.js';
import { IDENTITY_REMOTE_NODE } from '../identity/reserved.js';
import { proxyTunnelMark } from '../datapath/proxy-marks.js';
import { WeirError } from '../shared/errors.js';
import { UPSTREAM_CONNECT_TIMEOUT_MS } from './server.js';
import { TimeWaitReaper, type ReaperCounts } from './time-wait.js';
import { closeFd, listener, upstream, UPSTREAM_PORTS } from './transparent.js';
import { HANDOFF_HEADER_MAX, parseHandoffHeader, type Address } from './tunnel-route.js';

/** ztunnel's ports: 15001 outbound capture, 15008 inbound HBONE. */
export const TUNNEL_OUTBOUND_PORT = 15001;
export const TUNNEL_INBOUND_PORT = 15008;

/** Why the inbound side refused a tunnel or a stream (weir_proxy_tunnel_refused_total{reason}). */
export const TUNNEL_REFUSALS = [
  'untrusted', // the TLS handshake failed: no client certificate, or not of the lab CA
  'not-svid',
  'wrong-identity', // the certificate is not the SVID the SNI names
  'unknown-identity', // no SVID here for the destination the SNI names
  'bad-request', // not a CONNECT to ip:port, no forwarded source
  'not-local', // the destination is not a pod of this node of the SNI's identity
  'spoofed-source', // the source address is not of the proven identity behind the peer node
  'upstream-failed',
] as const;
export type TunnelRefusal = (typeof TUNNEL_REFUSALS)[number];

const ipString = z.string().refine((v) => isIP(v) !== 0, 'not an IP address');
const svidSchema = z
  .object({ identity: z.number().int().min(1), certPem: z.string().min(1), keyPem: z.string().min(1) })
  .strict();
const configSchema = z
  .object({
    version: z.number().int().nonnegative(),
    trustDomain: z.string().min(1),
    caPem: z.string().min(1),
    outboundPort: z.number().int().min(1).max(65535),
    inboundPort: z.number().int().min(1).max(65535),
    svids: z.array(svidSchema),
    /**
     * The node itself: its addresses (the forwarded source of its own upstreams: Gateway, mesh
     * routes, DNS) and its node SVID (spiffe://<td>/node/<name>).
     */
    node: z
      .object({
        name: z.string().refine(isNodeName, 'not a node name (a DNS label)'),
        ips: z.array(ipString),
        svid: z
          .object({ certPem: z.string().min(1), keyPem: z.string().min(1) })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    /** The other nodes' records: a node SVID is accepted only from the underlay address of its node. */
    nodes: z
      .array(
        z
          .object({
            name: z.string().refine(isNodeName, 'not a node name (a DNS label)'),
            underlayIP: ipString,
            ips: z.array(ipString),
          })
          .strict(),
      )
      .optional(),
  })
  .strict();
export type TunnelConfig = z.infer<typeof configSchema>;

/** A tunnel config as pushed: validated, or ERR_PROXY_SNAPSHOT_INVALID naming the field. */
export function parseTunnelConfig(body: unknown): TunnelConfig {
  const r = configSchema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new WeirError('ERR_PROXY_SNAPSHOT_INVALID', `tunnel config: ${issue?.message ?? 'invalid'}`, {
    location: { object: 'TunnelConfig', field: issue?.path.join('.') ?? '' },
  });
}

export const sniOfTunnel = (src: number, dst: number) => `dst-${dst}.src-${src}.weir-hbone`;
const SNI = /^dst-(\d+)\.src-(\d+)\.weir-hbone$/;
/** A node's own upstream: the client presents the node SVID of `node`. */
export const sniOfNodeTunnel = (node: string, dst: number) => `dst-${dst}.node-${node}.weir-hbone`;
const NODE_SNI = /^dst-(\d+)\.node-([a-z0-9-]+)\.weir-hbone$/;

/** The hand-off header's source for the node's own upstreams (tunnel-route.ts connectNode). */
export const NODE_SOURCE = 'node';

export interface TunnelOptions {
  /** The pinned ipcache's exact entry of an address (identity, tunnel endpoint = its node). */
  entryOf(ip: string): { identity: number; tunnelEndpoint?: string } | undefined;
  registry: Registry;
  log: Logger;
}

export interface TunnelStatus {
  version: number | null;
  outboundPort?: number;
  inboundPort?: number;
  svids: number;
  /**
   * Open tunnels (HTTP/2 connections) this node opened, by src/dst identity and peer; `issuer`:
   * the subject of the CA that signed the SVID the tunnel presented.
   */
  tunnels: { src: number; dst: number; peer: string; streams: number; issuer: string; node?: string }[];
  /** This node's node SVID is held (the node's own upstreams can be tunnelled). */
  nodeSvid: boolean;
  /** Tunnels that take no new streams (a new SVID or CA bundle) and end with their last stream. */
  draining: number;
  accepted: number;
  refused: Record<TunnelRefusal, number>;
  streams: { outbound: number; inbound: number };
  /** TIME_WAIT sockets of accepted pod connections removed from the node's namespace (time-wait.ts). */
  timeWait: ReaperCounts;
  /**
   * The proxy's own upstreams to other nodes' pods (an egress L7 rule's) handed to the tunnel:
   * carried (the peer answered the CONNECT), or failed (no tunnel, refused, a malformed hand-off:
   * the upstream was closed, never sent otherwise).
   */
  proxyUpstreams: { carried: number; failed: number };
  /**
   * The node's own upstreams (Gateway, mesh routes, DNS over TCP) to other nodes' pods, in tunnels
   * with the node SVID: carried, or failed (closed, never sent otherwise).
   */
  nodeUpstreams: { carried: number; failed: number };
}

/**
 * Node's `ca` option takes one certificate per PEM string: a bundle (both CAs during a rotation's
 * overlap) given as one string would trust its first certificate only.
 */
const trustOf = (pem: string) => {
  const certs = splitBundle(pem);
  return certs.length ? certs : pem;
};

const hostPort = (ip: string, port: number) => (isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`);

function parseHostPort(s: string): { ip: string; port: number } | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([0-9.]+):(\d{1,5})$/.exec(s);
  const port = Number(m?.[2]);
  return m && port >= 1 && port <= 65535 ? { ip: m[1] as string, port } : undefined;
}

export class TunnelProxy {
  readonly #o: TunnelOptions;
  #cfg: TunnelConfig | undefined;
  #svids = new Map<number, { certPem: string; keyPem: string }>();
  readonly #contexts = new Map<number, SecureContext>();
  readonly #sessions = new Map<string, { session: ClientHttp2Session; streams: number; issuer: string }>();
  /** Outbound tunnels retired by a new SVID or bundle: their open streams go on, no new ones. */
  readonly #draining = new Set<ClientHttp2Session>();
  /** Inbound tunnels (their socket carries the client certificate each was accepted with). */
  readonly #accepted = new Set<ServerHttp2Session>();
  #outbound: { port: number; servers: Server[] } | undefined;
  #inbound: { port: number; server: Http2SecureServer } | undefined;
  #handoff: Server | undefined;
  /** The proxy's own upstreams handed to the tunnel (tunnel-route.ts): carried, or refused. */
  readonly #handoffs = { carried: 0, failed: 0 };
  readonly #nodeHandoffs = { carried: 0, failed: 0 };
  readonly #reaper = new TimeWaitReaper();
  readonly #counts = {
    accepted: 0,
    refused: Object.fromEntries(TUNNEL_REFUSALS.map((r) => [r, 0])) as Record<TunnelRefusal, number>,
  };
  readonly #active = { outbound: 0, inbound: 0 };
  readonly #mRefused: Counter<'reason'>;
  readonly #mStreams: Counter<'side' | 'outcome'>;
  readonly #mBytes: Counter<'side'>;

  constructor(o: TunnelOptions) {
    this.#o = o;
    this.#mRefused = new Counter({
      name: 'weir_proxy_tunnel_refused_total',
      help: 'mTLS tunnels or streams the inbound side refused, by reason (untrusted: not of the lab CA)',
      labelNames: ['reason'] as const,
      registers: [o.registry],
    });
    this.#mStreams = new Counter({
      name: 'weir_proxy_tunnel_streams_total',
      help: 'Connections carried in mTLS tunnels, by side (outbound, inbound) and outcome',
      labelNames: ['side', 'outcome'] as const,
      registers: [o.registry],
    });
    this.#mBytes = new Counter({
      name: 'weir_proxy_tunnel_bytes_total',
      help: 'Application bytes carried in mTLS tunnels, by side (sent by the local pods: outbound)',
      labelNames: ['side'] as const,
      registers: [o.registry],
    });
    const sessions = this.#sessions;
    new Gauge({
      name: 'weir_proxy_tunnels',
      help: 'Open mTLS tunnels (HTTP/2 connections) this node opened',
      registers: [o.registry],
      collect() {
        this.set(sessions.size);
      },
    });
  }

  #refuse(reason: TunnelRefusal, detail: Record<string, unknown>): void {
    this.#counts.refused[reason]++;
    this.#mRefused.inc({ reason });
    this.#o.log.warn({ reason, ...detail }, 'tunnel refused');
  }

  /** Takes a config: new SVIDs for new tunnels (open ones keep theirs), listeners opened once. */
  async apply(cfg: TunnelConfig): Promise<void> {
    if (this.#cfg && cfg.version < this.#cfg.version)
      throw new WeirError(
        'ERR_PROXY_SNAPSHOT_STALE',
        `tunnel config version ${cfg.version} is older than the running version ${this.#cfg.version}`,
        { details: { version: this.#cfg.version } },
      );
    const svids = new Map(cfg.svids.map((s) => [s.identity, { certPem: s.certPem, keyPem: s.keyPem }]));
    const changedCa = this.#cfg !== undefined && this.#cfg.caPem !== cfg.caPem;
    const renewed = new Set<number>();
    for (const [id, s] of this.#svids)
      if (svids.get(id)?.certPem !== s.certPem) {
        this.#contexts.delete(id);
        renewed.add(id);
      }
    if (changedCa) this.#contexts.clear();
    const nodeRenewed = this.#cfg?.node?.svid?.certPem !== cfg.node?.svid?.certPem;
    this.#cfg = cfg;
    this.#svids = svids;
    // New connections go into tunnels with the new SVIDs and bundle; the open tunnels keep their
    // streams (a CA rotation or a renewal cuts no connection) and take no new ones.
    for (const [key, e] of this.#sessions)
      if (
        changedCa ||
        renewed.has(Number(key.split('/')[0])) ||
        (nodeRenewed && key.startsWith(`${NODE_SOURCE}:`))
      )
        this.#retire(key, e.session);
    if (!this.#inbound || this.#inbound.port !== cfg.inboundPort) await this.#listenInbound(cfg);
    else if (changedCa) {
      // The listener keeps its socket (a second one could not bind the port) and trusts the new
      // bundle from the next handshake on; a tunnel whose client certificate no longer chains to
      // it (the retired CA's, at the end of a rotation's overlap) takes no new streams.
      this.#inbound.server.setSecureContext({
        ca: trustOf(cfg.caPem),
        minVersion: 'TLSv1.3',
        maxVersion: 'TLSv1.3',
      });
      const cas = splitBundle(cfg.caPem).map((pem) => new X509Certificate(pem));
      for (const session of this.#accepted) {
        const cert = (session.socket as TLSSocket & { weirTunnel?: { cert?: X509Certificate } }).weirTunnel
          ?.cert;
        if (cert && !cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
          this.#o.log.info({ issuer: cert.issuer }, 'tunnel: the CA of an inbound tunnel left the bundle');
          this.#accepted.delete(session);
          session.close();
        }
      }
    }
    if (!this.#outbound || this.#outbound.port !== cfg.outboundPort)
      await this.#listenOutbound(cfg.outboundPort);
  }

  status(): TunnelStatus {
    return {
      version: this.#cfg?.version ?? null,
      ...(this.#cfg ? { outboundPort: this.#cfg.outboundPort, inboundPort: this.#cfg.inboundPort } : {}),
      svids: this.#svids.size,
      tunnels: [...this.#sessions].map(([k, v]) => {
        const [src, dst, peer] = k.split('/');
        const node = src?.startsWith(`${NODE_SOURCE}:`) ? src.slice(NODE_SOURCE.length + 1) : undefined;
        return {
          src: node === undefined ? Number(src) : IDENTITY_REMOTE_NODE,
          dst: Number(dst),
          peer: peer ?? '',
          streams: v.streams,
          issuer: v.issuer,
          ...(node === undefined ? {} : { node }),
        };
      }),
      nodeSvid: !!this.#cfg?.node?.svid,
      draining: this.#draining.size,
      accepted: this.#counts.accepted,
      refused: { ...this.#counts.refused },
      streams: { ...this.#active },
      timeWait: { ...this.#reaper.counts },
      proxyUpstreams: { ...this.#handoffs },
      nodeUpstreams: { ...this.#nodeHandoffs },
    };
  }

  // ---- outbound: the transparent listener the datapath assigns pods' connections to

  async #listenOutbound(port: number): Promise<void> {
    const servers: Server[] = [];
    const fds: number[] = [];
    try {
      for (const family of [4, 6] as const) fds.push(listener({ family, port }));
      for (const fd of fds.splice(0)) {
        const server = createServer({ allowHalfOpen: true }, (s) => this.#outboundConn(s));
        server.on('error', (err) => this.#o.log.error({ err, port }, 'tunnel listener error'));
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ fd }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        servers.push(server);
      }
    } catch (err) {
      for (const fd of fds) closeFd(fd);
      for (const s of servers) s.close();
      throw new WeirError('ERR_PROXY_LISTEN', `cannot listen on port ${port}: ${(err as Error).message}`);
    }
    const old = this.#outbound;
    this.#outbound = { port, servers };
    if (old) for (const s of old.servers) s.close();
    this.#o.log.info({ port }, 'tunnel outbound listener');
  }

  #outboundConn(socket: Socket): void {
    socket.on('error', () => undefined);
    // No Nagle anywhere on the path: HTTP/2 writes a frame header and its data separately, and a
    // held second write waits for the peer's delayed ACK (tens of ms per exchange).
    socket.setNoDelay(true);
    const src = { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const dst = { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    socket.on('close', () =>
      // The pod's connection was assigned to the listener (bpf_sk_assign), which bypasses the
      // stack's TIME_WAIT handling: a TIME_WAIT socket of this tuple left here when this side
      // closed first would make the kernel drop the pod's next SYN of the tuple until it
      // retransmits (time-wait.ts). The pod keeps its own.
      this.#reaper.reap(dst, src),
    );
    this.#carry(socket, src, dst, () => socket.resetAndDestroy(), 'pod');
  }

  /**
   * The proxy's own upstreams (tunnel-route.ts): a unix socket of this process (a worker thread's
   * or this thread's ProxyServer) whose first line names the original client and the destination;
   * the rest is carried as a tunnel stream like a pod's connection. Root-only: the socket lives in
   * the proxy's private directory.
   */
  async listenHandoff(path: string): Promise<void> {
    rmSync(path, { force: true });
    const server = createServer({ allowHalfOpen: true }, (s) => this.#handoffConn(s));
    server.on('error', (err) => this.#o.log.error({ err, path }, 'tunnel hand-off listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path }, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((err: Error) => {
      throw new WeirError('ERR_PROXY_LISTEN', `cannot listen on ${path}: ${err.message}`);
    });
    chmodSync(path, 0o600);
    this.#handoff?.close();
    this.#handoff = server;
  }

  #handoffConn(socket: Socket): void {
    socket.on('error', () => undefined);
    let head = Buffer.alloc(0);
    const fail = (why: string) => {
      this.#handoffs.failed++;
      this.#mStreams.inc({ side: 'outbound', outcome: 'failed' });
      this.#o.log.warn({ why }, 'tunnel: proxy upstream refused');
      socket.destroy();
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        head = Buffer.concat([head, chunk]);
        const nl = head.indexOf(10);
        if (nl < 0) {
          if (head.length >= HANDOFF_HEADER_MAX) {
            socket.off('readable', onReadable);
            return fail('hand-off header too long');
          }
          continue;
        }
        socket.off('readable', onReadable);
        if (nl + 1 < head.length) socket.unshift(head.subarray(nl + 1));
        const h = parseHandoffHeader(head.subarray(0, nl).toString('latin1'));
        if (!h) return fail('hand-off header malformed');
        this.#carry(
          socket,
          h.src,
          h.dst,
          () => socket.destroy(),
          h.src.ip === NODE_SOURCE ? 'node' : 'proxy',
        );
        return;
      }
    };
    socket.on('readable', onReadable);
  }

  /**
   * Carries `socket` (a pod's connection, a proxy upstream's hand-off, or the node's own upstream)
   * to `dst` in the tunnel of (src's identity or the node, dst's identity, dst's node), or resets
   * it: never anything else.
   */
  #carry(
    socket: Socket,
    src: Address,
    dst: Address,
    reset: () => void,
    from: 'pod' | 'proxy' | 'node',
  ): void {
    const counts = from === 'node' ? this.#nodeHandoffs : from === 'proxy' ? this.#handoffs : undefined;
    const fail = (why: string, err?: unknown) => {
      this.#mStreams.inc({ side: 'outbound', outcome: 'failed' });
      if (counts) counts.failed++;
      this.#o.log.warn({ src, dst, err, why, from }, 'tunnel: outbound connection reset');
      reset();
    };
    const cfg = this.#cfg;
    let s: ReturnType<TunnelOptions['entryOf']>;
    let d: ReturnType<TunnelOptions['entryOf']>;
    if (from === 'node') {
      // The node's own upstream: from the node's address of the destination's family, a port of
      // UPSTREAM_PORTS (the peer binds it transparently, as a pod's), with the node SVID.
      const ip = cfg?.node?.ips.find((a) => isIPv6(a) === isIPv6(dst.ip));
      if (!cfg?.node || !ip) return fail("no node address of the destination's family in the tunnel config");
      src = {
        ip,
        port: UPSTREAM_PORTS.min + Math.floor(Math.random() * (UPSTREAM_PORTS.max - UPSTREAM_PORTS.min + 1)),
      };
    }
    try {
      s = from === 'node' ? undefined : this.#o.entryOf(src.ip);
      d = this.#o.entryOf(dst.ip);
    } catch (err) {
      return fail('ipcache unreadable', err);
    }
    if (!cfg) return fail('no tunnel config');
    if (from !== 'node' && (!s || s.tunnelEndpoint)) return fail('the source is not a pod of this node');
    if (!d?.tunnelEndpoint) return fail('the destination is behind no tunnel endpoint');
    const client: { identity: number } | { node: string } =
      from === 'node' ? { node: cfg.node?.name ?? '' } : { identity: s?.identity ?? 0 };
    const svid = 'node' in client ? cfg.node?.svid : this.#svids.get(client.identity);
    if (!svid) return fail('node' in client ? 'no node SVID' : `no SVID for identity ${String(s?.identity)}`);
    const key = `${'node' in client ? `${NODE_SOURCE}:${client.node}` : client.identity}/${d.identity}/${d.tunnelEndpoint}`;
    let session: ClientHttp2Session;
    try {
      session = this.#session(cfg, key, client, d.identity, d.tunnelEndpoint, svid);
    } catch (err) {
      return fail('tunnel', err);
    }
    const entry = this.#sessions.get(key);
    const stream = session.request(
      {
        [h2c.HTTP2_HEADER_METHOD]: 'CONNECT',
        [h2c.HTTP2_HEADER_AUTHORITY]: hostPort(dst.ip, dst.port),
        // HBONE's: the original source, which the peer checks against the proven identity.
        forwarded: `for="${hostPort(src.ip, src.port)}"`,
      },
      { endStream: false },
    );
    if (entry) entry.streams++;
    this.#active.outbound++;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      this.#active.outbound--;
      if (entry) entry.streams--;
    };
    stream.on('close', finish);
    stream.on('error', reset);
    // The session failing before the stream answered (handshake refused, peer unreachable) ends
    // the connection too: nothing is sent any other way.
    let answered = false;
    stream.on('close', () => {
      if (!answered && !socket.destroyed) reset();
    });
    // A proxy upstream waits for the peer's answer at most as long as a plain upstream's connect
    // (server.ts); a pod's connection keeps the peer's own 5 s bound on its SYNs.
    const timer =
      from !== 'pod'
        ? setTimeout(() => {
            if (!answered) fail('the tunnel gave no answer in time');
          }, UPSTREAM_CONNECT_TIMEOUT_MS)
        : undefined;
    stream.on('close', () => clearTimeout(timer));
    socket.on('close', () => {
      if (!stream.closed) stream.close(h2c.NGHTTP2_CANCEL);
    });
    stream.on('response', (headers) => {
      answered = true;
      clearTimeout(timer);
      const status = Number(headers[h2c.HTTP2_HEADER_STATUS]);
      if (status !== 200) {
        this.#mStreams.inc({ side: 'outbound', outcome: `refused_${status}` });
        if (counts) counts.failed++;
        reset();
        stream.close(h2c.NGHTTP2_CANCEL);
        return;
      }
      this.#mStreams.inc({ side: 'outbound', outcome: 'ok' });
      if (counts) counts.carried++;
      this.#pipe(socket, stream, 'outbound');
    });
  }

  /** Bidirectional copy with half-close both ways; a reset on one side resets the other. */
  #pipe(socket: Socket, stream: import('node:stream').Duplex, side: 'outbound' | 'inbound'): void {
    let bytes = 0;
    socket.on('data', (c: Buffer) => (bytes += c.length));
    socket.once('close', () => {
      if (bytes) this.#mBytes.inc({ side }, bytes);
    });
    socket.pipe(stream);
    stream.pipe(socket);
    socket.on('error', () => stream.destroy());
  }

  #session(
    cfg: TunnelConfig,
    key: string,
    client: { identity: number } | { node: string },
    dst: number,
    peer: string,
    svid: { certPem: string; keyPem: string },
  ): ClientHttp2Session {
    const src = 'node' in client ? client.node : client.identity;
    const have = this.#sessions.get(key);
    if (have && !have.session.closed && !have.session.destroyed) return have.session;
    const want = identitySpiffeId(cfg.trustDomain, dst);
    const session = h2connect(`https://${hostPort(peer, cfg.inboundPort)}`, {
      createConnection: () => {
        const tls = tlsConnect({
          host: peer,
          port: cfg.inboundPort,
          servername:
            'node' in client ? sniOfNodeTunnel(client.node, dst) : sniOfTunnel(client.identity, dst),
          cert: svid.certPem,
          key: svid.keyPem,
          ca: trustOf(cfg.caPem),
          minVersion: 'TLSv1.3',
          maxVersion: 'TLSv1.3',
          ALPNProtocols: ['h2'],
          checkServerIdentity: (_host, cert) => {
            const id = svidId(cert.raw);
            if ('error' in id) return new Error(`the peer's certificate is not an SVID: ${id.error}`);
            if (id.id !== want) return new Error(`the peer presented ${id.id}, not ${want}`);
            return undefined;
          },
        });
        tls.setNoDelay(true);
        return tls;
      },
      settings: { initialWindowSize: 4 << 20 },
    });
    session.on('connect', () => session.setLocalWindowSize?.(8 << 20));
    const entry = { session, streams: 0, issuer: new X509Certificate(svid.certPem).issuer };
    this.#sessions.set(key, entry);
    const forget = () => {
      if (this.#sessions.get(key) === entry) this.#sessions.delete(key);
      this.#draining.delete(session);
    };
    session.on('error', (err) => {
      this.#o.log.warn({ err, src, dst, peer }, 'tunnel: session failed');
      forget();
    });
    session.on('close', forget);
    session.on('goaway', forget);
    this.#o.log.info({ src, dst, peer }, 'tunnel: opening');
    return session;
  }

  /** No new streams on this tunnel: it closes once its open streams ended (HTTP/2 GOAWAY). */
  #retire(key: string, session: ClientHttp2Session): void {
    this.#sessions.delete(key);
    if (session.closed || session.destroyed) return;
    this.#draining.add(session);
    session.close(() => this.#draining.delete(session));
  }

  // ---- inbound: HBONE on every address of the node namespace

  #context(id: number): SecureContext | undefined {
    const cfg = this.#cfg;
    const svid = this.#svids.get(id);
    if (!cfg || !svid) return undefined;
    let ctx = this.#contexts.get(id);
    if (!ctx) {
      ctx = createSecureContext({
        cert: svid.certPem,
        key: svid.keyPem,
        ca: trustOf(cfg.caPem),
        minVersion: 'TLSv1.3',
      });
      this.#contexts.set(id, ctx);
    }
    return ctx;
  }

  async #listenInbound(cfg: TunnelConfig): Promise<void> {
    const server = createSecureServer({
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      requestCert: true,
      rejectUnauthorized: true,
      ca: trustOf(cfg.caPem),
      allowHTTP1: false,
      settings: { initialWindowSize: 4 << 20 },
      SNICallback: (name, cb) => {
        const m = SNI.exec(name) ?? NODE_SNI.exec(name);
        const ctx = m ? this.#context(Number(m[1])) : undefined;
        if (!ctx) {
          this.#refuse(m ? 'unknown-identity' : 'bad-request', { sni: name });
          cb(new Error(`no SVID for '${name}'`));
          return;
        }
        cb(null, ctx);
      },
    });
    // A client certificate not of the lab CA (or none) fails the handshake itself.
    server.on('tlsClientError', (err: Error & { code?: string }, sock: TLSSocket) => {
      if (/no SVID for/.test(err.message)) return; // counted in SNICallback
      this.#refuse('untrusted', { code: err.code, error: err.message, peer: sock.remoteAddress });
    });
    server.on('secureConnection', (sock: TLSSocket) => {
      sock.setNoDelay(true);
      this.#judge(sock);
    });
    server.on('stream', (stream, headers) => this.#inboundStream(stream, headers));
    server.on('sessionError', () => undefined);
    server.on('session', (session) => {
      session.on('error', () => undefined);
      this.#accepted.add(session);
      session.once('close', () => this.#accepted.delete(session));
      session.setLocalWindowSize?.(8 << 20);
    });
    server.listen(cfg.inboundPort, '0.0.0.0');
    await once(server, 'listening');
    const old = this.#inbound;
    this.#inbound = { port: cfg.inboundPort, server };
    old?.server.close();
    this.#o.log.info({ port: cfg.inboundPort }, 'tunnel inbound listener');
  }

  /** After the handshake: the client's certificate must be the SVID of the source the SNI names. */
  #judge(sock: TLSSocket): void {
    const cfg = this.#cfg;
    const sni = (sock as TLSSocket & { servername?: string }).servername || '';
    const m = SNI.exec(sni);
    const nm = m ? null : NODE_SNI.exec(sni);
    const peer = sock.getPeerX509Certificate();
    const reject = (reason: TunnelRefusal, detail: string) => {
      this.#refuse(reason, { detail, peer: sock.remoteAddress });
      sock.destroy();
    };
    if (!cfg || (!m && !nm)) return reject('bad-request', 'no SNI naming the pair');
    if (!sock.authorized || !peer)
      return reject('untrusted', String(sock.authorizationError ?? 'no certificate'));
    const id = svidId(peer.raw);
    if ('error' in id) return reject('not-svid', id.error);
    if (nm) {
      // Another node's own upstream: its node SVID, from the underlay address of that node's
      // record; the stream is judged as remote-node (what the kernel judges over plain VXLAN).
      const name = nm[2] as string;
      const proven = nodeOfSpiffeId(cfg.trustDomain, id.id);
      if (proven === undefined || proven !== name)
        return reject('wrong-identity', `presented ${id.id}, the SNI names node ${name}`);
      const record = cfg.nodes?.find((n) => n.name === name);
      const from = sock.remoteAddress?.replace(/^::ffff:/, '') ?? '';
      if (!record || record.underlayIP !== from)
        return reject(
          'spoofed-source',
          `node ${name}'s SVID from ${from}, not from its record's underlay address ${record?.underlayIP ?? '(no record)'}`,
        );
      this.#counts.accepted++;
      (
        sock as TLSSocket & {
          weirTunnel?: { src: number; dst: number; node?: string; cert?: X509Certificate };
        }
      ).weirTunnel = { src: IDENTITY_REMOTE_NODE, dst: Number(nm[1]), node: name, cert: peer };
      return;
    }
    if (!m) return;
    const proven = identityOfSpiffeId(cfg.trustDomain, id.id);
    if (proven === undefined || proven !== Number(m[2]))
      return reject('wrong-identity', `presented ${id.id}, the SNI names ${m[2]}`);
    this.#counts.accepted++;
    (sock as TLSSocket & { weirTunnel?: { src: number; dst: number; cert?: X509Certificate } }).weirTunnel = {
      src: proven,
      dst: Number(m[1]),
      cert: peer,
    };
  }

  #inboundStream(stream: ServerHttp2Stream, headers: Record<string, string | string[] | undefined>): void {
    stream.on('error', () => undefined);
    const sock = stream.session?.socket as
      (TLSSocket & { weirTunnel?: { src: number; dst: number; node?: string } }) | undefined;
    const pair = sock?.weirTunnel;
    const peerAddr = sock?.remoteAddress?.replace(/^::ffff:/, '') ?? '';
    const refuse = (reason: TunnelRefusal, status: number, detail: string) => {
      this.#refuse(reason, { detail, peer: peerAddr });
      if (!stream.headersSent) stream.respond({ [h2c.HTTP2_HEADER_STATUS]: status }, { endStream: true });
      else stream.close(h2c.NGHTTP2_REFUSED_STREAM);
    };
    if (!pair) return refuse('untrusted', 403, 'the session was not judged');
    const dst =
      headers[h2c.HTTP2_HEADER_METHOD] === 'CONNECT'
        ? parseHostPort(String(headers[h2c.HTTP2_HEADER_AUTHORITY] ?? ''))
        : undefined;
    const fwd = /for="?([^";,]+)"?/.exec(String(headers.forwarded ?? ''));
    const src = fwd ? parseHostPort(fwd[1] as string) : undefined;
    if (!dst || !src) return refuse('bad-request', 400, 'not a CONNECT to ip:port with a forwarded source');
    let d: ReturnType<TunnelOptions['entryOf']>;
    let s: ReturnType<TunnelOptions['entryOf']>;
    try {
      d = this.#o.entryOf(dst.ip);
      s = this.#o.entryOf(src.ip);
    } catch {
      return refuse('upstream-failed', 503, 'ipcache unreadable');
    }
    if (!d || d.tunnelEndpoint || d.identity !== pair.dst)
      return refuse('not-local', 403, `${dst.ip} is not a pod of this node of identity ${pair.dst}`);
    if (!s || s.identity !== pair.src || s.tunnelEndpoint !== peerAddr)
      return refuse('spoofed-source', 403, `${src.ip} is not of identity ${pair.src} on ${peerAddr}`);
    // A node's own upstream: the forwarded source must be that node's own address (its record's).
    if (pair.node !== undefined && !this.#cfg?.nodes?.find((n) => n.name === pair.node)?.ips.includes(src.ip))
      return refuse('spoofed-source', 403, `${src.ip} is not an address of node ${pair.node}`);
    let up: Socket;
    try {
      // From the client's own address and port: a random port would soon meet the server's
      // TIME_WAIT of an earlier connection of that tuple (the server closes first) and stall.
      const fd = upstream({ src: src.ip, prefer: src.port, mark: proxyTunnelMark(pair.src) });
      up = new Socket({ fd, allowHalfOpen: true });
      up.setNoDelay(true);
    } catch (err) {
      return refuse('upstream-failed', 503, (err as Error).message);
    }
    this.#active.inbound++;
    up.once('close', () => this.#active.inbound--);
    const timer = setTimeout(() => up.destroy(new Error('connect timed out')), 5000);
    up.once('error', (err) => {
      clearTimeout(timer);
      if (!stream.headersSent) {
        this.#mStreams.inc({ side: 'inbound', outcome: 'upstream_failed' });
        stream.respond({ [h2c.HTTP2_HEADER_STATUS]: 503 }, { endStream: true });
        this.#o.log.warn({ err, src, dst }, 'tunnel: upstream failed');
      } else stream.close(h2c.NGHTTP2_CANCEL);
    });
    up.once('connect', () => {
      clearTimeout(timer);
      this.#mStreams.inc({ side: 'inbound', outcome: 'ok' });
      stream.respond({ [h2c.HTTP2_HEADER_STATUS]: 200 });
      this.#pipe(up, stream, 'inbound');
    });
    stream.on('close', () => {
      if (!up.destroyed && stream.rstCode && stream.rstCode !== h2c.NGHTTP2_NO_ERROR) up.resetAndDestroy();
    });
    up.connect({ host: dst.ip, port: dst.port });
  }

  async close(): Promise<void> {
    this.#reaper.close();
    for (const { session } of this.#sessions.values()) session.destroy();
    this.#sessions.clear();
    for (const session of this.#draining) session.destroy();
    this.#draining.clear();
    for (const s of this.#outbound?.servers ?? []) s.close();
    this.#outbound = undefined;
    this.#handoff?.close();
    this.#handoff = undefined;
    const inbound = this.#inbound;
    this.#inbound = undefined;
    // Open inbound sessions end with the process; not waited for.
    inbound?.server.close();
  }
}
