// The pod workload host: ONE process per lab node serving the workloads of all its pods (a
// process per pod cost ~9 MiB and ~80 ms each). For each pod it serves:
//   - the pod's declared ports, on sockets opened INSIDE the pod: the host enters the pod's
//     cgroup and network namespace, calls socket() through libc (sock.ts), and goes back; TCP:
//     HTTP 200 naming the pod, or echo; UDP: echo;
//   - the pod's own control socket (the path a per-pod workload had, same protocol: ping, probe, dns),
//     and its probes are made from sockets opened the same way, so the datapath, the socket LB
//     and policy see the pod's address, netns and cgroup, exactly as from a process of the pod.
// Entering a pod is synchronous (cgroup.procs write, setns, socket(), setns): no other code of this
// process runs meanwhile, so nothing else is created in a pod's netns; the host stays in the last
// pod's cgroup until the end of the event loop turn (see enterCgroup); the only inet sockets it
// opens are the pods' own, each inside its pod (unix control sockets are no cgroup hook's concern).
//
// The host's own control socket takes JSON lines: {"op":"ping"}, {"op":"add","netns","config","log"}
// (serve a pod, or serve it anew when its config changed), {"op":"has","name"}, {"op":"remove","name"}. Started,
// found and stopped by host-client.ts; it lives in its own cgroup under the lab's, so removing
// the lab's cgroups ends it.
import { appendFileSync, closeSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import koffi from 'koffi';
import { DnsServer } from '../../dns/server.js';
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
import {
  EAGAIN,
  SockError,
  clientSocket,
  closeFd,
  answerDatagrams,
  echoDatagrams,
  errnoName,
  recv,
  send,
  serverSocket,
  setns,
  socketError,
  startConnect,
} from './sock.js';

export interface HostConfig {
  name: string;
  socket: string;
  /** The host's own cgroup (joined at start, and returned to after entering a pod's). */
  cgroup: string;
}

export type HostRequest =
  | { id?: number; op: 'ping' }
  | { id?: number; op: 'add'; netns: string; config: WorkloadConfig; log: string }
  | { id?: number; op: 'remove'; name: string }
  | { id?: number; op: 'has'; name: string };

export type HostReply =
  { id?: number; ok: true; pid: number; pods?: number } | { id?: number; ok: false; error: string };

const cfg = JSON.parse(process.argv[2] ?? '{}') as HostConfig;
const log = (msg: string) => process.stdout.write(`${new Date().toISOString()} ${cfg.name}: ${msg}\n`);
const maxProbeMs = 30_000;
const homeNetns = openSync('/proc/self/ns/net', 'r');
const pid = String(process.pid);
writeFileSync(`${cfg.cgroup}/cgroup.procs`, pid);

interface Hosted {
  config: WorkloadConfig;
  key: string;
  nsFd: number;
  servers: Server[];
  udp: { fd: number; poll: koffi.node.PollHandle }[];
  control: Server;
  /** The cluster DNS pod's server (its zone file followed). */
  dns?: DnsServer;
}
const pods = new Map<string, Hosted>();
const udpBuf = Buffer.alloc(65536);

/** Runs `fn` in the pod's cgroup and netns (synchronously), then back home whatever happens. */
function inPod<T>(p: { nsFd: number; config: WorkloadConfig }, fn: () => T): T {
  if (p.config.cgroup) enterCgroup(p.config.cgroup);
  setns(p.nsFd);
  try {
    return fn();
  } finally {
    setns(homeNetns);
  }
}

// Moving the process between cgroups is the costly part of entering a pod (the kernel waits for
// an RCU grace period each time). The host goes from pod to pod as requests come and returns home
// once, when the current turn of the event loop is over (setImmediate): many adds or probes
// arriving together cost one move each plus one. It never waits inside a pod: a pod being
// removed sends the host home at once (removePod), before the pod's cgroup can be killed.
let inCgroup: string | undefined;
let homeScheduled = false;
function enterCgroup(cgroup: string): void {
  if (inCgroup !== cgroup) {
    writeFileSync(`${cgroup}/cgroup.procs`, pid);
    inCgroup = cgroup;
  }
  if (!homeScheduled) {
    homeScheduled = true;
    setImmediate(goHome);
  }
}
function goHome(): void {
  homeScheduled = false;
  if (inCgroup === undefined) return;
  writeFileSync(`${cfg.cgroup}/cgroup.procs`, pid);
  inCgroup = undefined;
}

/**
 * koffi.node.poll, with the callback koffi really makes: (status, events) — its typings name only
 * the events. A failed poll (status < 0) is reported as a disconnect.
 */
function watchFd(
  fd: number,
  opts: koffi.IKoffiPollOptions,
  cb: (ev: koffi.IKoffiPollEvents) => void,
): koffi.node.PollHandle {
  return koffi.node.poll(fd, opts, wrapPoll(cb));
}
function wrapPoll(cb: (ev: koffi.IKoffiPollEvents) => void): (ev: koffi.IKoffiPollEvents) => void {
  const real = (status: number, ev: koffi.IKoffiPollEvents | undefined) =>
    cb(status < 0 || !ev ? { readable: false, writable: false, disconnect: true } : ev);
  return real as unknown as (ev: koffi.IKoffiPollEvents) => void;
}

function elapsed(start: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - start) / 1e4) / 100;
}

