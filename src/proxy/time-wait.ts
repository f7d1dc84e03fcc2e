// TIME_WAIT sockets of the proxy's transparent accepted connections, removed as they appear.
//
// A pod's connection the datapath hands to a transparent listener (bpf_sk_assign: the mTLS
// tunnel's outbound listener, tunnel.ts) is accepted in the node's namespace under the pod's own
// tuple (pod ip:port <-> destination ip:port). When that socket closes first (the far server's FIN
// relayed to the pod, or both closing at once) the kernel keeps a TIME_WAIT socket of the tuple in
// the node's namespace, for 60 s. The pod knows nothing of it and reuses its port; its next SYN
// of the tuple, assigned to the listener, bypasses the stack's TIME_WAIT handling and the kernel
// refuses to queue a request socket duplicating an existing tuple (inet_ehash_insert): the SYN
// is dropped and the pod waits for its retransmit (1 s, then 3 s …). The pod keeps its own
// TIME_WAIT of its connections as TCP wants; the node's is a proxy's copy, so it goes.
//
// How: NETLINK_SOCK_DIAG, the interface of `ss -K`. The exact tuple is looked up
// (SOCK_DIAG_BY_FAMILY, one socket), and only when that socket is in TIME_WAIT is it destroyed
// (SOCK_DESTROY, naming its cookie, so nothing else with the tuple can be hit). Needs CAP_NET_ADMIN
// (the proxy runs as root) and a kernel whose tcp_abort() takes TIME_WAIT sockets; where any of it
// fails the reaper stops trying (counted), and the old behaviour stays: a retransmitted SYN.
import koffi from 'koffi';
import { isIPv6 } from 'node:net';
import { libc as c, AF_INET, AF_INET6, SOCK_CLOEXEC, SOCK_RAW } from '../shared/libc.js';

const AF_NETLINK = 16;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const SOCK_DESTROY = 21;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 1;
const NLM_F_ACK = 4;
const IPPROTO_TCP = 6;
const TCP_TIME_WAIT = 6;
/** Closing states of an orphaned socket on its way to TIME_WAIT: FIN_WAIT1, FIN_WAIT2, CLOSING. */
const CLOSING_STATES = new Set([4, 5, 11]);
/** When the socket was still closing (Node let go of it before the pod's FIN): look again. */
const RETRY_MS = [20, 100, 500, 2000];
const MSG_DONTWAIT = 0x40;
const NLMSG_HDR = 16;
/** struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 bytes). */
const REQ_LEN = 56;

export interface Endpoint {
  ip: string;
  port: number;
}

export interface ReaperCounts {
  /** TIME_WAIT sockets destroyed. */
  reaped: number;
  /** Lookups that found no TIME_WAIT socket of the tuple (the other side closed first). */
  none: number;
  /** Netlink failures (the reaper stops after the first). */
  failed: number;
}

function ipBytes(ip: string): Buffer {
  if (!isIPv6(ip)) return Buffer.from(ip.split('.').map(Number));
  const b = Buffer.alloc(16);
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = ip.includes('::') && tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

export class TimeWaitReaper {
  #fd = -1;
  #seq = 0;
  #off = false;
  readonly counts: ReaperCounts = { reaped: 0, none: 0, failed: 0 };
  readonly #buf = Buffer.alloc(8192);

  /**
   * Removes the TIME_WAIT socket of this tuple in the caller's namespace, if there is one (local:
   * the socket's own address, for a transparent accepted socket the pod's destination). A socket
   * still closing (FIN_WAIT, CLOSING: the pod's FIN not in yet) is looked at again a little later.
   * Returns whether one was removed now; never throws.
   */
  reap(local: Endpoint, remote: Endpoint, attempt = 0): boolean {
    if (this.#off) return false;
    try {
      const family = isIPv6(local.ip.replace(/^::ffff:/, '')) ? AF_INET6 : AF_INET;
      const l = { ip: local.ip.replace(/^::ffff:/, ''), port: local.port };
      const r = { ip: remote.ip.replace(/^::ffff:/, ''), port: remote.port };
      const found = this.#ask(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, family, l, r, undefined);
      if (found?.state !== undefined && CLOSING_STATES.has(found.state) && attempt < RETRY_MS.length) {
        setTimeout(() => this.reap(local, remote, attempt + 1), RETRY_MS[attempt]).unref();
        return false;
      }
      if (found === undefined || found.state !== TCP_TIME_WAIT) {
        this.counts.none++;
        return false;
      }
      const done = this.#ask(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, family, l, r, found.cookie);
      if (done?.error === 0) {
        this.counts.reaped++;
        return true;
      }
      this.counts.none++;
      return false;
    } catch {
      this.counts.failed++;
      this.close();
      this.#off = true;
      return false;
    }
  }

  /** One request, one answer: a socket's state and cookie, an error code (0: ack), or nothing. */
  #ask(
    type: number,
    flags: number,
    family: number,
    local: Endpoint,
    remote: Endpoint,
    cookie: Buffer | undefined,
  ): { state?: number; cookie: Buffer; error?: number } | undefined {
    if (this.#fd < 0) {
      this.#fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
      if (this.#fd < 0) throw new Error(`netlink socket: errno ${koffi.errno()}`);
    }
    const seq = ++this.#seq;
    const m = Buffer.alloc(NLMSG_HDR + REQ_LEN);
    m.writeUInt32LE(m.length, 0);
    m.writeUInt16LE(type, 4);
    m.writeUInt16LE(flags, 6);
    m.writeUInt32LE(seq, 8);
    const q = NLMSG_HDR;
    m.writeUInt8(family, q);
    m.writeUInt8(IPPROTO_TCP, q + 1);
    m.writeUInt32LE(0xffffffff, q + 4); // every state
    const id = q + 8;
    m.writeUInt16BE(local.port, id);
    m.writeUInt16BE(remote.port, id + 2);
    ipBytes(local.ip).copy(m, id + 4);
    ipBytes(remote.ip).copy(m, id + 20);
    // interface 0 (any); the cookie: the socket's, or INET_DIAG_NOCOOKIE
    if (cookie) cookie.copy(m, id + 40);
    else m.fill(0xff, id + 40, id + 48);
    const nl = Buffer.alloc(12);
    nl.writeUInt16LE(AF_NETLINK, 0);
    if (c.sendto(this.#fd, m, m.length, 0, nl, nl.length) < 0)
      throw new Error(`netlink send: errno ${koffi.errno()}`);
    // The kernel answers inside sendto; anything older than this request is skipped.
    for (;;) {
      const n = c.recv(this.#fd, this.#buf, this.#buf.length, MSG_DONTWAIT);
      if (n < 0) return undefined;
      for (let o = 0; o + NLMSG_HDR <= n;) {
        const len = this.#buf.readUInt32LE(o);
        const t = this.#buf.readUInt16LE(o + 4);
        const s = this.#buf.readUInt32LE(o + 8);
        if (len < NLMSG_HDR) return undefined;
        if (s === seq) {
          if (t === NLMSG_ERROR)
            return { error: -this.#buf.readInt32LE(o + NLMSG_HDR), cookie: Buffer.alloc(0) };
          // struct inet_diag_msg: family, state, timer, retrans, inet_diag_sockid (cookie at +40)
          const p = o + NLMSG_HDR;
          return {
            state: this.#buf.readUInt8(p + 1),
            cookie: Buffer.from(this.#buf.subarray(p + 4 + 40, p + 4 + 48)),
          };
        }
        o += (len + 3) & ~3;
      }
    }
  }

  close(): void {
    if (this.#fd >= 0) c.close(this.#fd);
    this.#fd = -1;
  }
}
