// Sockets made through libc (koffi) so that one process can open them inside many pods: a socket
// belongs to the network namespace of the thread that called socket(), and to the cgroup its
// process was in at that moment (cgroup BPF programs — the socket LB, policy hooks — judge it by
// that cgroup). Node's own sockets are created later (after a DNS look-up tick, at bind/connect),
// so they cannot be placed this way; these are created synchronously where we stand.
//
// What is done with them afterwards needs no namespace: a listening TCP socket is handed to
// net.Server (listen({fd})); UDP echo, and the probes' connect/send/recv, run here on
// non-blocking fds watched by libuv (koffi.node.poll).
import koffi from 'koffi';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { isIPv4 } from 'node:net';
import {
  libc as fn,
  AF_INET,
  AF_INET6,
  SOCK_STREAM,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_CLOEXEC,
  SOL_SOCKET,
} from '../../shared/libc.js';

const SO_REUSEADDR = 2;
const SO_ERROR = 4;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const MSG_DONTWAIT = 0x40;
export const CLONE_NEWNET = 0x40000000;

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));
/** "ECONNREFUSED" for 111. */
export const errnoName = (n: number) => errnoNames.get(n) ?? `errno ${n}`;
const errno = () => koffi.errno();
export const EAGAIN = constants.errno.EAGAIN;
const EINPROGRESS = constants.errno.EINPROGRESS;

export class SockError extends Error {
  constructor(
    readonly code: string,
    op: string,
  ) {
    super(`${op}: ${code}`);
  }
}
const fail = (op: string): never => {
  throw new SockError(errnoName(errno()), op);
};

/** Moves the calling thread into the netns behind `fd` (an open /var/run/netns/<name>). */
export function setns(fd: number): void {
  if (fn.setns(fd, CLONE_NEWNET) < 0) fail('setns');
}

/**
 * Runs `fn` with the calling thread inside the named netns (/var/run/netns/<name>), synchronously,
 * and comes back whatever happens: no await may happen inside.
 */
export function inNetns<T>(name: string, fn: () => T): T {
  const home = openSync('/proc/thread-self/ns/net', 'r');
  try {
    const target = openSync(`/var/run/netns/${name}`, 'r');
    try {
      setns(target);
    } finally {
      closeSync(target);
    }
    try {
      return fn();
    } finally {
      setns(home);
    }
  } finally {
    closeSync(home);
  }
}

/** Sets sysctls of the named netns by writing /proc/sys (which shows the writer's netns). */
export function sysctlInSync(netns: string, settings: Record<string, string | number>): void {
  inNetns(netns, () => {
    for (const [k, v] of Object.entries(settings))
      writeFileSync(`/proc/sys/${k.replaceAll('.', '/')}`, String(v));
  });
}

/** The ifindex of a device of the named netns, 0 when there is none. */
export function ifindexInSync(netns: string, ifname: string): number {
  return inNetns(netns, () => fn.if_nametoindex(ifname));
}

/** The ifindex of a device of the netns the calling thread is in, 0 when there is none. */
export const ifindexHere = (ifname: string): number => fn.if_nametoindex(ifname);

function ip6Bytes(ip: string): Buffer {
  const out = Buffer.alloc(16);
  const [head = '', tail] = ip.split('::') as [string, string | undefined];
  const words = (s: string) => (s ? s.split(':') : []);
  const h = words(head);
  const t = tail === undefined ? [] : words(tail);
  const all = [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  all.forEach((w, i) => out.writeUInt16BE(parseInt(w, 16), i * 2));
  return out;
}

/** A sockaddr_in / sockaddr_in6 for an address literal and port. */
export function sockaddr(ip: string, port: number): Buffer {
  if (isIPv4(ip)) {
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    sa.writeUInt16BE(port, 2);
    Buffer.from(ip.split('.').map(Number)).copy(sa, 4);
    return sa;
  }
  const sa = Buffer.alloc(28);
  sa.writeUInt16LE(AF_INET6, 0);
  sa.writeUInt16BE(port, 2);
  ip6Bytes(ip).copy(sa, 8);
  return sa;
}

export const familyOf = (ip: string) => (isIPv4(ip) ? AF_INET : AF_INET6);

function opened(domain: number, type: number): number {
  const fd = fn.socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail('socket');
  return fd;
}

/** A non-blocking socket for talking to `ip` (TCP or UDP), in the calling thread's netns. */
export function clientSocket(ip: string, protocol: 'TCP' | 'UDP'): number {
  return opened(familyOf(ip), protocol === 'TCP' ? SOCK_STREAM : SOCK_DGRAM);
}

/**
 * A socket bound to every address of the netns on `port`: [::] dual stack, or 0.0.0.0 where the
 * netns has IPv6 off. TCP sockets are listening.
 */
export function serverSocket(port: number, protocol: 'TCP' | 'UDP'): number {
  const type = protocol === 'TCP' ? SOCK_STREAM : SOCK_DGRAM;
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  const zero = Buffer.alloc(4);
  const attempt = (v6: boolean): number => {
    const fd = opened(v6 ? AF_INET6 : AF_INET, type);
    try {
      fn.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4);
      if (v6) fn.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, zero, 4);
      const sa = sockaddr(v6 ? '::' : '0.0.0.0', port);
      if (fn.bind(fd, sa, sa.length) < 0) fail(`bind ${port}/${protocol}`);
      if (type === SOCK_STREAM && fn.listen(fd, 511) < 0) fail(`listen ${port}`);
      return fd;
    } catch (err) {
      fn.close(fd);
      throw err;
    }
  };
  try {
    return attempt(true);
  } catch {
    return attempt(false);
  }
}

