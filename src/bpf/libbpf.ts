// Internal: koffi bindings to the system's libbpf.so.1 (1.1.x) and the few libc calls we need.
// Nothing outside src/bpf/ imports this file. libbpf 1.x returns -errno from int functions and
// sets errno (read with koffi.errno()) when a pointer function returns NULL.
//
// Option structs (bpf_test_run_opts, bpf_tc_hook, ...) are declared with koffi.struct exactly as
// in /usr/include/bpf/{libbpf,bpf}.h (leading `size_t sz`, anonymous padding spelled out) and are
// only used for their size and field offsets: callers fill plain Buffers through `Layout`, which
// lets pointers inside them point at Buffers we own for the duration of the call. 64-bit hosts
// only (pointers are written as u64).
import koffi from 'koffi';

/** Opaque libbpf handles (struct bpf_object *, struct btf *, ...). */
export type Ptr = object;

const lib = koffi.load('libbpf.so.1');
const libc = koffi.load('libc.so.6');

export const PrintFn = koffi.proto('int weir_libbpf_print_fn(int level, void *fmt, void *ap)');
export const RingBufferSampleFn = koffi.proto(
  'int weir_ring_buffer_sample_fn(void *ctx, void *data, size_t size)',
);

export const libbpf = {
  set_print: lib.func('void *libbpf_set_print(weir_libbpf_print_fn *fn)') as (fn: unknown) => unknown,
  num_possible_cpus: lib.func('int libbpf_num_possible_cpus(void)') as () => number,

  object_open_file: lib.func('void *bpf_object__open_file(const char *path, void *opts)') as (
    path: string,
    opts: Buffer,
  ) => Ptr | null,
  object_load: lib.func('int bpf_object__load(void *obj)') as (obj: Ptr) => number,
  object_close: lib.func('void bpf_object__close(void *obj)') as (obj: Ptr) => void,
  object_btf: lib.func('void *bpf_object__btf(void *obj)') as (obj: Ptr) => Ptr | null,
  object_next_program: lib.func('void *bpf_object__next_program(void *obj, void *prev)') as (
    obj: Ptr,
    prev: Ptr | null,
  ) => Ptr | null,
  object_next_map: lib.func('void *bpf_object__next_map(void *obj, void *prev)') as (
    obj: Ptr,
    prev: Ptr | null,
  ) => Ptr | null,

  program_name: lib.func('const char *bpf_program__name(void *prog)') as (prog: Ptr) => string,
  program_section_name: lib.func('const char *bpf_program__section_name(void *prog)') as (
    prog: Ptr,
  ) => string,
  program_fd: lib.func('int bpf_program__fd(void *prog)') as (prog: Ptr) => number,
  program_type: lib.func('int bpf_program__type(void *prog)') as (prog: Ptr) => number,

  map_name: lib.func('const char *bpf_map__name(void *map)') as (map: Ptr) => string,
  map_fd: lib.func('int bpf_map__fd(void *map)') as (map: Ptr) => number,
  map_type: lib.func('int bpf_map__type(void *map)') as (map: Ptr) => number,
  map_key_size: lib.func('uint32_t bpf_map__key_size(void *map)') as (map: Ptr) => number,
  map_value_size: lib.func('uint32_t bpf_map__value_size(void *map)') as (map: Ptr) => number,
  map_max_entries: lib.func('uint32_t bpf_map__max_entries(void *map)') as (map: Ptr) => number,
  map_flags: lib.func('uint32_t bpf_map__map_flags(void *map)') as (map: Ptr) => number,
  map_set_max_entries: lib.func('int bpf_map__set_max_entries(void *map, uint32_t n)') as (
    map: Ptr,
    n: number,
  ) => number,
  map_reuse_fd: lib.func('int bpf_map__reuse_fd(void *map, int fd)') as (map: Ptr, fd: number) => number,
  map_is_internal: lib.func('bool bpf_map__is_internal(void *map)') as (map: Ptr) => boolean,
  map_initial_value: lib.func('void *bpf_map__initial_value(void *map, _Out_ size_t *psize)') as (
    map: Ptr,
    psize: [number],
  ) => Ptr | null,
  map_set_initial_value: lib.func('int bpf_map__set_initial_value(void *map, void *data, size_t size)') as (
    map: Ptr,
    data: Buffer,
    size: number,
  ) => number,
  map_btf_value_type_id: lib.func('uint32_t bpf_map__btf_value_type_id(void *map)') as (map: Ptr) => number,

  map_create: lib.func(
    'int bpf_map_create(int type, const char *name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, void *opts)',
  ) as (type: number, name: string | null, ks: number, vs: number, max: number, opts: Buffer) => number,
  map_update_elem: lib.func('int bpf_map_update_elem(int fd, void *key, void *value, uint64_t flags)') as (
    fd: number,
    key: Buffer,
    value: Buffer,
    flags: number,
  ) => number,
  map_lookup_elem: lib.func('int bpf_map_lookup_elem(int fd, void *key, void *value)') as (
    fd: number,
    key: Buffer,
    value: Buffer,
  ) => number,
  map_delete_elem: lib.func('int bpf_map_delete_elem(int fd, void *key)') as (
    fd: number,
    key: Buffer,
  ) => number,
  map_get_next_key: lib.func('int bpf_map_get_next_key(int fd, void *key, void *next_key)') as (
    fd: number,
    key: Buffer | null,
    next: Buffer,
  ) => number,
  map_lookup_batch: lib.func(
    'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, _Inout_ uint32_t *count, void *opts)',
  ) as (
    fd: number,
    inBatch: Buffer | null,
    outBatch: Buffer,
    keys: Buffer,
    values: Buffer,
    count: [number],
    opts: Buffer,
  ) => number,
  map_update_batch: lib.func(
    'int bpf_map_update_batch(int fd, void *keys, void *values, _Inout_ uint32_t *count, void *opts)',
  ) as (fd: number, keys: Buffer, values: Buffer, count: [number], opts: Buffer) => number,
  map_delete_batch: lib.func(
    'int bpf_map_delete_batch(int fd, void *keys, _Inout_ uint32_t *count, void *opts)',
  ) as (fd: number, keys: Buffer, count: [number], opts: Buffer) => number,

  obj_pin: lib.func('int bpf_obj_pin(int fd, const char *path)') as (fd: number, path: string) => number,
  obj_get: lib.func('int bpf_obj_get(const char *path)') as (path: string) => number,
  obj_get_opts: lib.func('int bpf_obj_get_opts(const char *path, void *opts)') as (
    path: string,
    opts: Buffer,
  ) => number,
  obj_get_info_by_fd: lib.func('int bpf_obj_get_info_by_fd(int fd, void *info, _Inout_ uint32_t *len)') as (
    fd: number,
    info: Buffer,
    len: [number],
  ) => number,
  map_get_fd_by_id: lib.func('int bpf_map_get_fd_by_id(uint32_t id)') as (id: number) => number,
  prog_get_fd_by_id: lib.func('int bpf_prog_get_fd_by_id(uint32_t id)') as (id: number) => number,

  prog_test_run_opts: lib.func('int bpf_prog_test_run_opts(int fd, void *opts)') as (
    fd: number,
    opts: Buffer,
  ) => number,
  prog_attach: lib.func('int bpf_prog_attach(int prog_fd, int target_fd, int type, uint32_t flags)') as (
    progFd: number,
    targetFd: number,
    type: number,
    flags: number,
  ) => number,
  prog_detach2: lib.func('int bpf_prog_detach2(int prog_fd, int target_fd, int type)') as (
    progFd: number,
    targetFd: number,
    type: number,
  ) => number,
  prog_query: lib.func(
    'int bpf_prog_query(int target_fd, int type, uint32_t query_flags, _Out_ uint32_t *attach_flags, void *prog_ids, _Inout_ uint32_t *prog_cnt)',
  ) as (
    targetFd: number,
    type: number,
    queryFlags: number,
    attachFlags: [number],
    ids: Buffer,
    cnt: [number],
  ) => number,

  tc_hook_create: lib.func('int bpf_tc_hook_create(void *hook)') as (hook: Buffer) => number,
  tc_hook_destroy: lib.func('int bpf_tc_hook_destroy(void *hook)') as (hook: Buffer) => number,
  tc_attach: lib.func('int bpf_tc_attach(void *hook, void *opts)') as (hook: Buffer, opts: Buffer) => number,
  tc_detach: lib.func('int bpf_tc_detach(void *hook, void *opts)') as (hook: Buffer, opts: Buffer) => number,
  tc_query: lib.func('int bpf_tc_query(void *hook, void *opts)') as (hook: Buffer, opts: Buffer) => number,

  ring_buffer_new: lib.func(
    'void *ring_buffer__new(int map_fd, weir_ring_buffer_sample_fn *cb, void *ctx, void *opts)',
  ) as (fd: number, cb: unknown, ctx: null, opts: null) => Ptr | null,
  ring_buffer_consume: lib.func('int ring_buffer__consume(void *rb)') as (rb: Ptr) => number,
  ring_buffer_epoll_fd: lib.func('int ring_buffer__epoll_fd(void *rb)') as (rb: Ptr) => number,
  ring_buffer_free: lib.func('void ring_buffer__free(void *rb)') as (rb: Ptr) => void,

  btf_parse: lib.func('void *btf__parse(const char *path, void *ext)') as (
    path: string,
    ext: null,
  ) => Ptr | null,
  btf_free: lib.func('void btf__free(void *btf)') as (btf: Ptr) => void,
  btf_find_by_name_kind: lib.func(
    'int32_t btf__find_by_name_kind(void *btf, const char *name, uint32_t kind)',
  ) as (btf: Ptr, name: string, kind: number) => number,
  btf_type_by_id: lib.func('void *btf__type_by_id(void *btf, uint32_t id)') as (
    btf: Ptr,
    id: number,
  ) => Ptr | null,
  btf_resolve_size: lib.func('int64_t btf__resolve_size(void *btf, uint32_t id)') as (
    btf: Ptr,
    id: number,
  ) => number | bigint,
  btf_name_by_offset: lib.func('const char *btf__name_by_offset(void *btf, uint32_t off)') as (
    btf: Ptr,
    off: number,
  ) => string | null,
};

