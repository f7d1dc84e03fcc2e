// Codecs: how a TypeScript value becomes the bytes of a BPF map key or value, and back.
// Every codec has a fixed size; maps check it against the kernel's key/value size once, at
// construction, so a mismatch fails loudly instead of corrupting memory. Host byte order
// (little endian on every platform weir runs on) unless the name says otherwise (be16, be32).
// Mirrors of C structs are built with cstruct() and verified with checkLayout() (btf.ts).
import { isIPv4, isIPv6 } from 'node:net';
import { BpfError, ERR_BPF_CODEC } from './errors.js';

export interface Codec<T> {
  /** Encoded size in bytes. */
  readonly size: number;
  /** C alignment, used when the codec is a cstruct field. */
  readonly align: number;
  encode(v: T, buf: Buffer, off: number): void;
  decode(buf: Buffer, off: number): T;
}

/** Bytes of a struct that carry no value; encoded as zeros, left out of the decoded object. */
export interface Padding extends Codec<undefined> {
  readonly padding: true;
}

function codecError(message: string): BpfError {
  return new BpfError(ERR_BPF_CODEC, message);
}

function intCodec(
  name: string,
  size: 1 | 2 | 4,
  signed: boolean,
  write: (buf: Buffer, v: number, off: number) => void,
  read: (buf: Buffer, off: number) => number,
): Codec<number> {
  const bits = size * 8;
  const min = signed ? -(2 ** (bits - 1)) : 0;
  const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  return {
    size,
    align: size,
    encode(v, buf, off) {
      if (!Number.isInteger(v) || v < min || v > max) throw codecError(`${name}: ${String(v)} out of range`);
      write(buf, v, off);
    },
    decode: (buf, off) => read(buf, off),
  };
}

export const u8 = (): Codec<number> =>
  intCodec(
    'u8',
    1,
    false,
    (b, v, o) => b.writeUInt8(v, o),
    (b, o) => b.readUInt8(o),
  );
export const u16 = (): Codec<number> =>
  intCodec(
    'u16',
    2,
    false,
    (b, v, o) => b.writeUInt16LE(v, o),
    (b, o) => b.readUInt16LE(o),
  );
export const u32 = (): Codec<number> =>
  intCodec(
    'u32',
    4,
    false,
    (b, v, o) => b.writeUInt32LE(v, o),
    (b, o) => b.readUInt32LE(o),
  );
export const s32 = (): Codec<number> =>
  intCodec(
    's32',
    4,
    true,
    (b, v, o) => b.writeInt32LE(v, o),
    (b, o) => b.readInt32LE(o),
  );
/** Network byte order (ports). */
export const be16 = (): Codec<number> =>
  intCodec(
    'be16',
    2,
    false,
    (b, v, o) => b.writeUInt16BE(v, o),
    (b, o) => b.readUInt16BE(o),
  );
/** Network byte order. */
export const be32 = (): Codec<number> =>
  intCodec(
    'be32',
    4,
    false,
    (b, v, o) => b.writeUInt32BE(v, o),
    (b, o) => b.readUInt32BE(o),
  );

export function u64(): Codec<bigint> {
  return {
    size: 8,
    align: 8,
    encode(v, buf, off) {
      if (typeof v !== 'bigint' || v < 0n || v >= 1n << 64n)
        throw codecError(`u64: ${String(v)} out of range`);
      buf.writeBigUInt64LE(v, off);
    },
    decode: (buf, off) => buf.readBigUInt64LE(off),
  };
}

/** Fixed-size raw bytes; shorter input is zero-padded, longer input is an error. */
export function bytes(n: number): Codec<Buffer> {
  return {
    size: n,
    align: 1,
    encode(v, buf, off) {
      if (v.length > n) throw codecError(`bytes(${n}): got ${v.length} bytes`);
      buf.fill(0, off, off + n);
      v.copy(buf, off);
    },
    decode: (buf, off) => Buffer.from(buf.subarray(off, off + n)),
  };
}

/** `n` padding bytes inside a cstruct. */
export function pad(n: number): Padding {
  return {
    size: n,
    align: 1,
    padding: true,
    encode(_v, buf, off) {
      buf.fill(0, off, off + n);
    },
    decode: () => undefined,
  };
}

/** A fixed-length C array. */
export function array<T>(of: Codec<T>, n: number): Codec<T[]> {
  return {
    size: of.size * n,
    align: of.align,
    encode(v, buf, off) {
      if (v.length !== n) throw codecError(`array(${n}): got ${v.length} elements`);
      v.forEach((e, i) => of.encode(e, buf, off + i * of.size));
    },
    decode: (buf, off) => Array.from({ length: n }, (_, i) => of.decode(buf, off + i * of.size)),
  };
}

/** Dotted IPv4 address <-> 4 bytes in network order. */
export function ipv4(): Codec<string> {
  return {
    size: 4,
    align: 1,
    encode(v, buf, off) {
      parseIPv4(v).copy(buf, off);
    },
    decode: (buf, off) => Array.from(buf.subarray(off, off + 4)).join('.'),
  };
}