/** One non-blocking exchange on a pod socket, ended by `done` (closes the poll and the fd). */
function exchange(
  p: Hosted,
  ip: string,
  protocol: 'TCP' | 'UDP',
  timeoutMs: number,
  body: (
    fd: number,
    finish: (r: Omit<ProbeResult, 'ms'>) => void,
    watch: (opts: koffi.IKoffiPollOptions) => void,
  ) => { watch: koffi.IKoffiPollOptions; onEvent: (ev: koffi.IKoffiPollEvents) => void },
): Promise<ProbeResult> {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => {
    let fd: number;
    try {
      fd = inPod(p, () => clientSocket(ip, protocol));
    } catch (err) {
      resolve({ ok: false, error: err instanceof SockError ? err.code : String(err), ms: elapsed(start) });
      return;
    }
    let poll: koffi.node.PollHandle | undefined;
    let ended = false;
    const finish = (r: Omit<ProbeResult, 'ms'>) => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      poll?.close();
      closeFd(fd);
      resolve({ ...r, ms: elapsed(start) });
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'ETIMEDOUT' }), timeoutMs);
    let onEvent: (ev: koffi.IKoffiPollEvents) => void = () => undefined;
    const watch = (opts: koffi.IKoffiPollOptions) => {
      if (!ended) poll?.start(opts, wrapPoll(onEvent));
    };
    try {
      const b = body(fd, finish, watch);
      onEvent = b.onEvent;
      if (!ended) poll = watchFd(fd, b.watch, onEvent);
    } catch (err) {
      finish({ ok: false, error: err instanceof SockError ? err.code : String(err) });
    }
  });
}

function probeTcp(
  p: Hosted,
  ip: string,
  port: number,
  timeoutMs: number,
  http: boolean,
): Promise<ProbeResult> {
  return exchange(p, ip, 'TCP', timeoutMs, (fd, finish, watch) => {
    startConnect(fd, ip, port);
    let state: 'connecting' | 'reading' = 'connecting';
    const chunks: Buffer[] = [];
    const onEvent = (ev: koffi.IKoffiPollEvents) => {
      if (state === 'connecting') {
        const err = socketError(fd);
        if (err) return finish({ ok: false, error: err });
        if (!http) return finish({ ok: true });
        send(fd, Buffer.from(`GET / HTTP/1.1\r\nHost: ${ip}\r\nConnection: close\r\n\r\n`));
        state = 'reading';
        return watch({ readable: true });
      }
      if (!ev.readable && !ev.disconnect) return;
      for (;;) {
        const buf = Buffer.alloc(16384);
        const n = recv(fd, buf);
        if (n === -EAGAIN) return;
        if (n < 0) return finish({ ok: false, error: errnoName(-n) });
        if (n === 0) {
          const text = Buffer.concat(chunks).toString();
          const [head = '', ...rest] = text.split('\r\n\r\n');
          const ok = /^HTTP\/1\.[01] 200 /.test(head);
          return finish(ok ? { ok, body: rest.join('\r\n\r\n') } : { ok, error: 'EBADRESPONSE' });
        }
        chunks.push(buf.subarray(0, n));
      }
    };
    return { watch: { writable: true }, onEvent };
  });
}

/**
 * One HTTP/1.1 request (L7 conformance) on a new connection from inside the pod, the answer read by
 * its framing (http-answer.ts). A connect that does not complete is ETIMEDOUT, an answer that does
 * not come ERESPONSETIMEOUT, and `connected` tells them apart (dropped vs an answer that never came).
 */
