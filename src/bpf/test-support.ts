// Helpers for src/bpf's privileged tests: bpffs, names, packets. Not part of the public API.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../shared/exec.js';
import { bpfObject, bpffsRoot, pinRoot } from '../shared/paths.js';

export const basicsObject = bpfObject(join('tests', 'kern_basics'));
export const verifierFailObject = bpfObject(join('tests', 'kern_verifier_fail'));

/** weir-bpftest-<random>: the name every namespace/cgroup a test creates carries. */
export function testName(): string {
  return `weir-bpftest-${randomBytes(3).toString('hex')}`;
}

/** A pin folder for one test file, removed by the caller in after(). */
export function testPinDir(): string {
  return join(pinRoot, `bpftest-${randomBytes(3).toString('hex')}`);
}

/** Mounts bpffs at /sys/fs/bpf when the host has not. */
export async function ensureBpffs(): Promise<void> {
  const mounted = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === bpffsRoot && l.split(' ')[2] === 'bpf');
  if (!mounted) await run(['mount', '-t', 'bpf', 'bpf', bpffsRoot]);
}

/** Ethernet + IPv4 (checksummed) + ICMP echo request, `payload` bytes of data. */
export function icmpEchoPacket(opts: { tos?: number; payload?: number } = {}): Buffer {
  const payload = opts.payload ?? 32;
  const b = Buffer.alloc(14 + 20 + 8 + payload);
  Buffer.from('020000000002', 'hex').copy(b, 0);
  Buffer.from('020000000001', 'hex').copy(b, 6);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b[15] = opts.tos ?? 0;
  b.writeUInt16BE(20 + 8 + payload, 16);
  b[22] = 64;
  b[23] = 1;
  Buffer.from([10, 0, 0, 1]).copy(b, 26);
  Buffer.from([10, 0, 0, 2]).copy(b, 30);
  b.writeUInt16BE(ipChecksum(b.subarray(14, 34)), 24);
  b[34] = 8;
  for (let i = 0; i < payload; i++) b[42 + i] = i & 0xff;
  return b;
}

export function ipChecksum(hdr: Buffer): number {
  let sum = 0;
  for (let i = 0; i < hdr.length; i += 2) if (i !== 10) sum += hdr.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