export const libcFns = {
  setns: libc.func('int setns(int fd, int nstype)') as (fd: number, nstype: number) => number,
  if_nametoindex: libc.func('unsigned int if_nametoindex(const char *name)') as (name: string) => number,
  socket: libc.func('int socket(int domain, int type, int protocol)') as (
    domain: number,
    type: number,
    protocol: number,
  ) => number,
  ioctl: libc.func('int ioctl(int fd, unsigned long request, void *arg)') as (
    fd: number,
    request: number,
    arg: Buffer,
  ) => number,
  close: libc.func('int close(int fd)') as (fd: number) => number,
  mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)') as (
    addr: null,
    length: number,
    prot: number,
    flags: number,
    fd: number,
    offset: number,
  ) => Ptr | null,
  munmap: libc.func('int munmap(void *addr, size_t length)') as (addr: Ptr, length: number) => number,
  getpagesize: libc.func('int getpagesize(void)') as () => number,
  vsnprintf: libc.func('int vsnprintf(void *buf, size_t size, void *fmt, void *ap)') as (
    buf: Buffer,
    size: number,
    fmt: unknown,
    ap: unknown,
  ) => number,
};

/** The calling thread's errno, for libbpf functions that return NULL. */
export function lastErrno(): number {
  return koffi.errno();
}

