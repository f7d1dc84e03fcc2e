// The built-in lab workload (one process per pod, node and external, started inside its netns):
// serves every declared port (TCP: HTTP 200 naming the pod, or echo; UDP: echo) and answers
// control requests (ping, probe, dns) on a unix socket in the lab's state directory.
import { writeFileSync, rmSync } from 'node:fs';
import { DnsServer } from '../../dns/server.js';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, connect, isIPv6, type Server } from 'node:net';
import { dnsQueryBytes, dnsQueryId, readDnsAnswer } from './dns-probe.js';
import { httpRequestBytes, readHttpAnswer } from './http-answer.js';
import type {
  ControlReply,
  ControlRequest,
  DnsProbeQuery,
  HttpProbeRequest,
  ProbeResult,
  WorkloadConfig,
} from './protocol.js';
import { serveLines } from './control-socket.js';
import { serveTcpConnection } from './serve.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as WorkloadConfig;
const log = (msg: string) => process.stdout.write(`${new Date().toISOString()} ${cfg.name}: ${msg}\n`);
const maxProbeMs = 30_000;

// Join the pod's cgroup first, so every socket below belongs to it.
if (cfg.cgroup) writeFileSync(`${cfg.cgroup}/cgroup.procs`, String(process.pid));

/** Listens on :: (dual stack), or 0.0.0.0 when the netns has IPv6 off. */
function listenTcp(port: number): Promise<Server> {
  const attempt = (host: string) =>
    new Promise<Server>((resolve, reject) => {
      const srv = createServer((sock) => serveTcpConnection(sock, cfg.name));
      srv.once('error', reject);
      srv.listen({ port, host, ipv6Only: false }, () => resolve(srv));
    });
  return attempt('::').catch(() => attempt('0.0.0.0'));
}

function listenUdp(port: number): Promise<UdpSocket> {
  const attempt = (type: 'udp6' | 'udp4', host: string) =>
    new Promise<UdpSocket>((resolve, reject) => {
      // SO_REUSEADDR, as the pod host's sockets (sock.ts): the node's DNS proxy answers a pod's
      // query from the DNS server's address on a transparent socket bound to it, which a
      // wildcard socket on the same port without it would refuse (EADDRINUSE).
      const s = createSocket({ type, ipv6Only: false, reuseAddr: true });
      s.once('error', reject);
      s.on('message', (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
      s.bind(port, host, () => resolve(s));
    });
  return attempt('udp6', '::').catch(() => attempt('udp4', '0.0.0.0'));
}

function elapsed(start: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - start) / 1e4) / 100;
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

function probeTcp(ip: string, port: number, timeoutMs: number, http: boolean): Promise<ProbeResult> {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => {
    let body = '';
    const done = (r: Omit<ProbeResult, 'ms'>) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...r, ms: elapsed(start) });
    };
    const sock = connect({ host: ip, port });
    const timer = setTimeout(() => done({ ok: false, error: 'ETIMEDOUT' }), timeoutMs);
    sock.on('error', (err) => done({ ok: false, error: errCode(err) }));
    sock.on('connect', () => {
      if (!http) return done({ ok: true });
      sock.write(`GET / HTTP/1.1\r\nHost: ${ip}\r\nConnection: close\r\n\r\n`);
    });
    sock.on('data', (d: Buffer) => (body += d.toString()));
    sock.on('end', () => {
      const [head = '', ...rest] = body.split('\r\n\r\n');
      const ok = /^HTTP\/1\.[01] 200 /.test(head);
      done(ok ? { ok, body: rest.join('\r\n\r\n') } : { ok, error: 'EBADRESPONSE' });
    });
  });
}

/** One HTTP/1.1 request on a new connection, the answer read by its framing (http-answer.ts). */
function probeHttp(ip: string, port: number, timeoutMs: number, req: HttpProbeRequest): Promise<ProbeResult> {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let connected = false;
    let settled = false;
    const done = (r: Omit<ProbeResult, 'ms' | 'connected'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...r, connected, ms: elapsed(start) });
    };
    const sock = connect({ host: ip, port });
    let timer = setTimeout(() => done({ ok: false, error: 'ETIMEDOUT' }), timeoutMs);
    sock.on('error', (err) => done({ ok: false, error: errCode(err) }));
    sock.on('connect', () => {
      connected = true;
      clearTimeout(timer);
      timer = setTimeout(() => done({ ok: false, error: 'ERESPONSETIMEOUT' }), req.responseTimeoutMs ?? 5000);
      sock.write(httpRequestBytes(req));
    });
    const parse = (ended: boolean) => {
      const r = readHttpAnswer(buf, ended);
      if (r) done(r);
    };
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      parse(false);
    });
    sock.on('end', () => parse(true));
  });
}