/** Starts a non-blocking connect; returns true when already connected (else wait for writable). */
export function startConnect(fd: number, ip: string, port: number): boolean {
  const sa = sockaddr(ip, port);
  if (fn.connect(fd, sa, sa.length) === 0) return true;
  if (errno() === EINPROGRESS) return false;
  return fail('connect');
}

/** The pending error of a socket (SO_ERROR), as a code, or undefined. */
export function socketError(fd: number): string | undefined {
  const v = Buffer.alloc(4);
  if (fn.getsockopt(fd, SOL_SOCKET, SO_ERROR, v, [4]) < 0) return errnoName(errno());
  const e = v.readInt32LE();
  return e === 0 ? undefined : errnoName(e);
}

/** send() on a non-blocking socket; bytes sent, or -errno. */
export function send(fd: number, buf: Buffer): number {
  const n = fn.sendto(fd, buf, buf.length, MSG_DONTWAIT, null, 0);
  return n < 0 ? -errno() : n;
}

/** recv() on a non-blocking socket; bytes read (0: end), or -errno. */
export function recv(fd: number, buf: Buffer): number {
  const n = fn.recvfrom(fd, buf, buf.length, MSG_DONTWAIT, null, null);
  return n < 0 ? -errno() : n;
}

const peer = Buffer.alloc(28);
/** Echoes every datagram waiting on a UDP socket back to its sender. */
export function echoDatagrams(fd: number, buf: Buffer): void {
  for (;;) {
    const alen = [peer.length];
    const n = fn.recvfrom(fd, buf, buf.length, MSG_DONTWAIT, peer, alen);
    if (n < 0) return; // EAGAIN: drained (or an error queued by ICMP: nothing to echo)
    fn.sendto(fd, buf, n, MSG_DONTWAIT, peer, alen[0] as number);
  }
}

/** Answers every datagram waiting on a UDP socket with `reply` of it (undefined: no answer). */
export function answerDatagrams(fd: number, buf: Buffer, reply: (msg: Buffer) => Buffer | undefined): void {
  for (;;) {
    const alen = [peer.length];
    const n = fn.recvfrom(fd, buf, buf.length, MSG_DONTWAIT, peer, alen);
    if (n < 0) return;
    const out = reply(Buffer.from(buf.subarray(0, n)));
    if (out) fn.sendto(fd, out, out.length, MSG_DONTWAIT, peer, alen[0] as number);
  }
}

export function closeFd(fd: number): void {
  fn.close(fd);
}

// rtnetlink, for a pod's own side (lo and eth0 up, addresses, routes) without an `ip` process:
// a NETLINK_ROUTE socket opened inside the pod's netns talks to that netns; the kernel answers
// each request (an ack or -errno) before send() returns, so this is synchronous.
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const RTM_NEWLINK = 16;
const RTM_NEWADDR = 20;
const RTM_NEWROUTE = 24;
const NLMSG_ERROR = 2;
const IFF_UP = 0x1;

function rtattr(type: number, data: Buffer): Buffer {
  const len = 4 + data.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  data.copy(b, 4);
  return b;
}
const u32attr = (type: number, v: number) => {
  const d = Buffer.alloc(4);
  d.writeUInt32LE(v);
  return rtattr(type, d);
};
const ipRaw = (ip: string) => (isIPv4(ip) ? Buffer.from(ip.split('.').map(Number)) : ip6Bytes(ip));

