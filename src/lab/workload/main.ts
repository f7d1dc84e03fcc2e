// The built-in lab workload (one process per pod, node and external, started inside its netns):
// serves every declared port (TCP: HTTP 200 naming the pod, or echo; UDP: echo) and answers
// control requests (ping, probe) on a unix socket in the lab's state directory.
import { writeFileSync, rmSync } from 'node:fs';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, connect, isIPv6, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import {
  REQUEST_ECHO_HEADER,
  type ControlReply,
  type ControlRequest,
  type HttpProbeRequest,
  type ProbeResult,
  type RequestEcho,
  type WorkloadConfig,
} from './protocol.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as WorkloadConfig;
const log = (msg: string) => process.stdout.write(`${new Date().toISOString()} ${cfg.name}: ${msg}\n`);
const httpRequestLine = /^[A-Z]{3,7} \S+ HTTP\/1\.[01]\r?\n/;
const maxProbeMs = 30_000;

// Join the pod's cgroup first, so every socket below belongs to it.
if (cfg.cgroup) writeFileSync(`${cfg.cgroup}/cgroup.procs`, String(process.pid));

function serveTcpConnection(sock: Socket): void {
  let head = Buffer.alloc(0);
  let mode: 'sniff' | 'echo' | 'http' = 'sniff';
  sock.on('error', () => sock.destroy());
  sock.on('data', (chunk: Buffer) => {
    if (mode === 'echo') return void sock.write(chunk);
    if (mode === 'http') return;
    head = Buffer.concat([head, chunk]);
    const text = head.toString('latin1');
    const firstLine = text.indexOf('\n');
    if (firstLine < 0 && head.length < 64 && /^[A-Z]{0,7}( |$)/.test(text)) return; // wait for more
    if (!httpRequestLine.test(text)) {
      mode = 'echo';
      return void sock.write(head);
    }
    if (!text.includes('\r\n\r\n') && !text.includes('\n\n')) return;
    mode = 'http';
    const body = `${cfg.name}\n`;
    const echo = Buffer.from(JSON.stringify(requestEcho(text))).toString('base64url');
    sock.end(
      `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `${REQUEST_ECHO_HEADER}: ${echo}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}

/** The request as this server received it (what L7 conformance calls `upstreamSaw`). */
function requestEcho(head: string): RequestEcho {
  const lines = head.slice(0, head.search(/\r?\n\r?\n/)).split(/\r?\n/);
  const [method = '', path = ''] = (lines[0] ?? '').split(' ');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { method, path, host: headers.host ?? '', headers };
}

/** Listens on :: (dual stack), or 0.0.0.0 when the netns has IPv6 off. */
function listenTcp(port: number): Promise<Server> {
  const attempt = (host: string) =>
    new Promise<Server>((resolve, reject) => {
      const srv = createServer(serveTcpConnection);
      srv.once('error', reject);
      srv.listen({ port, host, ipv6Only: false }, () => resolve(srv));
    });
  return attempt('::').catch(() => attempt('0.0.0.0'));
}

function listenUdp(port: number): Promise<UdpSocket> {
  const attempt = (type: 'udp6' | 'udp4', host: string) =>
    new Promise<UdpSocket>((resolve, reject) => {
      const s = createSocket({ type, ipv6Only: false });
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

/**
 * One HTTP/1.1 request on a new connection, the answer read by its framing (Content-Length,
 * chunked, or the end of the connection): a proxy answering 403 keeps the connection open.
 */
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
      const fields = [`Host: ${req.host}`, ...req.headers.map(([n, v]) => `${n}: ${v}`)];
      sock.write(`${req.method} ${req.path} HTTP/1.1\r\n${fields.map((f) => f + '\r\n').join('')}\r\n`);
    });
    const parse = (ended: boolean) => {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return ended ? done({ ok: false, error: 'EBADRESPONSE' }) : undefined;
      const head = buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
      if (!status) return done({ ok: false, error: 'EBADRESPONSE' });
      const field = (name: string) =>
        head
          .slice(1)
          .find((l) => l.toLowerCase().startsWith(name + ':'))
          ?.slice(name.length + 1)
          .trim();
      let body: Buffer = buf.subarray(end + 4);
      const length = field('content-length');
      if (length !== undefined) {
        if (body.length < Number(length)) return ended ? done({ ok: false, error: 'ETRUNCATED' }) : undefined;
        body = body.subarray(0, Number(length));
      } else if (/chunked/i.test(field('transfer-encoding') ?? '')) {
        if (!body.includes('0\r\n\r\n')) return ended ? done({ ok: false, error: 'ETRUNCATED' }) : undefined;
        body = dechunk(body);
      } else if (!ended) return;
      const echoField = field(REQUEST_ECHO_HEADER);
      let echo: RequestEcho | undefined;
      try {
        echo = echoField
          ? (JSON.parse(Buffer.from(echoField, 'base64url').toString()) as RequestEcho)
          : undefined;
      } catch {
        echo = undefined;
      }
      done({
        ok: true,
        status: Number(status[1]),
        body: body.subarray(0, 256).toString(),
        ...(echo ? { echo } : {}),
      });
    };
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      parse(false);
    });
    sock.on('end', () => parse(true));
  });
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', at);
    const size = eol < 0 ? 0 : parseInt(b.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

function probeUdp(ip: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  const start = process.hrtime.bigint();
  const payload = `weir-probe ${process.pid} ${start}`;
  return new Promise((resolve) => {
    const s = createSocket(isIPv6(ip) ? 'udp6' : 'udp4');
    const done = (r: Omit<ProbeResult, 'ms'>) => {
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
    s.connect(port, ip, () => s.send(payload));
  });
}

async function handle(req: ControlRequest): Promise<ControlReply> {
  if (req.op === 'ping') return { id: req.id, ok: true, name: cfg.name, pid: process.pid };
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
  rmSync(path, { force: true });
  const srv = createServer((sock) => {
    sock.on('error', () => sock.destroy());
    const lines = createInterface({ input: sock });
    lines.on('error', () => undefined);
    lines.on('line', (line) => {
      let req: ControlRequest;
      try {
        req = JSON.parse(line) as ControlRequest;
      } catch {
        return void sock.write(JSON.stringify({ ok: false, error: 'bad JSON' }) + '\n');
      }
      void handle(req).then((reply) => {
        if (!sock.destroyed) sock.write(JSON.stringify(reply) + '\n');
      });
    });
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(path, () => resolve(srv));
  });
}

// Serve the ports first: a workload answering ping is ready to take traffic.
for (const p of cfg.ports) {
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
