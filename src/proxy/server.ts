// The node proxy's process side: transparent listeners (one per direction and address family),
// the identification of every accepted connection, transparent upstream connections, and the
// hand-off to the protocol handler of the port's parser.
//
// An accepted socket was assigned to a listener by the datapath (bpf/lib/proxy.h): its local
// address is the original destination, its remote address the original client. The listener
// tells the direction; the snapshot tells the endpoint (by the destination address at ingress,
// the source at egress) and the port's L7 policy (looked up again on every policy() call, so a
// new snapshot applies to open connections); the pinned ipcache tells the peer's identity. A
// connection that cannot be identified is reset: fail closed.
import { Socket, createServer, type Server } from 'node:net';
import type { Logger } from 'pino';
import { ProxyMark, proxyEgressMark } from '../datapath/proxy-marks.js';
import { WeirError } from '../shared/errors.js';
import { DnsProxy, type DnsProxyOptions, type RejectCode } from './dns/proxy.js';
import type { HandlerFactory, ProtocolHandler } from './handler.js';
import type { ProxyMetrics } from './metrics.js';
import type { RecordQueue } from './records.js';
import { SnapshotStore } from './snapshot.js';
import { TimeWaitReaper } from './time-wait.js';
import { closeFd, listener, upstream, UPSTREAM_PORTS } from './transparent.js';
import type { TunnelRoute } from './tunnel-route.js';
import type { AccessRecord, L7Record, ProxiedConnection } from './types.js';
import { LocalClientPorts, type ClientPorts } from './client-ports.js';

export type Direction = 'ingress' | 'egress';

/** The listener port of each direction (the agent's settings; the snapshot's entries name them). */
export interface ListenerPorts {
  ingress: number;
  egress: number;
  /** The DNS proxy (UDP and TCP); absent: none. */
  dns?: number;
  /** What a denied DNS query is answered (Cilium's --tofqdns-dns-reject-response-code). */
  dnsRejectCode?: RejectCode;
}

/** How long an upstream connection may take to connect (Envoy's cluster connect_timeout). */
export const UPSTREAM_CONNECT_TIMEOUT_MS = 5000;

export interface ProxyServerOptions {
  /** Security identity of an address (the pinned weir_ipcache, read only). */
  identityOf(ip: string): number;
  /** The protocol handler of the HTTP parser. */
  http: HandlerFactory;
  metrics: ProxyMetrics;
  records: Pick<RecordQueue, 'push'>;
  log: Logger;
  /** One entry per finished request (the access log). */
  onAccess?(a: AccessRecord): void;
  /** toFQDNs: called with every allowed DNS answer before it is released (see dns/proxy.ts). */
  beforeRelease?: DnsProxyOptions['beforeRelease'];
  /** HTTP listeners with SO_REUSEPORT: one of several proxy workers (workers.ts). */
  reusePort?: boolean;
  /** The client ports of every worker (workers.ts); default: this server's own. */
  clientPorts?: ClientPorts;
  /**
   * --encryption mtls: upstreams to other nodes' pods go through the main thread's mTLS tunnel
   * (tunnel-route.ts), never from the node's stack into plain VXLAN.
   */
  tunnel?: TunnelRoute;
}

interface Listening {
  port: number;
  servers: Server[];
}

export class ProxyServer {
  readonly snapshots = new SnapshotStore();
  readonly #o: ProxyServerOptions;
  readonly #listening = new Map<Direction, Listening>();
  readonly #handler: ProtocolHandler;
  /** Every accepted connection's client address: an upstream never takes one (see below). */
  readonly #clients: ClientPorts;
  readonly #active = { ingress: 0, egress: 0 };
  /** The TIME_WAIT copies of accepted connections this side closed first (time-wait.ts). */
  readonly #reaper = new TimeWaitReaper();
  readonly dns: DnsProxy;

