// The DNS proxy's UDP sockets, through libc (koffi): Node's dgram can neither set IP_TRANSPARENT
// nor read a datagram's original destination (IP_RECVORIGDSTADDR), and both are needed.
//
//   udpListener(port)            0.0.0.0:port, IP_TRANSPARENT + IP_RECVORIGDSTADDR, blocking with a
//                                receive timeout: the datapath assigns a pod's DNS datagrams to it
//                                (bpf/lib/proxy.h); a worker thread (udp-worker.ts) reads it.
//   recvFrom(fd, buf)            one datagram: its bytes, the client and the original destination.
//   sendFrom(src, dst, payload)  a reply that leaves from the original destination (the DNS
//                                server's address and port), as if the server had sent it: a
//                                transparent socket bound there, kept for the next replies.
import koffi from 'koffi';
import { errnoName } from '../../bpf/index.js';
import { WeirError } from '../../shared/errors.js';
import { sockaddr } from '../transparent.js';
import {
  libc as c,
  iovec,
  AF_INET,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_CLOEXEC,
  SOL_SOCKET,
  SOL_IP,
} from '../../shared/libc.js';

const SO_REUSEADDR = 2;
const SO_RCVBUF = 8;
const SO_RCVTIMEO = 20;
const IP_TRANSPARENT = 19;
const IP_RECVORIGDSTADDR = 20;
const IP_ORIGDSTADDR = 20;
export const EAGAIN = 11;
export const EINTR = 4;

function fail(what: string): WeirError {
  const errno = koffi.errno();
  return new WeirError('ERR_PROXY_SOCKET', `${what}: ${errnoName(errno)}`, { details: { errno } });
}

function setopt(fd: number, level: number, name: number, value: Buffer, what: string): void {
  if (c.setsockopt(fd, level, name, value, value.length) < 0) throw fail(what);
}

const int = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
};

