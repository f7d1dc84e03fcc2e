// MurmurHash3 x64 128-bit (Austin Appleby's reference; the variant Cilium's Maglev hashes backend
// names with). BigInt arithmetic: it runs once per backend per table, not per packet.
const MASK = (1n << 64n) - 1n;
const C1 = 0x87c37b91114253d5n;
const C2 = 0x4cf5ad432745937fn;

const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & MASK;
const mul = (a: bigint, b: bigint) => (a * b) & MASK;

function fmix(k: bigint): bigint {
  k ^= k >> 33n;
  k = mul(k, 0xff51afd7ed558ccdn);
  k ^= k >> 33n;
  k = mul(k, 0xc4ceb9fe1a85ec53n);
  return k ^ (k >> 33n);
}

/** [h1, h2] of `data` under a 32-bit seed. */
export function murmur3x64128(data: Uint8Array, seed: number): [bigint, bigint] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let h1 = BigInt(seed >>> 0);
  let h2 = h1;
  const blocks = buf.length >> 4;
  for (let i = 0; i < blocks; i++) {
    let k1 = buf.readBigUInt64LE(i * 16);
    let k2 = buf.readBigUInt64LE(i * 16 + 8);
    k1 = mul(rotl(mul(k1, C1), 31n), C2);
    h1 = (mul((rotl(h1 ^ k1, 27n) + h2) & MASK, 5n) + 0x52dce729n) & MASK;
    k2 = mul(rotl(mul(k2, C2), 33n), C1);
    h2 = (mul((rotl(h2 ^ k2, 31n) + h1) & MASK, 5n) + 0x38495ab5n) & MASK;
  }
  const tail = blocks * 16;
  let k1 = 0n;
  let k2 = 0n;
  for (let i = buf.length - 1; i >= tail; i--) {
    const byte = BigInt(buf[i] ?? 0);
    if (i - tail >= 8) k2 |= byte << BigInt((i - tail - 8) * 8);
    else k1 |= byte << BigInt((i - tail) * 8);
  }
  if (k2 !== 0n) h2 ^= mul(rotl(mul(k2, C2), 33n), C1);
  if (k1 !== 0n) h1 ^= mul(rotl(mul(k1, C1), 31n), C2);
  const len = BigInt(buf.length);
  h1 ^= len;
  h2 ^= len;
  h1 = (h1 + h2) & MASK;
  h2 = (h2 + h1) & MASK;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h1 = (h1 + h2) & MASK;
  h2 = (h2 + h1) & MASK;
  return [h1, h2];
}