function probeHttp(
  p: Hosted,
  ip: string,
  port: number,
  timeoutMs: number,
  req: HttpProbeRequest,
): Promise<ProbeResult> {
  const responseMs = req.responseTimeoutMs ?? 5000;
  let connected = false;
  // exchange()'s own timer only bounds the whole; the two timeouts are told apart here.
  return exchange(p, ip, 'TCP', timeoutMs + responseMs, (fd, finish, watch) => {
    let timer: NodeJS.Timeout | undefined;
    const end = (r: Omit<ProbeResult, 'ms'>) => {
      clearTimeout(timer);
      finish({ ...r, connected });
    };
    timer = setTimeout(() => end({ ok: false, error: 'ETIMEDOUT' }), timeoutMs);
    startConnect(fd, ip, port);
    let buf = Buffer.alloc(0);
    const onEvent = (ev: koffi.IKoffiPollEvents) => {
      if (!connected) {
        const err = socketError(fd);
        if (err) return end({ ok: false, error: err });
        connected = true;
        clearTimeout(timer);
        timer = setTimeout(() => end({ ok: false, error: 'ERESPONSETIMEOUT' }), responseMs);
        send(fd, httpRequestBytes(req));
        return watch({ readable: true });
      }
      if (!ev.readable && !ev.disconnect) return;
      for (;;) {
        const chunk = Buffer.alloc(16384);
        const n = recv(fd, chunk);
        if (n === -EAGAIN) return;
        if (n < 0) return end({ ok: false, error: errnoName(-n) });
        if (n === 0) return end(readHttpAnswer(buf, true) ?? { ok: false, error: 'EBADRESPONSE' });
        buf = Buffer.concat([buf, chunk.subarray(0, n)]);
        const r = readHttpAnswer(buf, false);
        if (r) return end(r);
      }
    };
    return { watch: { writable: true }, onEvent };
  });
}

function probeUdp(p: Hosted, ip: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  const payload = Buffer.from(`weir-probe ${process.pid} ${process.hrtime.bigint()}`);
  return exchange(p, ip, 'UDP', timeoutMs, (fd, finish) => {
    // A connected socket sees ICMP port-unreachable as ECONNREFUSED instead of a timeout.
    startConnect(fd, ip, port);
    const n = send(fd, payload);
    if (n < 0) finish({ ok: false, error: errnoName(-n) });
    const buf = Buffer.alloc(2048);
    const onEvent = (ev: koffi.IKoffiPollEvents) => {
      if (!ev.readable && !ev.disconnect) return;
      for (;;) {
        const r = recv(fd, buf);
        if (r === -EAGAIN) return;
        if (r < 0) return finish({ ok: false, error: errnoName(-r) });
        if (buf.subarray(0, r).equals(payload)) return finish({ ok: true });
      }
    };
    return { watch: { readable: true }, onEvent };
  });
}

/**
 * One DNS query from inside the pod (dns-probe.ts): UDP, a datagram on a connected socket; TCP, a
 * new connection with the framed query. `ok` once the answer to this query's id comes (its rcode
 * and addresses reported); a query with no answer is ETIMEDOUT, as a drop is.
 */
function probeDns(
  p: Hosted,
  ip: string,
  port: number,
  protocol: 'TCP' | 'UDP',
  timeoutMs: number,
  query: DnsProbeQuery,
): Promise<ProbeResult> {
  const id = dnsQueryId();
  const tcp = protocol === 'TCP';
  const bytes = dnsQueryBytes(query, id, tcp);
  return exchange(p, ip, protocol, timeoutMs, (fd, finish, watch) => {
    startConnect(fd, ip, port);
    let connected = !tcp;
    let buf = Buffer.alloc(0);
    if (!tcp) {
      const n = send(fd, bytes);
      if (n < 0) finish({ ok: false, error: errnoName(-n) });
    }
    const onEvent = (ev: koffi.IKoffiPollEvents) => {
      if (!connected) {
        const err = socketError(fd);
        if (err) return finish({ ok: false, error: err });
        connected = true;
        const n = send(fd, bytes);
        if (n < 0) return finish({ ok: false, error: errnoName(-n) });
        return watch({ readable: true });
      }
      if (!ev.readable && !ev.disconnect) return;
      for (;;) {
        const chunk = Buffer.alloc(65536);
        const n = recv(fd, chunk);
        if (n === -EAGAIN) return;
        if (n < 0) return finish({ ok: false, error: errnoName(-n) });
        if (n === 0 && tcp) return finish({ ok: false, error: 'ECONNRESET' });
        // UDP: each datagram is a message of its own; TCP: the stream so far.
        buf = tcp ? Buffer.concat([buf, chunk.subarray(0, n)]) : chunk.subarray(0, n);
        const r = readDnsAnswer(buf, id, tcp);
        if (r) return finish(r);
      }
    };
    return { watch: tcp ? { writable: true } : { readable: true }, onEvent };
  });
}

async function handlePod(p: Hosted, req: ControlRequest): Promise<ControlReply> {
  if (req.op === 'ping') return { id: req.id, ok: true, name: p.config.name, pid: process.pid };
  if (req.op === 'dns') {
    const timeoutMs = Math.min(Math.max(Number(req.timeoutMs ?? 1000), 1), maxProbeMs);
    const r = await probeDns(p, req.ip, req.port, req.protocol, timeoutMs, req.query);
    return { id: req.id, ...r };
  }
  if (req.op === 'probe') {
    const timeoutMs = Math.min(Math.max(Number(req.timeoutMs ?? 1000), 1), maxProbeMs);
    const r =
      req.protocol === 'UDP'
        ? await probeUdp(p, req.ip, req.port, timeoutMs)
        : req.request
          ? await probeHttp(p, req.ip, req.port, timeoutMs, req.request)
          : await probeTcp(p, req.ip, req.port, timeoutMs, req.http === true);
    return { id: req.id, ...r };
  }
  return { id: (req as { id?: number }).id, ok: false, error: `unknown op ${(req as { op?: string }).op}` };
}