/** Bytes at a native address (copied), e.g. ring buffer records or a map's initial value. */
export function readNative(ptr: unknown, len: number): Buffer {
  if (len === 0) return Buffer.alloc(0);
  return Buffer.from(koffi.view(ptr, len).slice(0));
}

/** `count` native u32 words at `ptr` (BTF records are arrays of u32), copied. */
export function readU32s(ptr: unknown, count: number): Uint32Array {
  return new Uint32Array(koffi.view(ptr, count * 4).slice(0));
}

/**
 * Memory whose address can be stored inside an option struct: a fresh ArrayBuffer always lives
 * outside V8's moving heap, so the address stays valid while the Buffer is referenced.
 */
export function stableBuffer(size: number): Buffer {
  return Buffer.from(new ArrayBuffer(Math.max(size, 1)));
}

export function addressOf(buf: Buffer | null | undefined): bigint {
  return buf ? koffi.address(buf) : 0n;
}

/** Field offsets of an option struct, from its koffi declaration. */
export class Layout {
  readonly size: number;
  constructor(private readonly type: koffi.IKoffiCType) {
    this.size = koffi.sizeof(type);
  }
  /** A zeroed struct with `sz` already set, as libbpf's LIBBPF_OPTS() does. */
  alloc(): Buffer {
    const buf = stableBuffer(this.size);
    buf.writeBigUInt64LE(BigInt(this.size), 0);
    return buf;
  }
  /** A zeroed struct for the kernel to fill (info structs have no `sz`). */
  zeroed(): Buffer {
    return stableBuffer(this.size);
  }
  off(field: string): number {
    return koffi.offsetof(this.type, field);
  }
  u32(buf: Buffer, field: string, v?: number): number {
    if (v !== undefined) buf.writeUInt32LE(v >>> 0, this.off(field));
    return buf.readUInt32LE(this.off(field));
  }
  i32(buf: Buffer, field: string, v?: number): number {
    if (v !== undefined) buf.writeInt32LE(v, this.off(field));
    return buf.readInt32LE(this.off(field));
  }
  u64(buf: Buffer, field: string, v?: bigint): bigint {
    if (v !== undefined) buf.writeBigUInt64LE(v, this.off(field));
    return buf.readBigUInt64LE(this.off(field));
  }
  /**
   * Stores target's address in the struct. The struct then keeps `target` alive: V8 may collect a
   * buffer that no JavaScript refers to any more even though the kernel is about to read it
   * (seen as intermittent EINVAL from test runs whose input buffers were freed before the call).
   */
  ptr(buf: Buffer, field: string, target: Buffer | null): void {
    buf.writeBigUInt64LE(addressOf(target), this.off(field));
    const held = pointees.get(buf) ?? new Map<string, Buffer>();
    if (target) held.set(field, target);
    else held.delete(field);
    pointees.set(buf, held);
  }
}

