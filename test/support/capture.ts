// Packet captures for the lab tests (no tcpdump on this machine): a child process in a lab
// namespace reads a raw AF_PACKET socket (ETH_P_ALL) through libc until its stdin closes.
//
// - capture(netns, dev): bound to one device, every IPv4 TCP/UDP packet it receives there (not the
//   ones the device sends), with its Ethernet source — who put it on the link.
// - captureAll(netns, marker): bound to no device, so every device of the namespace (a bridge's
//   forwarded frames are seen on its port devices, not on the bridge): counts of frames, bytes,
//   frames holding `marker` anywhere (headers, a VXLAN packet's inner packet, payload), VXLAN
//   frames (UDP 8472) and frames of the mTLS tunnel (TCP 15008).
//
// The child is this file: `node dist/test/support/capture.js <dev|-> <marker>`.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import { AF_PACKET, SOCK_RAW, SOL_SOCKET, libc } from '../../src/shared/libc.js';

export interface Captured {
  /** The Ethernet source (the device that sent it onto the link). */
  mac: string;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  proto: 'tcp' | 'udp';
}

export interface CaptureResult {
  frames: number;
  bytes: number;
  markerFrames: number;
  vxlanFrames: number;
  tunnelFrames: number;
}

const ETH_P_ALL_BE = 0x0300; // htons(0x0003)
const SO_RCVTIMEO = 20;
const SO_RCVBUF = 8;
const PACKET_OUTGOING = 4;

/** IPv4 TCP/UDP of an Ethernet II frame (no VLAN). */
function parse(f: Buffer, n: number): Omit<Captured, 'mac'> | undefined {
  if (n < 34 || f.readUInt16BE(12) !== 0x0800) return undefined;
  const ihl = (f[14]! & 0x0f) * 4;
  const proto = f[23]!;
  const l4 = 14 + ihl;
  if ((proto !== 6 && proto !== 17) || n < l4 + 4) return undefined;
  return {
    src: [...f.subarray(26, 30)].join('.'),
    sport: f.readUInt16BE(l4),
    dst: [...f.subarray(30, 34)].join('.'),
    dport: f.readUInt16BE(l4 + 2),
    proto: proto === 6 ? 'tcp' : 'udp',
  };
}

function child(dev: string, marker: Buffer): void {
  const fd = libc.socket(AF_PACKET, SOCK_RAW, ETH_P_ALL_BE);
  if (fd < 0) throw new Error(`socket(AF_PACKET) failed (errno ${koffi.errno()})`);
  if (dev !== '-') {
    // struct sockaddr_ll: family, protocol (network order), ifindex, then unused for bind.
    const ll = Buffer.alloc(20);
    ll.writeUInt16LE(AF_PACKET, 0);
    ll.writeUInt16LE(ETH_P_ALL_BE, 2);
    ll.writeInt32LE(libc.if_nametoindex(dev), 4);
    if (ll.readInt32LE(4) === 0 || libc.bind(fd, ll, ll.length) < 0)
      throw new Error(`bind to ${dev} failed (errno ${koffi.errno()})`);
  }
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(100_000n, 8); // 100 ms: the loop looks at stdin between reads
  libc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
  const sz = Buffer.alloc(4);
  sz.writeInt32LE(8 << 20);
  libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, sz, 4);
  const r: CaptureResult = { frames: 0, bytes: 0, markerFrames: 0, vxlanFrames: 0, tunnelFrames: 0 };
  let stop = false;
  process.stdin.on('end', () => (stop = true));
  process.stdin.on('close', () => (stop = true));
  process.stdin.resume();
  const buf = Buffer.alloc(65536);
  const from = Buffer.alloc(20);
  const fromLen = [20];
  const loop = () => {
    const until = Date.now() + 50;
    while (Date.now() < until) {
      fromLen[0] = 20;
      const n = libc.recvfrom(fd, buf, buf.length, 0, from, fromLen);
      if (n <= 0) break;
      if (from[10] === PACKET_OUTGOING) continue;
      r.frames++;
      r.bytes += n;
      if (marker.length > 0 && buf.subarray(0, n).includes(marker)) r.markerFrames++;
      const p = parse(buf, n);
      if (p?.proto === 'udp' && (p.dport === 8472 || p.sport === 8472)) r.vxlanFrames++;
      if (p?.proto === 'tcp' && (p.dport === 15008 || p.sport === 15008)) r.tunnelFrames++;
      if (p && dev !== '-')
        process.stdout.write(
          `${JSON.stringify({
            mac: buf
              .subarray(6, 12)
              .toString('hex')
              .replace(/(..)(?!$)/g, '$1:'),
            ...p,
          })}\n`,
        );
    }
    if (stop) {
      process.stdout.write(`${JSON.stringify({ summary: r })}\n`);
      process.exit(0);
    }
    setImmediate(loop);
  };
  process.stdout.write('ready\n');
  loop();
}

async function start(netns: string, dev: string, marker: string) {
  const script = fileURLToPath(import.meta.url);
  const proc = spawn('ip', ['netns', 'exec', netns, process.execPath, script, dev, marker], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d: string) => (out += d));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 20_000;
  while (!out.startsWith('ready\n')) {
    if (Date.now() > deadline || proc.exitCode !== null)
      throw new Error(`capture in ${netns} (${dev}) did not start: ${out}${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return async (): Promise<{ packets: Captured[]; summary: CaptureResult }> => {
    // Packets already read are printed; give the reader a moment for the last ones.
    await new Promise((r) => setTimeout(r, 300));
    const exited = once(proc, 'exit');
    proc.stdin.end();
    await exited;
    const lines = out
      .split('\n')
      .slice(1)
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Captured | { summary: CaptureResult });
    const summary = lines.find((l): l is { summary: CaptureResult } => 'summary' in l)?.summary;
    if (!summary) throw new Error(`capture in ${netns} (${dev}) ended without its summary: ${out}${stderr}`);
    return { packets: lines.filter((l): l is Captured => !('summary' in l)), summary };
  };
}

/** Starts capturing on `dev` in namespace `netns`; stop() ends it and returns what it received. */
export async function capture(netns: string, dev: string): Promise<{ stop: () => Promise<Captured[]> }> {
  const stop = await start(netns, dev, '');
  return { stop: async () => (await stop()).packets };
}

/** Starts capturing on every device of `netns`; stop() ends it and returns the counts. */
export async function captureAll(
  netns: string,
  marker: string,
): Promise<{ stop: () => Promise<CaptureResult> }> {
  const stop = await start(netns, '-', marker);
  return { stop: async () => (await stop()).summary };
}

if (process.argv[1] === fileURLToPath(import.meta.url))
  child(process.argv[2] ?? '-', Buffer.from(process.argv[3] ?? ''));
