// Maglev consistent hashing (Eisenbud et al., NSDI'16) as Cilium builds its tables: each backend,
// by name, gets a permutation of the M slots from murmur3 of its name (offset = h1 % M,
// skip = h2 % (M-1) + 1); backends take turns claiming their next free preferred slot until the
// table is full. Backends are sorted by name and the seed is cluster-wide, so every node builds the
// same table; a backend change moves only about 1/N of the slots.
import { WeirError } from '../shared/errors.js';
import { murmur3x64128 } from './murmur3.js';

/** Cilium's supported table sizes (primes), up to the datapath's LB_MAGLEV_LUT_MAX. */
export const maglevSizes = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521] as const;
export const defaultMaglevSize = 16381;
/** Cilium's default --bpf-lb-maglev-hash-seed (12 bytes, base64). */
export const defaultMaglevSeed = 'JLfvgnHc2kaSUFaI';

export interface MaglevBackend {
  id: number;
  /** Stable across nodes and restarts: the backend's address, e.g. "10.0.1.5:8080/TCP". */
  name: string;
}

/** The murmur3 seed of a base64 Cilium hash seed (its first four bytes, little-endian). */
export function maglevSeed(seed: string): number {
  const bytes = Buffer.from(seed, 'base64');
  if (bytes.length !== 12 || bytes.toString('base64') !== seed)
    throw new WeirError('ERR_SERVICE_MAGLEV_SEED', `maglev seed '${seed}' must be 12 bytes in base64`, {
      location: { field: '--lb-maglev-seed' },
    });
  return bytes.readUInt32LE(0);
}

export function checkMaglevSize(m: number): number {
  if (!(maglevSizes as readonly number[]).includes(m))
    throw new WeirError(
      'ERR_SERVICE_MAGLEV_SIZE',
      `maglev table size ${m} is not one of ${maglevSizes.join(', ')}`,
      {
        location: { field: '--lb-maglev-table-size' },
      },
    );
  return m;
}

/** The M-entry table of backend ids; empty without backends. */
export function maglevTable(backends: readonly MaglevBackend[], m: number, seed: number): Uint32Array {
  checkMaglevSize(m);
  const table = new Uint32Array(m);
  if (backends.length === 0) return table;
  const sorted = [...backends].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const n = sorted.length;
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const M = BigInt(m);
  sorted.forEach((b, i) => {
    const [h1, h2] = murmur3x64128(Buffer.from(b.name), seed);
    offset[i] = Number(h1 % M);
    skip[i] = Number(h2 % (M - 1n)) + 1;
  });
  const next = new Uint32Array(n);
  const filled = new Uint8Array(m);
  let count = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      // The backend's next preferred slot that is still free.
      let c = ((offset[i] ?? 0) + (next[i] ?? 0) * (skip[i] ?? 1)) % m;
      while (filled[c]) {
        next[i] = (next[i] ?? 0) + 1;
        c = ((offset[i] ?? 0) + (next[i] ?? 0) * (skip[i] ?? 1)) % m;
      }
      table[c] = (sorted[i] as MaglevBackend).id;
      filled[c] = 1;
      next[i] = (next[i] ?? 0) + 1;
      if (++count === m) return table;
    }
  }
}