/** Option struct -> the buffers its pointer fields point to (kept alive as long as the struct). */
const pointees = new WeakMap<Buffer, Map<string, Buffer>>();

// From /usr/include/bpf/libbpf.h (libbpf 1.1.2).
export const BpfObjectOpenOpts = new Layout(
  koffi.struct('bpf_object_open_opts', {
    sz: 'size_t',
    object_name: 'void *',
    relaxed_maps: 'bool',
    pin_root_path: 'void *',
    _stub_attach_prog_fd: 'uint32_t',
    kconfig: 'void *',
    btf_custom_path: 'void *',
    kernel_log_buf: 'void *',
    kernel_log_size: 'size_t',
    kernel_log_level: 'uint32_t',
  }),
);

export const BpfTcHook = new Layout(
  koffi.struct('bpf_tc_hook', { sz: 'size_t', ifindex: 'int', attach_point: 'int', parent: 'uint32_t' }),
);

export const BpfTcOpts = new Layout(
  koffi.struct('bpf_tc_opts', {
    sz: 'size_t',
    prog_fd: 'int',
    flags: 'uint32_t',
    prog_id: 'uint32_t',
    handle: 'uint32_t',
    priority: 'uint32_t',
  }),
);

// From /usr/include/bpf/bpf.h (libbpf 1.1.2).
export const BpfMapCreateOpts = new Layout(
  koffi.struct('bpf_map_create_opts', {
    sz: 'size_t',
    btf_fd: 'uint32_t',
    btf_key_type_id: 'uint32_t',
    btf_value_type_id: 'uint32_t',
    btf_vmlinux_value_type_id: 'uint32_t',
    inner_map_fd: 'uint32_t',
    map_flags: 'uint32_t',
    map_extra: 'uint64_t',
    numa_node: 'uint32_t',
    map_ifindex: 'uint32_t',
  }),
);

