// Running synchronous code inside a named network namespace (ip netns add <name>).
//
// setns(2) moves only the calling thread, so withNetns switches the main JS thread, runs `fn`,
// and switches back before returning or throwing. Everything `fn` does must finish before it
// returns: netlink calls through libbpf (tc), if_nametoindex and other synchronous syscalls are
// fine; promises, timers, sockets and fs callbacks are not, because they run later (or on
// libuv's thread pool) in whatever namespace their thread is in. A fn returning a promise is
// refused.
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { BpfError, ERR_BPF_NOT_FOUND, ERR_BPF_STATE, bpfErrorFrom } from './errors.js';
import { lastErrno, libcFns } from './libbpf.js';

const CLONE_NEWNET = 0x40000000;
export const netnsDir = '/var/run/netns';

export function withNetns<T>(nsName: string, fn: () => T): T {
  if (!/^[A-Za-z0-9_.-]+$/.test(nsName)) {
    throw new BpfError(ERR_BPF_NOT_FOUND, `invalid network namespace name '${nsName}'`, {
      location: { object: nsName },
    });
  }
  let target: number;
  try {
    target = openSync(join(netnsDir, nsName), 'r');
  } catch (err) {
    throw new BpfError(ERR_BPF_NOT_FOUND, `network namespace '${nsName}' does not exist`, {
      location: { file: join(netnsDir, nsName), object: nsName },
      cause: err,
    });
  }
  let self = -1;
  try {
    self = openSync('/proc/thread-self/ns/net', 'r');
    if (libcFns.setns(target, CLONE_NEWNET) < 0) throw bpfErrorFrom(lastErrno(), `setns into '${nsName}'`);
    let result: T;
    try {
      result = fn();
    } finally {
      if (libcFns.setns(self, CLONE_NEWNET) < 0) {
        // The main thread would stay in the wrong namespace: nothing after this can be trusted.
        process.stderr.write(
          `weir: cannot return from network namespace '${nsName}' (errno ${lastErrno()})\n`,
        );
        process.abort();
      }
    }
    if (result instanceof Promise) {
      throw new BpfError(
        ERR_BPF_STATE,
        `withNetns('${nsName}'): fn must be synchronous, it returned a promise`,
      );
    }
    return result;
  } finally {
    if (self >= 0) closeSync(self);
    closeSync(target);
  }
}

/** The ifindex of `ifname` inside network namespace `nsName`. */
export function ifindexIn(nsName: string, ifname: string): number {
  const idx = withNetns(nsName, () => libcFns.if_nametoindex(ifname));
  if (!idx) {
    throw new BpfError(ERR_BPF_NOT_FOUND, `no interface '${ifname}' in network namespace '${nsName}'`, {
      location: { object: nsName, field: ifname },
    });
  }
  return idx;
}

const SIOCGIFHWADDR = 0x8927;
const IFNAMSIZ = 16;

/** The hardware (MAC) address of `ifname` inside network namespace `nsName`, aa:bb:cc:dd:ee:ff. */
export function macIn(nsName: string, ifname: string): string {
  return withNetns(nsName, () => macHere(ifname, nsName));
}

/**
 * macIn for the network namespace the calling thread is in (inside withNetns, or a caller's own
 * setns): no namespace switch. `nsName` only names it in errors.
 */
export function macHere(ifname: string, nsName = 'current netns'): string {
  if (Buffer.byteLength(ifname) >= IFNAMSIZ)
    throw new BpfError(ERR_BPF_NOT_FOUND, `'${ifname}' is not an interface name`, {
      location: { object: nsName, field: ifname },
    });
  const ifreq = Buffer.alloc(40); // struct ifreq: name[16], then struct sockaddr ifr_hwaddr
  ifreq.write(ifname, 0, 'utf8');
  const err = (() => {
    const fd = libcFns.socket(2 /* AF_INET */, 2 /* SOCK_DGRAM */, 0);
    if (fd < 0) return lastErrno();
    try {
      return libcFns.ioctl(fd, SIOCGIFHWADDR, ifreq) < 0 ? lastErrno() : 0;
    } finally {
      libcFns.close(fd);
    }
  })();
  if (err) {
    const e = bpfErrorFrom(err, `reading the MAC address of '${ifname}' in network namespace '${nsName}'`);
    throw e.errnoName === 'ENODEV'
      ? new BpfError(ERR_BPF_NOT_FOUND, `no interface '${ifname}' in network namespace '${nsName}'`, {
          location: { object: nsName, field: ifname },
          cause: e,
        })
      : e;
  }
  return [...ifreq.subarray(18, 24)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