function removePod(name: string): void {
  const p = pods.get(name);
  if (!p) return;
  if (inCgroup === p.config.cgroup) goHome();
  pods.delete(name);
  p.dns?.close();
  for (const s of p.servers) s.close();
  for (const u of p.udp) {
    u.poll.close();
    closeFd(u.fd);
  }
  p.control.close();
  rmSync(p.config.socket, { force: true });
  closeSync(p.nsFd);
}

/** Serves a pod (again, when its config changed). Sockets first: a pod answering ping takes traffic. */
function addPod(netns: string, config: WorkloadConfig, logPath: string): void {
  // A pod made anew under the same name is another netns: served anew even with the same config.
  const key = `${statSync(`/var/run/netns/${netns}`).ino} ${JSON.stringify(config)}`;
  if (pods.get(config.name)?.key === key) return;
  removePod(config.name);
  const nsFd = openSync(`/var/run/netns/${netns}`, 'r');
  const p = { config, key, nsFd, servers: [], udp: [] } as unknown as Hosted;
  try {
    const fds = inPod(p, () => {
      const out: { fd: number; protocol: 'TCP' | 'UDP' }[] = [];
      try {
        for (const port of config.ports)
          out.push({ fd: serverSocket(port.port, port.protocol), protocol: port.protocol });
      } catch (err) {
        for (const o of out) closeFd(o.fd);
        throw err;
      }
      return out;
    });
    // The lab's cluster DNS pod (config.dns) answers DNS on 53 from the agent's zone file.
    const dns = config.dns ? new DnsServer() : undefined;
    if (dns && config.dns) {
      dns.followZoneFile(config.dns.zoneFile, (msg) =>
        appendFileSync(logPath, `${new Date().toISOString()} ${config.name}: ${msg}\n`, { mode: 0o600 }),
      );
      p.dns = dns;
    }
    for (const [i, { fd, protocol }] of fds.entries()) {
      const isDns = dns !== undefined && config.ports[i]?.port === 53;
      if (protocol === 'TCP')
        p.servers.push(
          createServer((s) => (isDns ? dns.serveTcp(s) : serveTcpConnection(s, config.name))).listen({ fd }),
        );
      else
        p.udp.push({
          fd,
          poll: watchFd(fd, { readable: true }, () =>
            isDns ? answerDatagrams(fd, udpBuf, (m) => dns.datagram(m)) : echoDatagrams(fd, udpBuf),
          ),
        });
    }
    p.control = serveLines<ControlRequest, ControlReply>(config.socket, (req) => handlePod(p, req));
  } catch (err) {
    p.dns?.close();
    for (const s of p.servers) s.close();
    for (const u of p.udp) {
      u.poll.close();
      closeFd(u.fd);
    }
    closeSync(nsFd);
    throw err;
  }
  pods.set(config.name, p);
  const served = config.ports.map((x) => `${x.port}/${x.protocol}`).join(' ') || 'no ports';
  // Written off the host's thread (a file open per pod: ~0.4 ms of the host's time, under load).
  appendFile(
    logPath,
    `${new Date().toISOString()} ${config.name}: serving ${served}, control ${config.socket} (host ${process.pid})\n`,
    { mode: 0o600 },
  ).catch((err: unknown) => log(`${config.name}: log ${logPath} not written: ${String(err)}`));
}

serveLines<HostRequest, HostReply>(cfg.socket, (req) => {
  if (req.op === 'ping') return { id: req.id, ok: true, pid: process.pid, pods: pods.size };
  if (req.op === 'add') {
    addPod(req.netns, req.config, req.log);
    return { id: req.id, ok: true, pid: process.pid };
  }
  if (req.op === 'has')
    return pods.has(req.name)
      ? { id: req.id, ok: true, pid: process.pid }
      : { id: req.id, ok: false, error: `${req.name} is not served` };
  if (req.op === 'remove') {
    removePod(req.name);
    return { id: req.id, ok: true, pid: process.pid };
  }
  return { id: (req as { id?: number }).id, ok: false, error: `unknown op ${(req as { op?: string }).op}` };
});
log(`hosting pod workloads, control ${cfg.socket}`);
for (const sig of ['SIGTERM', 'SIGINT'] as const)
  process.on(sig, () => {
    for (const name of [...pods.keys()]) removePod(name);
    rmSync(cfg.socket, { force: true });
    process.exit(0);
  });