  constructor(o: ProxyServerOptions) {
    this.#o = o;
    this.#clients = o.clientPorts ?? new LocalClientPorts();
    this.dns = new DnsProxy({
      snapshots: this.snapshots,
      identityOf: o.identityOf,
      metrics: o.metrics,
      log: o.log,
      onRecord: (r: L7Record) => {
        o.metrics.records.inc();
        o.records.push(r);
      },
      ...(o.beforeRelease ? { beforeRelease: o.beforeRelease } : {}),
      ...(o.tunnel ? { tunnel: o.tunnel } : {}),
    });
    this.#handler = o.http({
      connector: (conn) => this.connect(conn),
      onRecord: (r: L7Record) => {
        o.metrics.records.inc();
        o.metrics.countRecord(r);
        o.records.push(r);
      },
      ...(o.onAccess ? { onAccess: o.onAccess } : {}),
    });
  }

  /** Listener ports now, by direction. */
  ports(): Partial<ListenerPorts> {
    return {
      ...Object.fromEntries([...this.#listening].map(([d, l]) => [d, l.port])),
      ...(this.dns.port ? { dns: this.dns.port, dnsRejectCode: this.dns.rejectCode } : {}),
    };
  }

  active(): { ingress: number; egress: number } {
    return { ...this.#active };
  }

  /**
   * Listens on `ports` (IPv4 and IPv6 each). A changed port gets a new listener before the old
   * one stops accepting; connections already accepted stay. All or nothing per call.
   */
  async listen(ports: ListenerPorts): Promise<void> {
    for (const direction of ['ingress', 'egress'] as const) {
      const want = ports[direction];
      const have = this.#listening.get(direction);
      if (have?.port === want) continue;
      const servers = await this.#open(direction, want);
      this.#listening.set(direction, { port: want, servers });
      if (have) for (const s of have.servers) s.close();
      this.#o.log.info({ direction, port: want }, 'listening');
    }
    if (ports.dnsRejectCode) this.dns.rejectCode = ports.dnsRejectCode;
    if (ports.dns) await this.dns.listen(ports.dns);
  }

  async #open(direction: Direction, port: number): Promise<Server[]> {
    const fds: number[] = [];
    const servers: Server[] = [];
    try {
      for (const family of [4, 6] as const)
        fds.push(listener({ family, port, reusePort: this.#o.reusePort ?? false }));
      for (const fd of fds.splice(0)) {
        const server = createServer({ allowHalfOpen: true }, (s) => this.#accept(direction, s));
        server.on('error', (err) => this.#o.log.error({ err, direction, port }, 'listener error'));
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ fd }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        servers.push(server);
      }
      return servers;
    } catch (err) {
      for (const fd of fds) closeFd(fd);
      for (const s of servers) s.close();
      throw err instanceof WeirError
        ? err
        : new WeirError('ERR_PROXY_LISTEN', `cannot listen on port ${port}: ${(err as Error).message}`);
    }
  }

  #accept(direction: Direction, socket: Socket): void {
    const m = this.#o.metrics;
    m.redirects.inc({ direction });
    socket.on('error', () => undefined); // the handler takes over; a reset before that is not fatal
    const src = { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const dst = { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    const ep = this.snapshots.endpointByIp(direction === 'ingress' ? dst.ip : src.ip);
    if (!ep) {
      m.unresolved.inc({ direction });
      this.#o.log.warn({ direction, src, dst }, 'connection of no known endpoint: reset');
      socket.resetAndDestroy();
      return;
    }
    let remoteIdentity: number;
    try {
      remoteIdentity = this.#o.identityOf(direction === 'ingress' ? src.ip : dst.ip);
    } catch (err) {
      // The peer's identity decides which rules apply: an unreadable ipcache fails closed.
      m.unresolved.inc({ direction });
      this.#o.log.error({ err, direction, src, dst }, 'cannot read the peer identity: reset');
      socket.resetAndDestroy();
      return;
    }
    const conn: ProxiedConnection = {
      direction,
      endpoint: { id: ep.endpointId, identity: ep.identity, namespace: ep.namespace, pod: ep.pod },
      remoteIdentity,
      src,
      dst,
      policy: () => this.snapshots.portPolicy(ep.endpointId, direction, dst.port),
    };
    this.#clients.add(src.ip, src.port);
    this.#active[direction]++;
    m.active.inc({ direction });
    socket.once('close', () => {
      this.#clients.remove(src.ip, src.port);
      this.#active[direction]--;
      m.active.dec({ direction });
      // Assigned to the listener (bpf_sk_assign): a TIME_WAIT socket of this tuple left here would
      // make the kernel drop the pod's next SYN of the tuple (time-wait.ts).
      this.#reaper.reap(dst, src);
    });
    this.#handler.handle(socket, conn);
  }

  /**
   * The UpstreamConnector: a connection to the original destination from the original client's
   * address (IP_TRANSPARENT), marked as the proxy's (SO_MARK) so the datapath does not redirect
   * it back. Its source port comes from below the ephemeral range (transparent.ts UPSTREAM_PORTS)
   * and is never one a client of this proxy uses from the same address: when both ends of a
   * connection filter (egress proxy, then ingress proxy on this node), the ingress listener would
   * otherwise accept a second socket with the very tuple of one the egress listener holds.
   */
  connect(conn: ProxiedConnection): Socket {
    const m = this.#o.metrics;
    const direction = conn.direction;
    let sock: Socket;
    try {
      // --encryption mtls: another node's pod is reached through the tunnel (fail closed: a map
      // that cannot be read fails the upstream, below).
      if (this.#o.tunnel?.needs(conn.dst.ip)) return this.#viaTunnel(conn, this.#o.tunnel);
      const fd = upstream({
        src: conn.src.ip,
        mark: direction === 'ingress' ? ProxyMark.PROXY_INGRESS : proxyEgressMark(conn.endpoint.identity),
        avoid: (port) => this.#clients.has(conn.src.ip, port),
      });
      sock = new Socket({ fd, allowHalfOpen: true });
    } catch (err) {
      m.upstreamErrors.inc({ direction });
      this.#o.log.warn({ err, src: conn.src }, 'cannot open an upstream socket');
      const failed = new Socket();
      process.nextTick(() => failed.destroy(err as Error));
      return failed;
    }
    let connected = false;
    const timer = setTimeout(() => {
      sock.destroy(
        Object.assign(new Error(`connect to ${conn.dst.ip}:${conn.dst.port} timed out`), {
          code: 'ETIMEDOUT',
        }),
      );
    }, UPSTREAM_CONNECT_TIMEOUT_MS);
    sock.once('connect', () => {
      connected = true;
      clearTimeout(timer);
    });
    sock.once('close', () => clearTimeout(timer));
    sock.once('error', () => {
      if (!connected) m.upstreamErrors.inc({ direction });
    });
    sock.connect({ host: conn.dst.ip, port: conn.dst.port });
    return sock;
  }

  /**
   * The upstream through the main thread's tunnel: the peer node's proxy connects to the server
   * from the client's address and a port of UPSTREAM_PORTS (not one of the client's, as above),
   * marked with the identity the tunnel's certificate proved. Failing to open the tunnel closes the
   * socket before any answer: the request gets the handler's upstream error (fail closed). (The
   * socket connects at once: the HTTP engine's connect timeout does not cover the tunnel; the main
   * thread gives up on an unanswered CONNECT after UPSTREAM_CONNECT_TIMEOUT_MS.)
   */
  #viaTunnel(conn: ProxiedConnection, tunnel: TunnelRoute): Socket {
    const m = this.#o.metrics;
    const direction = conn.direction;
    let port = 0;
    for (let i = 0; i < 16 && !port; i++) {
      const p =
        UPSTREAM_PORTS.min + Math.floor(Math.random() * (UPSTREAM_PORTS.max - UPSTREAM_PORTS.min + 1));
      if (!this.#clients.has(conn.src.ip, p)) port = p;
    }
    const sock = tunnel.connect({ ip: conn.src.ip, port: port || UPSTREAM_PORTS.min }, conn.dst);
    // The main thread bounds the wait for the tunnel's answer (tunnel.ts #carry).
    let answered = false;
    sock.once('data', () => (answered = true));
    sock.once('close', () => {
      if (!answered) m.upstreamErrors.inc({ direction });
    });
    return sock;
  }

  async close(): Promise<void> {
    this.#reaper.close();
    for (const l of this.#listening.values()) for (const s of l.servers) s.close();
    this.#listening.clear();
    await this.dns.close();
    await this.#handler.close();
  }
}