/** IPv6 address text <-> 16 bytes in network order (decoded in RFC 5952 form). */
export function ipv6(): Codec<string> {
  return {
    size: 16,
    align: 1,
    encode(v, buf, off) {
      parseIPv6(v).copy(buf, off);
    },
    decode: (buf, off) => formatIPv6(buf.subarray(off, off + 16)),
  };
}

export function parseIPv4(s: string): Buffer {
  if (!isIPv4(s)) throw codecError(`ipv4: '${s}' is not an IPv4 address`);
  return Buffer.from(s.split('.').map(Number));
}

export function parseIPv6(s: string): Buffer {
  if (!isIPv6(s)) throw codecError(`ipv6: '${s}' is not an IPv6 address`);
  const out = Buffer.alloc(16);
  let text = s;
  // An embedded dotted quad ("::ffff:10.0.0.1") fills the last 32 bits.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tailBytes: Buffer | undefined;
  if (quad?.[1]) {
    tailBytes = parseIPv4(quad[1]);
    text = text.slice(0, -quad[1].length) + '0:0';
  }
  const [head = '', tail] = text.split('::');
  const groups = (p: string) => (p === '' ? [] : p.split(':').map((g) => parseInt(g, 16)));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  tailBytes?.copy(out, 12);
  return out;
}

export function formatIPv6(b: Buffer): string {
  const g = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  // Longest run of two or more zero groups becomes "::" (first one on ties).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

// ---- C structs

type FieldValue<C> = C extends Codec<infer T> ? T : never;
type PaddingKeys<F> = { [K in keyof F]: F[K] extends Padding ? K : never }[keyof F];
export type StructValue<F extends Record<string, Codec<unknown>>> = {
  [K in Exclude<keyof F, PaddingKeys<F>>]: FieldValue<F[K]>;
};

export interface StructCodec<F extends Record<string, Codec<unknown>>> extends Codec<StructValue<F>> {
  /** The C struct this mirrors (checkLayout looks it up by this name). */
  readonly name: string;
  readonly fields: Readonly<F>;
  /** Byte offset of every field, padding included. */
  readonly offsets: Readonly<Record<keyof F, number>>;
}

/**
 * A C-layout struct: fields in order, each at its natural alignment, the size rounded up to the
 * largest alignment, exactly as clang lays out `struct name` for BPF. Padding the compiler would
 * insert implicitly is zeroed on encode, so keys hash the same as in C (which memset()s keys).
 * Use pad(n) for C fields that carry no value for TypeScript.
 */
export function cstruct<F extends Record<string, Codec<unknown>>>(name: string, fields: F): StructCodec<F> {
  const offsets = {} as Record<keyof F, number>;
  let off = 0;
  let align = 1;
  for (const [key, c] of Object.entries(fields) as [keyof F & string, Codec<unknown>][]) {
    off = roundUp(off, c.align);
    offsets[key] = off;
    off += c.size;
    align = Math.max(align, c.align);
  }
  const size = roundUp(off, align);
  const entries = (Object.entries(fields) as [string, Codec<unknown>][]).map(
    ([key, c]) => [key, c, offsets[key] as number] as const,
  );
  return {
    name,
    fields,
    offsets,
    size,
    align,
    encode(v, buf, off0) {
      if (off0 + size > buf.length) throw codecError(`struct ${name}: buffer too small`);
      buf.fill(0, off0, off0 + size);
      const obj = v as Record<string, unknown>;
      for (const [key, c, fo] of entries) {
        if ((c as Partial<Padding>).padding) continue;
        const fv = obj[key];
        if (fv === undefined) throw codecError(`struct ${name}: field '${key}' is missing`);
        try {
          c.encode(fv, buf, off0 + fo);
        } catch (err) {
          throw codecError(`struct ${name}: field '${key}': ${(err as Error).message}`);
        }
      }
    },
    decode(buf, off0) {
      const out: Record<string, unknown> = {};
      for (const [key, c, fo] of entries) {
        if (!(c as Partial<Padding>).padding) out[key] = c.decode(buf, off0 + fo);
      }
      return out as StructValue<F>;
    },
  };
}

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Encodes one value into a fresh Buffer of exactly codec.size bytes. */
export function encodeValue<T>(codec: Codec<T>, v: T): Buffer {
  const buf = Buffer.alloc(codec.size);
  codec.encode(v, buf, 0);
  return buf;
}

/** Per-CPU map values occupy one 8-byte-aligned slot per possible CPU. */
export function perCpuSlot(valueSize: number): number {
  return roundUp(valueSize, 8);
}

/** A per-CPU value: `cpus` slots of `of`, each padded to 8 bytes (see perCpu() in map.ts). */
export function perCpuArray<T>(of: Codec<T>, cpus: number): Codec<T[]> {
  const slot = perCpuSlot(of.size);
  return {
    size: slot * cpus,
    align: 8,
    encode(v, buf, off) {
      if (v.length !== cpus) throw codecError(`per-CPU value: got ${v.length} values for ${cpus} CPUs`);
      v.forEach((e, i) => {
        buf.fill(0, off + i * slot, off + (i + 1) * slot);
        of.encode(e, buf, off + i * slot);
      });
    },
    decode: (buf, off) => Array.from({ length: cpus }, (_, i) => of.decode(buf, off + i * slot)),
  };
}