/** One rtnetlink conversation inside a netns (open it with inNetns; the socket keeps that netns). */
export class Rtnl {
  readonly #fd: number;
  #seq = 1;
  readonly #ack = Buffer.alloc(1024);

  constructor() {
    const fd = fn.socket(16 /* AF_NETLINK */, 3 /* SOCK_RAW */ | SOCK_CLOEXEC, 0 /* NETLINK_ROUTE */);
    if (fd < 0) fail('netlink socket');
    this.#fd = fd;
  }

  #request(type: number, flags: number, body: Buffer, what: string): void {
    const hdr = Buffer.alloc(16);
    const seq = this.#seq++;
    hdr.writeUInt32LE(16 + body.length, 0);
    hdr.writeUInt16LE(type, 4);
    hdr.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK | flags, 6);
    hdr.writeUInt32LE(seq, 8);
    const msg = Buffer.concat([hdr, body]);
    if (fn.sendto(this.#fd, msg, msg.length, 0, null, 0) < 0) fail(`netlink ${what}`);
    for (;;) {
      const n = fn.recvfrom(this.#fd, this.#ack, this.#ack.length, 0, null, null);
      if (n < 0) fail(`netlink ${what}`);
      if (n < 20) continue;
      if (this.#ack.readUInt16LE(4) !== NLMSG_ERROR || this.#ack.readUInt32LE(8) !== seq) continue;
      const err = this.#ack.readInt32LE(16);
      if (err < 0) throw new SockError(errnoName(-err), `netlink ${what}`);
      return;
    }
  }

  linkUp(ifindex: number): void {
    const m = Buffer.alloc(16);
    m.writeInt32LE(ifindex, 4);
    m.writeUInt32LE(IFF_UP, 8);
    m.writeUInt32LE(IFF_UP, 12);
    this.#request(RTM_NEWLINK, 0, m, `link ${ifindex} up`);
  }

  /** `ip addr add <ip>/<prefix> dev <ifindex>` (IPv6: nodad). */
  addrAdd(ifindex: number, ip: string, prefix: number): void {
    const v4 = isIPv4(ip);
    const m = Buffer.alloc(8);
    m.writeUInt8(v4 ? AF_INET : AF_INET6, 0);
    m.writeUInt8(prefix, 1);
    m.writeUInt8(v4 ? 0 : 0x02 /* IFA_F_NODAD */, 2);
    m.writeUInt32LE(ifindex, 4);
    const raw = ipRaw(ip);
    const attrs = v4 ? [rtattr(2 /* IFA_LOCAL */, raw), rtattr(1 /* IFA_ADDRESS */, raw)] : [rtattr(1, raw)];
    this.#request(
      RTM_NEWADDR,
      NLM_F_CREATE | NLM_F_EXCL,
      Buffer.concat([m, ...attrs]),
      `addr add ${ip}/${prefix}`,
    );
  }

  /** `ip route add <dst>/<len> [via <gw>] dev <oif> [scope link]` in the main table. */
  routeAdd(dst: string, len: number, oif: number, o: { via?: string; scopeLink?: boolean } = {}): void {
    const v4 = isIPv4(dst);
    const m = Buffer.alloc(12);
    m.writeUInt8(v4 ? AF_INET : AF_INET6, 0);
    m.writeUInt8(len, 1);
    m.writeUInt8(254 /* RT_TABLE_MAIN */, 4);
    m.writeUInt8(3 /* RTPROT_BOOT */, 5);
    m.writeUInt8(o.scopeLink ? 253 : 0, 6);
    m.writeUInt8(1 /* RTN_UNICAST */, 7);
    const attrs = [
      ...(len > 0 ? [rtattr(1 /* RTA_DST */, ipRaw(dst))] : []),
      ...(o.via ? [rtattr(5 /* RTA_GATEWAY */, ipRaw(o.via))] : []),
      u32attr(4 /* RTA_OIF */, oif),
    ];
    this.#request(
      RTM_NEWROUTE,
      NLM_F_CREATE | NLM_F_EXCL,
      Buffer.concat([m, ...attrs]),
      `route add ${dst}/${len}`,
    );
  }

  ifindex(name: string): number {
    return fn.if_nametoindex(name);
  }

  close(): void {
    fn.close(this.#fd);
  }
}
