// The libc calls weir makes through koffi, declared once: sockets created where the caller stands
// (a pod's network namespace and cgroup, a transparent proxy socket, a raw capture) — what Node's
// own sockets cannot do. Each returns -1 on failure with errno in koffi.errno().
import koffi from 'koffi';

const lib = koffi.load('libc.so.6');

/** struct iovec and struct msghdr, for recvmsg (the DNS proxy reads the original destination). */
export const iovec = koffi.struct('weir_iovec', { iov_base: 'void *', iov_len: 'size_t' });
export const msghdr = koffi.struct('weir_msghdr', {
  msg_name: 'void *',
  msg_namelen: 'uint32_t',
  msg_iov: koffi.pointer(iovec),
  msg_iovlen: 'size_t',
  msg_control: 'void *',
  msg_controllen: 'size_t',
  msg_flags: 'int',
});

export const libc = {
  socket: lib.func('int socket(int domain, int type, int protocol)') as (
    d: number,
    t: number,
    p: number,
  ) => number,
  setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)') as (
    fd: number,
    level: number,
    name: number,
    value: Buffer,
    len: number,
  ) => number,
  getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *val, _Inout_ uint32_t *len)') as (
    fd: number,
    level: number,
    name: number,
    val: Buffer,
    len: number[],
  ) => number,
  bind: lib.func('int bind(int fd, const void *addr, uint32_t len)') as (
    fd: number,
    a: Buffer,
    l: number,
  ) => number,
  listen: lib.func('int listen(int fd, int backlog)') as (fd: number, backlog: number) => number,
  connect: lib.func('int connect(int fd, const void *addr, uint32_t len)') as (
    fd: number,
    a: Buffer,
    l: number,
  ) => number,
  getsockname: lib.func('int getsockname(int fd, void *addr, _Inout_ uint32_t *len)') as (
    fd: number,
    a: Buffer,
    l: number[],
  ) => number,
  recv: lib.func('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)') as (
    fd: number,
    buf: Buffer,
    len: number,
    flags: number,
  ) => number,
  recvfrom: lib.func(
    'intptr_t recvfrom(int fd, void *buf, size_t len, int flags, void *addr, _Inout_ uint32_t *alen)',
  ) as (
    fd: number,
    buf: Buffer,
    len: number,
    flags: number,
    addr: Buffer | null,
    alen: number[] | null,
  ) => number,
  recvmsg: lib.func('recvmsg', 'intptr_t', ['int', koffi.inout(koffi.pointer(msghdr)), 'int']) as (
    fd: number,
    msg: Record<string, unknown>,
    flags: number,
  ) => number,
  sendto: lib.func(
    'intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t alen)',
  ) as (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer | null, alen: number) => number,
  close: lib.func('int close(int fd)') as (fd: number) => number,
  setns: lib.func('int setns(int fd, int nstype)') as (fd: number, type: number) => number,
  if_nametoindex: lib.func('unsigned int if_nametoindex(const char *name)') as (name: string) => number,
};

// Socket constants (Linux, x86-64 and arm64 alike).
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_PACKET = 17;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SOL_IP = 0;
export const SOL_IPV6 = 41;