export const BpfObjGetOpts = new Layout(
  koffi.struct('bpf_obj_get_opts', { sz: 'size_t', file_flags: 'uint32_t' }),
);

export const BpfMapBatchOpts = new Layout(
  koffi.struct('bpf_map_batch_opts', { sz: 'size_t', elem_flags: 'uint64_t', flags: 'uint64_t' }),
);

export const BpfTestRunOpts = new Layout(
  koffi.struct('bpf_test_run_opts', {
    sz: 'size_t',
    data_in: 'void *',
    data_out: 'void *',
    data_size_in: 'uint32_t',
    data_size_out: 'uint32_t',
    ctx_in: 'void *',
    ctx_out: 'void *',
    ctx_size_in: 'uint32_t',
    ctx_size_out: 'uint32_t',
    retval: 'uint32_t',
    repeat: 'int',
    duration: 'uint32_t',
    flags: 'uint32_t',
    cpu: 'uint32_t',
    batch_size: 'uint32_t',
  }),
);

// From /usr/include/linux/bpf.h: only the leading fields we read; the kernel fills as much as
// info_len allows, so the struct may be shorter than the kernel's.
export const BpfMapInfo = new Layout(
  koffi.struct('bpf_map_info', {
    type: 'uint32_t',
    id: 'uint32_t',
    key_size: 'uint32_t',
    value_size: 'uint32_t',
    max_entries: 'uint32_t',
    map_flags: 'uint32_t',
    name: koffi.array('char', 16),
    ifindex: 'uint32_t',
    btf_vmlinux_value_type_id: 'uint32_t',
    netns_dev: 'uint64_t',
    netns_ino: 'uint64_t',
    btf_id: 'uint32_t',
    btf_key_type_id: 'uint32_t',
    btf_value_type_id: 'uint32_t',
    _pad: 'uint32_t',
    map_extra: 'uint64_t',
  }),
);

export const BpfProgInfo = new Layout(
  koffi.struct('bpf_prog_info_head', {
    type: 'uint32_t',
    id: 'uint32_t',
    tag: koffi.array('uint8_t', 8),
    jited_prog_len: 'uint32_t',
    xlated_prog_len: 'uint32_t',
    jited_prog_insns: 'uint64_t',
    xlated_prog_insns: 'uint64_t',
    load_time: 'uint64_t',
    created_by_uid: 'uint32_t',
    nr_map_ids: 'uint32_t',
    map_ids: 'uint64_t',
    name: koffi.array('char', 16),
  }),
);

/** A NUL-terminated C string stored inside a struct Buffer. */
export function cString(buf: Buffer, off: number, max: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString('utf8', off, end < 0 || end > off + max ? off + max : end);
}

// libbpf's messages (warnings about maps, "failed to load object", ...). They are captured, not
// printed: `captureLibbpf` collects what one call said so errors can carry it.
const LIBBPF_INFO = 1;
const printBuf = stableBuffer(64 * 1024);
let captured: string[] | undefined;
const printCallback = koffi.register((level: number, fmt: unknown, ap: unknown): number => {
  if (level > LIBBPF_INFO && !process.env.WEIR_LIBBPF_DEBUG) return 0;
  const n = libcFns.vsnprintf(printBuf, printBuf.length, fmt, ap);
  if (n <= 0) return 0;
  const msg = printBuf.toString('utf8', 0, Math.min(n, printBuf.length - 1)).trimEnd();
  captured?.push(msg);
  // Outside a capture nobody would see it; WEIR_LIBBPF_DEBUG=1 shows everything on stderr.
  if (process.env.WEIR_LIBBPF_DEBUG) process.stderr.write(`libbpf: ${msg}\n`);
  return 0;
}, koffi.pointer(PrintFn));
libbpf.set_print(printCallback);

/** Runs `fn` (synchronous libbpf calls) and returns what libbpf printed meanwhile. */
export function captureLibbpf<T>(fn: () => T): { result: T; messages: string[] } {
  const outer = captured;
  const mine: string[] = [];
  captured = mine;
  try {
    return { result: fn(), messages: mine };
  } finally {
    captured = outer;
    outer?.push(...mine);
  }
}
