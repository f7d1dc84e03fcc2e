// tc (clsact) attachment through libbpf's netlink helpers. These act on the calling thread's
// network namespace: pass `netns` (a name from `ip netns`) to run inside one via withNetns.
// An attached filter holds the program in the kernel until detachTc, destroyClsact, or the
// device going away; closing the BpfProgram does not detach it.
import { bpfErrorFrom, errnoName } from './errors.js';
import { BpfTcHook, BpfTcOpts, libbpf } from './libbpf.js';
import { withNetns } from './netns.js';
import type { BpfProgram } from './program.js';

const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;

export type TcDirection = 'ingress' | 'egress';

export interface TcTarget {
  ifindex: number;
  direction: TcDirection;
  /** tc filter priority (default 1). */
  priority?: number;
  /** tc filter handle (default 1). */
  handle?: number;
  /** Network namespace name; default: the current one. */
  netns?: string;
}

function inNs<T>(netns: string | undefined, fn: () => T): T {
  return netns === undefined ? fn() : withNetns(netns, fn);
}

function hook(ifindex: number, attachPoint: number): Buffer {
  const h = BpfTcHook.alloc();
  BpfTcHook.i32(h, 'ifindex', ifindex);
  BpfTcHook.i32(h, 'attach_point', attachPoint);
  return h;
}

function tcOpts(t: TcTarget, progFd = 0, flags = 0): Buffer {
  const o = BpfTcOpts.alloc();
  BpfTcOpts.i32(o, 'prog_fd', progFd);
  BpfTcOpts.u32(o, 'flags', flags);
  BpfTcOpts.u32(o, 'handle', t.handle ?? 1);
  BpfTcOpts.u32(o, 'priority', t.priority ?? 1);
  return o;
}

function where(t: TcTarget): { object: string; field: string } {
  return { object: `${t.netns ?? 'current netns'} ifindex ${t.ifindex}`, field: t.direction };
}

/**
 * Attaches `program` (SCHED_CLS) as a direct-action filter, creating the clsact qdisc if
 * missing. Re-attaching at the same handle/priority replaces the filter atomically (no window
 * without a program). Returns the attached program's id.
 */
export function attachTc(t: TcTarget & { program: BpfProgram }): number {
  const point = t.direction === 'ingress' ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  const progFd = t.program.fd;
  return inNs(t.netns, () => {
    const h = hook(t.ifindex, point);
    const c = libbpf.tc_hook_create(h);
    if (c < 0 && errnoName(c) !== 'EEXIST')
      throw bpfErrorFrom(c, 'create clsact qdisc', { location: where(t) });
    const o = tcOpts(t, progFd, BPF_TC_F_REPLACE);
    const r = libbpf.tc_attach(h, o);
    if (r < 0)
      throw bpfErrorFrom(r, `attach '${t.program.name}' to tc ${t.direction}`, { location: where(t) });
    return BpfTcOpts.u32(o, 'prog_id');
  });
}

/** Removes the filter at handle/priority; false when there was none. */
export function detachTc(t: TcTarget): boolean {
  const point = t.direction === 'ingress' ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  return inNs(t.netns, () => {
    const r = libbpf.tc_detach(hook(t.ifindex, point), tcOpts(t));
    if (r === 0) return true;
    if (errnoName(r) === 'ENOENT') return false;
    throw bpfErrorFrom(r, `detach tc ${t.direction}`, { location: where(t) });
  });
}

/** The id of the program attached at handle/priority, or undefined. */
export function queryTc(t: TcTarget): number | undefined {
  const point = t.direction === 'ingress' ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  return inNs(t.netns, () => {
    const o = tcOpts(t);
    const r = libbpf.tc_query(hook(t.ifindex, point), o);
    if (r === 0) return BpfTcOpts.u32(o, 'prog_id');
    // No filter, or no clsact qdisc at all.
    if (errnoName(r) === 'ENOENT' || errnoName(r) === 'EINVAL') return undefined;
    throw bpfErrorFrom(r, `query tc ${t.direction}`, { location: where(t) });
  });
}

/** Deletes the clsact qdisc of a device and with it every tc filter on both directions. */
export function destroyClsact(ifindex: number, netns?: string): void {
  inNs(netns, () => {
    const r = libbpf.tc_hook_destroy(hook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS));
    // ENOENT/EINVAL: there was no clsact qdisc, which is the state we want.
    if (r < 0 && errnoName(r) !== 'ENOENT' && errnoName(r) !== 'EINVAL') {
      throw bpfErrorFrom(r, 'destroy clsact qdisc', { location: { object: `ifindex ${ifindex}` } });
    }
  });
}
