// A loaded BPF program. Programs from BpfObject.program() are borrowed (they die with the object);
// BpfProgram.fromPin/fromId own their fd. Attachments (tc, cgroup) hold their own reference in
// the kernel: closing a program does not detach it.
import { closeSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { BpfError, ERR_BPF_STATE, bpfErrorFrom } from './errors.js';
import { BpfProgInfo, BpfTestRunOpts, cString, libbpf, stableBuffer } from './libbpf.js';

/** enum bpf_prog_type (linux/bpf.h), the types weir uses. */
export const ProgType = {
  socket_filter: 1,
  sched_cls: 3,
  sched_act: 4,
  xdp: 6,
  cgroup_skb: 8,
  cgroup_sock: 9,
  sock_ops: 13,
  cgroup_sock_addr: 18,
} as const;

export interface TestRunOptions {
  /** The packet, starting at the Ethernet header for tc/XDP programs (at least 14 bytes). */
  data: Buffer;
  /**
   * Context passed in. For SCHED_CLS/SCHED_ACT it is a struct __sk_buff (build it with skbContext);
   * the kernel accepts only mark, priority, ingress_ifindex, ifindex, cb[], tstamp, wire_len,
   * gso_segs, gso_size and hwtstamp, and rejects other non-zero fields with EINVAL.
   */
  ctxIn?: Buffer;
  /** Shorthand for ctxIn = skbContext({ ifindex }): the skb then belongs to that device (current netns). */
  ifindex?: number;
  /** Runs the program this many times (default 1); durationNs is the average. */
  repeat?: number;
  /** Room for the output packet (default: input length + 256, for programs that grow the packet). */
  dataSizeOut?: number;
}

export interface TestRunResult {
  retval: number;
  /** The packet as the program left it. */
  data: Buffer;
  /** Average run time per repetition. */
  durationNs: number;
  /** The context as the program left it, when one was passed. */
  ctxOut?: Buffer;
}

/** Fields of struct __sk_buff that BPF_PROG_TEST_RUN accepts as input (linux/bpf.h offsets). */
export interface SkbContext {
  mark?: number;
  priority?: number;
  ingressIfindex?: number;
  ifindex?: number;
  cb?: number[];
  tstamp?: bigint;
  wireLen?: number;
  gsoSegs?: number;
  gsoSize?: number;
}

/** sizeof(struct __sk_buff) in linux/bpf.h of kernel 6.x. */
export const SKB_CONTEXT_SIZE = 192;

/** Offsets in struct __sk_buff of the fields skbContext() writes (checked by libbpf.test.ts). */
export const SKB_CONTEXT_OFFSETS = {
  mark: 8,
  priority: 32,
  ingress_ifindex: 36,
  ifindex: 40,
  cb: 48,
  tstamp: 152,
  wire_len: 160,
  gso_segs: 164,
  gso_size: 176,
} as const;

export function skbContext(c: SkbContext): Buffer {
  const o = SKB_CONTEXT_OFFSETS;
  const b = Buffer.alloc(SKB_CONTEXT_SIZE);
  b.writeUInt32LE(c.mark ?? 0, o.mark);
  b.writeUInt32LE(c.priority ?? 0, o.priority);
  b.writeUInt32LE(c.ingressIfindex ?? 0, o.ingress_ifindex);
  b.writeUInt32LE(c.ifindex ?? 0, o.ifindex);
  (c.cb ?? []).slice(0, 5).forEach((v, i) => b.writeUInt32LE(v, o.cb + 4 * i));
  b.writeBigUInt64LE(c.tstamp ?? 0n, o.tstamp);
  b.writeUInt32LE(c.wireLen ?? 0, o.wire_len);
  b.writeUInt32LE(c.gsoSegs ?? 0, o.gso_segs);
  b.writeUInt32LE(c.gsoSize ?? 0, o.gso_size);
  return b;
}

export class BpfProgram {
  readonly name: string;
  /** enum bpf_prog_type */
  readonly type: number;
  #fd: number;
  readonly #owned: boolean;

  /** Internal: use BpfObject.program(), fromPin or fromId. */
  constructor(fd: number, name: string, type: number, owned: boolean) {
    this.#fd = fd;
    this.name = name;
    this.type = type;
    this.#owned = owned;
  }

  static fromPin(path: string): BpfProgram {
    const fd = libbpf.obj_get(path);
    if (fd < 0) throw bpfErrorFrom(fd, `bpf_obj_get ${path}`, { location: { file: path } });
    return BpfProgram.#fromFd(fd, path);
  }

  static fromId(id: number): BpfProgram {
    const fd = libbpf.prog_get_fd_by_id(id);
    if (fd < 0) throw bpfErrorFrom(fd, `bpf_prog_get_fd_by_id ${id}`);
    return BpfProgram.#fromFd(fd, `program id ${id}`);
  }

  static #fromFd(fd: number, what: string): BpfProgram {
    try {
      const info = progInfo(fd, what);
      return new BpfProgram(fd, info.name, info.type, true);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  get fd(): number {
    if (this.#fd < 0) throw new BpfError(ERR_BPF_STATE, `program '${this.name}' is closed`);
    return this.#fd;
  }

  /** The kernel's id (what queryTc/queryCgroup report). */
  get id(): number {
    return progInfo(this.fd, this.name).id;
  }

  /** Runs the program once (or `repeat` times) on a packet, with BPF_PROG_TEST_RUN. */
  testRun(opts: TestRunOptions): TestRunResult {
    const o = BpfTestRunOpts.alloc();
    const dataIn = stableBuffer(opts.data.length);
    opts.data.copy(dataIn);
    const dataOut = stableBuffer(opts.dataSizeOut ?? opts.data.length + 256);
    const ctx =
      opts.ctxIn ?? (opts.ifindex !== undefined ? skbContext({ ifindex: opts.ifindex }) : undefined);
    const ctxIn = ctx ? stableBuffer(ctx.length) : null;
    if (ctx && ctxIn) ctx.copy(ctxIn);
    const ctxOut = ctx ? stableBuffer(ctx.length) : null;

    BpfTestRunOpts.ptr(o, 'data_in', dataIn);
    BpfTestRunOpts.u32(o, 'data_size_in', opts.data.length);
    BpfTestRunOpts.ptr(o, 'data_out', dataOut);
    BpfTestRunOpts.u32(o, 'data_size_out', dataOut.length);
    if (ctxIn && ctxOut) {
      BpfTestRunOpts.ptr(o, 'ctx_in', ctxIn);
      BpfTestRunOpts.u32(o, 'ctx_size_in', ctxIn.length);
      BpfTestRunOpts.ptr(o, 'ctx_out', ctxOut);
      BpfTestRunOpts.u32(o, 'ctx_size_out', ctxOut.length);
    }
    BpfTestRunOpts.i32(o, 'repeat', opts.repeat ?? 1);
    const r = libbpf.prog_test_run_opts(this.fd, o);
    if (r < 0)
      throw bpfErrorFrom(r, `test run of program '${this.name}'`, { location: { object: this.name } });
    const outLen = BpfTestRunOpts.u32(o, 'data_size_out');
    const res: TestRunResult = {
      retval: BpfTestRunOpts.u32(o, 'retval') | 0,
      data: Buffer.from(dataOut.subarray(0, outLen)),
      durationNs: BpfTestRunOpts.u32(o, 'duration'),
    };
    if (ctxOut) res.ctxOut = Buffer.from(ctxOut.subarray(0, BpfTestRunOpts.u32(o, 'ctx_size_out')));
    return res;
  }

  /** Pins at `path` on bpffs (parents created). The pin keeps the program loaded. */
  pin(path: string): void {
    mkdirSync(dirname(path), { recursive: true });
    const r = libbpf.obj_pin(this.fd, path);
    if (r < 0) throw bpfErrorFrom(r, `pin program '${this.name}' at ${path}`, { location: { file: path } });
  }

  static unpin(path: string): void {
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /** Closes an owned fd; a program borrowed from a BpfObject is only marked unusable. */
  close(): void {
    if (this.#fd >= 0 && this.#owned) closeSync(this.#fd);
    this.#fd = -1;
  }
}

function progInfo(fd: number, what: string): { id: number; name: string; type: number } {
  const info = BpfProgInfo.zeroed();
  const len: [number] = [BpfProgInfo.size];
  const r = libbpf.obj_get_info_by_fd(fd, info, len);
  if (r < 0) throw bpfErrorFrom(r, `bpf_obj_get_info_by_fd (${what})`);
  return {
    id: BpfProgInfo.u32(info, 'id'),
    type: BpfProgInfo.u32(info, 'type'),
    name: cString(info, BpfProgInfo.off('name'), 16),
  };
}