/** The DNS proxy's UDP socket on 0.0.0.0:port (blocking; receives time out after `timeoutMs`). */
export function udpListener(port: number, timeoutMs = 500): number {
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw fail('socket');
  try {
    setopt(fd, SOL_SOCKET, SO_REUSEADDR, int(1), 'setsockopt SO_REUSEADDR');
    setopt(fd, SOL_IP, IP_TRANSPARENT, int(1), 'setsockopt IP_TRANSPARENT');
    setopt(fd, SOL_IP, IP_RECVORIGDSTADDR, int(1), 'setsockopt IP_RECVORIGDSTADDR');
    setopt(fd, SOL_SOCKET, SO_RCVBUF, int(4 << 20), 'setsockopt SO_RCVBUF');
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
    tv.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
    setopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 'setsockopt SO_RCVTIMEO');
    const addr = sockaddr('0.0.0.0', port);
    if (c.bind(fd, addr, addr.length) < 0) throw fail(`bind 0.0.0.0:${port}/udp`);
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

export interface Endpoint4 {
  ip: string;
  port: number;
}

export interface Datagram {
  data: Buffer;
  src: Endpoint4;
  /** The original destination (the DNS server the pod asked). */
  dst: Endpoint4;
}

function endpointOf(b: Buffer, off = 0): Endpoint4 {
  return { ip: `${b[off + 4]}.${b[off + 5]}.${b[off + 6]}.${b[off + 7]}`, port: b.readUInt16BE(off + 2) };
}

/** Per-thread receive buffers (native memory, reused). */
export class Receiver {
  private readonly data = koffi.alloc('uint8_t', 65536);
  private readonly name = koffi.alloc('uint8_t', 16);
  private readonly control = koffi.alloc('uint8_t', 256);
  private readonly iov = koffi.alloc(iovec, 1);

  constructor(private readonly fd: number) {
    koffi.encode(this.iov, iovec, { iov_base: this.data, iov_len: 65536 });
  }

  /** One datagram, or a negative errno (EAGAIN on the receive timeout). */
  receive(): Datagram | number {
    const msg = {
      msg_name: this.name,
      msg_namelen: 16,
      msg_iov: this.iov,
      msg_iovlen: 1,
      msg_control: this.control,
      msg_controllen: 256,
      msg_flags: 0,
    };
    const n = c.recvmsg(this.fd, msg, 0);
    if (n < 0) return -koffi.errno();
    const data = Buffer.from(koffi.view(this.data, n)).subarray(0, n);
    const name = Buffer.from(koffi.view(this.name, 16));
    const clen = Number(msg.msg_controllen);
    const control = Buffer.from(koffi.view(this.control, Math.min(clen, 256)));
    let dst: Endpoint4 | undefined;
    // struct cmsghdr { size_t len; int level; int type; } then the data, 8-byte aligned.
    for (let off = 0; off + 16 <= control.length;) {
      const len = Number(control.readBigUInt64LE(off));
      if (len < 16) break;
      if (control.readInt32LE(off + 8) === SOL_IP && control.readInt32LE(off + 12) === IP_ORIGDSTADDR)
        dst = endpointOf(control, off + 16);
      off += (len + 7) & ~7;
    }
    return { data: Buffer.from(data), src: endpointOf(name), dst: dst ?? { ip: '0.0.0.0', port: 0 } };
  }
}

/** Reply sockets kept per source address (the DNS servers the pods ask): few, reused. */
const replySockets = new Map<string, { fd: number; used: number }>();
const MAX_REPLY_SOCKETS = 64;
/** A reply socket unused this long is closed (it holds the server's address and port bound). */
const REPLY_IDLE_MS = 10_000;
let lastSweep = 0;

function openReplySocket(src: Endpoint4): number {
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw fail('socket');
  try {
    setopt(fd, SOL_SOCKET, SO_REUSEADDR, int(1), 'setsockopt SO_REUSEADDR');
    setopt(fd, SOL_IP, IP_TRANSPARENT, int(1), 'setsockopt IP_TRANSPARENT');
    const from = sockaddr(src.ip, src.port);
    if (c.bind(fd, from, from.length) < 0) throw fail(`bind ${src.ip}:${src.port}/udp`);
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

/**
 * Sends `payload` to `dst` from `src` (any address: IP_TRANSPARENT), on a socket bound there and
 * kept for the next reply from the same address (closed after 10 s unused, at most 64 kept).
 */
export function sendFrom(src: Endpoint4, dst: Endpoint4, payload: Buffer): void {
  const now = Date.now();
  if (now - lastSweep > REPLY_IDLE_MS / 2) {
    lastSweep = now;
    for (const [k, v] of replySockets)
      if (now - v.used > REPLY_IDLE_MS) {
        c.close(v.fd);
        replySockets.delete(k);
      }
  }
  const key = `${src.ip}:${src.port}`;
  let s = replySockets.get(key);
  if (!s) {
    s = { fd: openReplySocket(src), used: now };
    replySockets.set(key, s);
    if (replySockets.size > MAX_REPLY_SOCKETS) {
      const [oldest, o] = replySockets.entries().next().value as [string, { fd: number }];
      c.close(o.fd);
      replySockets.delete(oldest);
    }
  }
  s.used = now;
  const to = sockaddr(dst.ip, dst.port);
  if (c.sendto(s.fd, payload, payload.length, 0, to, to.length) < 0) {
    const err = fail(`sendto ${dst.ip}:${dst.port}`);
    // Not kept after a failure: the next reply opens a fresh one.
    c.close(s.fd);
    replySockets.delete(key);
    throw err;
  }
}

/** Closes the kept reply sockets (the proxy's listeners close). */
export function closeReplySockets(): void {
  for (const v of replySockets.values()) c.close(v.fd);
  replySockets.clear();
}

export function closeUdp(fd: number): void {
  c.close(fd);
}