function probeUdp(ip: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  const start = process.hrtime.bigint();
  const payload = `weir-probe ${process.pid} ${start}`;
  return new Promise((resolve) => {
    const s = createSocket(isIPv6(ip) ? 'udp6' : 'udp4');
    // Settled once: an error, the timer and a late connect callback may all come; the socket is
    // closed once and never used after.
    let settled = false;
    const done = (r: Omit<ProbeResult, 'ms'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.close();
      resolve({ ...r, ms: elapsed(start) });
    };
    const timer = setTimeout(() => done({ ok: false, error: 'ETIMEDOUT' }), timeoutMs);
    s.on('error', (err) => done({ ok: false, error: errCode(err) }));
    s.on('message', (msg) => {
      if (msg.toString() === payload) done({ ok: true });
    });
    // A connected socket sees ICMP port-unreachable as ECONNREFUSED instead of a timeout.
    s.connect(port, ip, () => {
      if (!settled) s.send(payload, (err) => err && done({ ok: false, error: errCode(err) }));
    });
  });
}

/** One DNS query (dns-probe.ts) over UDP or a new TCP connection; no answer is ETIMEDOUT. */
function probeDns(
  ip: string,
  port: number,
  protocol: 'TCP' | 'UDP',
  timeoutMs: number,
  query: DnsProbeQuery,
): Promise<ProbeResult> {
  const start = process.hrtime.bigint();
  const id = dnsQueryId();
  const tcp = protocol === 'TCP';
  const bytes = dnsQueryBytes(query, id, tcp);
  return new Promise((resolve) => {
    let settled = false;
    let close = () => undefined as void;
    const done = (r: Omit<ProbeResult, 'ms'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      close();
      resolve({ ...r, ms: elapsed(start) });
    };
    const timer = setTimeout(() => done({ ok: false, error: 'ETIMEDOUT' }), timeoutMs);
    if (tcp) {
      let buf = Buffer.alloc(0);
      const sock = connect({ host: ip, port });
      close = () => sock.destroy();
      sock.on('error', (err) => done({ ok: false, error: errCode(err) }));
      sock.on('connect', () => sock.write(bytes));
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const r = readDnsAnswer(buf, id, true);
        if (r) done(r);
      });
      sock.on('end', () => done({ ok: false, error: 'ECONNRESET' }));
      return;
    }
    const s = createSocket(isIPv6(ip) ? 'udp6' : 'udp4');
    close = () => s.close();
    s.on('error', (err) => done({ ok: false, error: errCode(err) }));
    s.on('message', (msg) => {
      const r = readDnsAnswer(msg, id, false);
      if (r) done(r);
    });
    s.connect(port, ip, () => {
      if (!settled) s.send(bytes, (err) => err && done({ ok: false, error: errCode(err) }));
    });
  });
}

async function handle(req: ControlRequest): Promise<ControlReply> {
  if (req.op === 'ping') return { id: req.id, ok: true, name: cfg.name, pid: process.pid };
  if (req.op === 'dns') {
    const timeoutMs = Math.min(Math.max(Number(req.timeoutMs ?? 1000), 1), maxProbeMs);
    return { id: req.id, ...(await probeDns(req.ip, req.port, req.protocol, timeoutMs, req.query)) };
  }
  if (req.op === 'probe') {
    const timeoutMs = Math.min(Math.max(Number(req.timeoutMs ?? 1000), 1), maxProbeMs);
    const r =
      req.protocol === 'UDP'
        ? await probeUdp(req.ip, req.port, timeoutMs)
        : req.request
          ? await probeHttp(req.ip, req.port, timeoutMs, req.request)
          : await probeTcp(req.ip, req.port, timeoutMs, req.http === true);
    return { id: req.id, ...r };
  }
  return { id: (req as { id?: number }).id, ok: false, error: `unknown op ${(req as { op?: string }).op}` };
}

function serveControl(path: string): Promise<Server> {
  const srv = serveLines<ControlRequest, ControlReply>(path, handle);
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.once('listening', () => resolve(srv));
  });
}

/** The cluster DNS server, from the zone file the agent writes. */
async function serveDns(zoneFile: string): Promise<void> {
  const server = new DnsServer();
  server.followZoneFile(zoneFile, log);
  await server.listen(53);
}

const dnsPort = (p: { port: number }) => cfg.dns !== undefined && p.port === 53;
if (cfg.dns) await serveDns(cfg.dns.zoneFile);
// Serve the ports first: a workload answering ping is ready to take traffic.
for (const p of cfg.ports.filter((x) => !dnsPort(x))) {
  if (p.protocol === 'TCP') await listenTcp(p.port);
  else if (p.protocol === 'UDP') await listenUdp(p.port);
}
await serveControl(cfg.socket);
log(
  `serving ${cfg.ports.map((p) => `${p.port}/${p.protocol}`).join(' ') || 'no ports'}, control ${cfg.socket}`,
);
for (const sig of ['SIGTERM', 'SIGINT'] as const)
  process.on(sig, () => {
    rmSync(cfg.socket, { force: true });
    process.exit(0);
  });
