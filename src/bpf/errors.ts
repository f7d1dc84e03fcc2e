// Errors of the kernel interface. Callers branch on `code` (like cilium/ebpf's ErrKeyNotExist
// sentinels); `errno`/`errnoName` keep the kernel's own answer for logs and rarer cases.
import { constants } from 'node:os';
import { WeirError, type ErrorCode, type ErrorLocation } from '../shared/errors.js';

export const ERR_BPF_KEY_NOT_EXIST = 'ERR_BPF_KEY_NOT_EXIST';
export const ERR_BPF_KEY_EXIST = 'ERR_BPF_KEY_EXIST';
export const ERR_BPF_VERIFIER = 'ERR_BPF_VERIFIER';
export const ERR_BPF_SYSCALL = 'ERR_BPF_SYSCALL';
export const ERR_BPF_CODEC = 'ERR_BPF_CODEC';
export const ERR_BPF_NOT_FOUND = 'ERR_BPF_NOT_FOUND';
/** Using an object after close(), or changing a spec after load(). */
export const ERR_BPF_STATE = 'ERR_BPF_STATE';
/** A layout mirrored in TypeScript differs from the compiled object's BTF. */
export const ERR_BPF_LAYOUT = 'ERR_BPF_LAYOUT';

const errnoNames = new Map<number, string>();
for (const [name, num] of Object.entries(constants.errno)) {
  // Linux aliases (EWOULDBLOCK=EAGAIN, EDEADLOCK=EDEADLK): keep the first, canonical name.
  if (!errnoNames.has(num)) errnoNames.set(num, name);
}
// Kernel-internal codes that leak out of bpf(2); node does not know them.
errnoNames.set(524, 'ENOTSUPP');

export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

export class BpfError extends WeirError {
  /** Positive errno, 0 when the error did not come from the kernel. */
  readonly errno: number;
  readonly errnoName: string;

  constructor(
    code: ErrorCode,
    message: string,
    opts: {
      errno?: number;
      location?: ErrorLocation;
      cause?: unknown;
      details?: Record<string, unknown>;
    } = {},
  ) {
    super(code, message, opts);
    this.name = 'BpfError';
    this.errno = Math.abs(opts.errno ?? 0);
    this.errnoName = this.errno ? errnoName(this.errno) : '';
  }
}

/** A program the verifier rejected. `message` is a short summary; `log` is the verifier's full output. */
export class VerifierError extends BpfError {
  readonly log: string;
  readonly program: string;

  constructor(program: string, errno: number, log: string, location: ErrorLocation = {}) {
    super(ERR_BPF_VERIFIER, `program '${program}' rejected by the verifier: ${summarizeLog(log)}`, {
      errno,
      location: { ...location, object: program },
    });
    this.name = 'VerifierError';
    this.log = log;
    this.program = program;
  }
}

/**
 * The last meaningful lines of a verifier log: the kernel ends with the reason, followed by
 * statistics ("processed N insns ...", "verification time") that say nothing about the cause.
 */
export function summarizeLog(log: string, maxLines = 3): string {
  const noise = /^(processed \d+ insns|verification time|stack depth|-- (BEGIN|END) PROG LOAD LOG --)/;
  const lines = log
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !noise.test(l));
  return lines.slice(-maxLines).join(' | ') || '(empty verifier log)';
}

/**
 * The one place that turns a libbpf/kernel failure into a BpfError: `ret` is libbpf's negative
 * return code (or a positive errno). ENOENT/EEXIST become the key sentinels only when `op` is a
 * map element operation, where they mean exactly that.
 */
export function bpfErrorFrom(
  ret: number,
  op: string,
  opts: { location?: ErrorLocation; elementOp?: boolean; details?: Record<string, unknown> } = {},
): BpfError {
  const errno = Math.abs(ret);
  const name = errnoName(errno);
  let code: ErrorCode = ERR_BPF_SYSCALL;
  if (opts.elementOp && name === 'ENOENT') code = ERR_BPF_KEY_NOT_EXIST;
  else if (opts.elementOp && name === 'EEXIST') code = ERR_BPF_KEY_EXIST;
  const what =
    code === ERR_BPF_KEY_NOT_EXIST ? 'key does not exist' : code === ERR_BPF_KEY_EXIST ? 'key exists' : '';
  return new BpfError(code, `${op}: ${what || describeErrno(errno)} (${name})`, {
    errno,
    location: opts.location ?? {},
    details: opts.details ?? {},
  });
}

function describeErrno(errno: number): string {
  switch (errnoName(errno)) {
    case 'EPERM':
      return 'operation not permitted (needs root / CAP_BPF and CAP_NET_ADMIN)';
    case 'ENOENT':
      return 'no such file, object or entry';
    case 'EINVAL':
      return 'invalid argument';
    case 'E2BIG':
      return 'map is full or argument too big';
    case 'ENOTSUPP':
    case 'EOPNOTSUPP':
      return 'not supported by this kernel or map type';
    case 'EBADF':
      return 'bad file descriptor (object closed?)';
    case 'EEXIST':
      return 'already exists';
    case 'ENOSPC':
      return 'no space left';
    case 'EACCES':
      return 'permission denied';
    default:
      return `error ${errno}`;
  }
}
