// cgroup v2 attachment (bpf_prog_attach on a cgroup directory). Attachments hold the program in
// the kernel until detachCgroup or the cgroup's removal; closing the BpfProgram does not detach.
import { closeSync, openSync } from 'node:fs';
import { BpfError, ERR_BPF_NOT_FOUND, bpfErrorFrom, errnoName } from './errors.js';
import { libbpf } from './libbpf.js';
import type { BpfProgram } from './program.js';

/** enum bpf_attach_type values (linux/bpf.h) for cgroup hooks. */
export const CgroupAttachType = {
  ingress: 0,
  egress: 1,
  sock_create: 2,
  sock_ops: 3,
  bind4: 8,
  bind6: 9,
  connect4: 10,
  connect6: 11,
  post_bind4: 12,
  post_bind6: 13,
  sendmsg4: 14,
  sendmsg6: 15,
  recvmsg4: 19,
  recvmsg6: 20,
  getpeername4: 29,
  getpeername6: 30,
  getsockname4: 31,
  getsockname6: 32,
  sock_release: 34,
} as const;
export type CgroupAttachTypeName = keyof typeof CgroupAttachType;

const BPF_F_ALLOW_OVERRIDE = 1;
const BPF_F_ALLOW_MULTI = 2;

export interface CgroupTarget {
  /** A cgroup v2 directory, e.g. /sys/fs/cgroup/unified/weir-x. */
  cgroupPath: string;
  attachType: CgroupAttachTypeName;
}

/** Cgroup directories held open by onCgroup (path → fd). */
const held = new Map<string, number>();

/**
 * Runs `fn` with the cgroup directory opened once: the attach, detach and query calls it makes on
 * that path use the one descriptor (otherwise each opens and closes the directory).
 */
export function onCgroup<T>(path: string, fn: () => T): T {
  if (held.has(path)) return fn();
  return withCgroup(path, (fd) => {
    held.set(path, fd);
    try {
      return fn();
    } finally {
      held.delete(path);
    }
  });
}

function withCgroup<T>(path: string, fn: (fd: number) => T): T {
  const open = held.get(path);
  if (open !== undefined) return fn(open);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new BpfError(ERR_BPF_NOT_FOUND, `cgroup ${path} cannot be opened`, {
      location: { file: path },
      cause: err,
    });
  }
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Attaches `program` to the cgroup. flags: 'multi' (several programs run in order, and
 * sub-cgroups may add theirs), 'override' (a sub-cgroup may replace it), or none (exclusive).
 */
export function attachCgroup(t: CgroupTarget & { program: BpfProgram; flags?: 'multi' | 'override' }): void {
  const flags = t.flags === 'multi' ? BPF_F_ALLOW_MULTI : t.flags === 'override' ? BPF_F_ALLOW_OVERRIDE : 0;
  const progFd = t.program.fd;
  withCgroup(t.cgroupPath, (fd) => {
    const r = libbpf.prog_attach(progFd, fd, CgroupAttachType[t.attachType], flags);
    if (r < 0) {
      throw bpfErrorFrom(r, `attach '${t.program.name}' to cgroup ${t.attachType}`, {
        location: { file: t.cgroupPath, field: t.attachType },
      });
    }
  });
}

/** Detaches `program` from the cgroup hook; false when it was not attached. */
export function detachCgroup(t: CgroupTarget & { program: BpfProgram }): boolean {
  const progFd = t.program.fd;
  return withCgroup(t.cgroupPath, (fd) => {
    const r = libbpf.prog_detach2(progFd, fd, CgroupAttachType[t.attachType]);
    if (r === 0) return true;
    if (errnoName(r) === 'ENOENT') return false;
    throw bpfErrorFrom(r, `detach '${t.program.name}' from cgroup ${t.attachType}`, {
      location: { file: t.cgroupPath, field: t.attachType },
    });
  });
}

/** Ids of the programs attached directly to this cgroup hook (not inherited ones). */
export function queryCgroup(t: CgroupTarget): { progIds: number[]; attachFlags: number } {
  return withCgroup(t.cgroupPath, (fd) => {
    const max = 64;
    const ids = Buffer.alloc(4 * max);
    const cnt: [number] = [max];
    const flags: [number] = [0];
    const r = libbpf.prog_query(fd, CgroupAttachType[t.attachType], 0, flags, ids, cnt);
    if (r < 0) {
      throw bpfErrorFrom(r, `query cgroup ${t.attachType}`, {
        location: { file: t.cgroupPath, field: t.attachType },
      });
    }
    return {
      progIds: Array.from({ length: cnt[0] }, (_, i) => ids.readUInt32LE(4 * i)),
      attachFlags: flags[0],
    };
  });
}
