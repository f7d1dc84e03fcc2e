// Transparent sockets for the node proxy, made through libc (koffi): Node cannot set
// IP_TRANSPARENT, IPV6_TRANSPARENT or SO_MARK itself. The fds are handed to Node
// (net.Server.listen({ fd }), new net.Socket({ fd })), which owns them from then on.
//
//   listener({ family, port, reusePort })
//                                 0.0.0.0:port or [::]:port (v6 only), IP(V6)_TRANSPARENT, listening:
//                                 the target of bpf_sk_assign (bpf/lib/proxy.h); an accepted
//                                 socket's local address is the connection's original destination.
//                                 reusePort: SO_REUSEPORT, one listener per proxy worker in one
//                                 group (the kernel picks a group member per connection, see
//                                 workers.ts).
//   upstream({ src, mark, avoid }) bound to src:<a port of UPSTREAM_PORTS> with IP(V6)_TRANSPARENT
//                                 (src is the original client, not an address of this node) and
//                                 SO_MARK `mark` (the datapath tells the proxy's own traffic by
//                                 it); not connected yet: wrap it in net.Socket({ fd }) and
//                                 connect(). Ports in `avoid` are not taken (see server.ts).
// Both are non-blocking and close-on-exec. Errors are ERR_PROXY_SOCKET with the errno's name.
import koffi from 'koffi';
import { isIPv6 } from 'node:net';
import { errnoName } from '../bpf/index.js';
import { WeirError } from '../shared/errors.js';
import {
  libc as c,
  AF_INET,
  AF_INET6,
  SOCK_STREAM,
  SOCK_NONBLOCK,
  SOCK_CLOEXEC,
  SOL_SOCKET,
  SOL_IP,
  SOL_IPV6,
} from '../shared/libc.js';

const SO_REUSEADDR = 2;
const SO_REUSEPORT = 15;
const SO_MARK = 36;
const IP_TRANSPARENT = 19;
const IPV6_V6ONLY = 26;
const IPV6_TRANSPARENT = 75;

function fail(what: string): WeirError {
  const errno = koffi.errno();
  return new WeirError('ERR_PROXY_SOCKET', `${what}: ${errnoName(errno)}`, { details: { errno } });
}

function int(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

function setopt(fd: number, level: number, name: number, value: number, what: string): void {
  if (c.setsockopt(fd, level, name, int(value), 4) < 0) throw fail(what);
}

/** struct sockaddr_in / sockaddr_in6 for `ip` (v4 dotted or v6 text) and `port`. */
export function sockaddr(ip: string, port: number): Buffer {
  if (!isIPv6(ip)) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    const parts = ip.split('.').map(Number);
    if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255))
      throw new WeirError('ERR_PROXY_SOCKET', `'${ip}' is not an IP address`);
    parts.forEach((n, i) => (b[4 + i] = n));
    return b;
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  ipv6Bytes(ip).copy(b, 8);
  return b;
}

function ipv6Bytes(ip: string): Buffer {
  let text = ip;
  const out = Buffer.alloc(16);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, cc, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((cc << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new WeirError('ERR_PROXY_SOCKET', `'${ip}' is not an IPv6 address`);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function newSocket(family: 4 | 6): number {
  const fd = c.socket(family === 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw fail('socket');
  return fd;
}

function transparent(fd: number, family: 4 | 6): void {
  if (family === 4) setopt(fd, SOL_IP, IP_TRANSPARENT, 1, 'setsockopt IP_TRANSPARENT');
  else setopt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, 'setsockopt IPV6_TRANSPARENT');
}

/** The local port the kernel bound `fd` to. */
export function boundPort(fd: number): number {
  const b = Buffer.alloc(28);
  const len: [number] = [28];
  if (c.getsockname(fd, b, len) < 0) throw fail('getsockname');
  return b.readUInt16BE(2);
}

export function closeFd(fd: number): void {
  c.close(fd);
}

/** A transparent listening socket on every address of `family`, `port`. */
export function listener(o: { family: 4 | 6; port: number; backlog?: number; reusePort?: boolean }): number {
  const fd = newSocket(o.family);
  try {
    setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'setsockopt SO_REUSEADDR');
    if (o.reusePort) setopt(fd, SOL_SOCKET, SO_REUSEPORT, 1, 'setsockopt SO_REUSEPORT');
    transparent(fd, o.family);
    if (o.family === 6) setopt(fd, SOL_IPV6, IPV6_V6ONLY, 1, 'setsockopt IPV6_V6ONLY');
    const addr = sockaddr(o.family === 4 ? '0.0.0.0' : '::', o.port);
    if (c.bind(fd, addr, addr.length) < 0)
      throw fail(`bind ${o.family === 4 ? '0.0.0.0' : '[::]'}:${o.port}`);
    if (c.listen(fd, o.backlog ?? 1024) < 0) throw fail('listen');
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

/**
 * Source ports of upstream connections: below Linux's ephemeral range (32768-60999, what a pod's
 * own client sockets use) and above the proxy's listener ports, so an upstream from a pod's
 * address never takes the port of one of that pod's connections (when both ends of a connection
 * filter on this node, the ingress listener would otherwise accept a second socket with the very
 * tuple of one the egress listener holds). Taken at random; after UPSTREAM_PORT_TRIES ports in
 * use, the kernel picks one.
 */
export const UPSTREAM_PORTS = { min: 20001, max: 32767 } as const;
const UPSTREAM_PORT_TRIES = 16;
const EADDRINUSE = 98;

/**
 * A socket bound to `src` (any address, transparently) and a port of UPSTREAM_PORTS that is not
 * one of `avoid` (the kernel's choice if none is free within a few tries), marked with SO_MARK
 * `mark`, ready for connect().
 */
export function upstream(o: {
  src: string;
  mark: number;
  avoid?: (port: number) => boolean;
  /** A port tried first (the mTLS tunnel's: the client's own, so the tuple is the client's). */
  prefer?: number;
}): number {
  const family = isIPv6(o.src) ? 6 : 4;
  const fd = newSocket(family);
  try {
    transparent(fd, family);
    setopt(fd, SOL_SOCKET, SO_MARK, o.mark, 'setsockopt SO_MARK');
    if (o.prefer) {
      const addr = sockaddr(o.src, o.prefer);
      if (c.bind(fd, addr, addr.length) === 0) return fd;
    }
    for (let i = 0; i <= UPSTREAM_PORT_TRIES; i++) {
      const last = i === UPSTREAM_PORT_TRIES;
      const port = last
        ? 0
        : UPSTREAM_PORTS.min + Math.floor(Math.random() * (UPSTREAM_PORTS.max - UPSTREAM_PORTS.min + 1));
      if (!last && o.avoid?.(port)) continue;
      const addr = sockaddr(o.src, port);
      if (c.bind(fd, addr, addr.length) === 0) return fd;
      if (last || koffi.errno() !== EADDRINUSE) throw fail(`bind ${o.src}:${port}`);
    }
    throw fail(`bind ${o.src}`);
  } catch (err) {
    c.close(fd);
    throw err;
  }
}
