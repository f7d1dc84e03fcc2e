// A packet capture for the lab tests (no tcpdump on this machine): a raw AF_PACKET socket
// (ETH_P_ALL, bound to no device, so every device of the namespace it runs in) that reads frames
// until stdin closes or `seconds` pass, and prints what it saw as one JSON line: frames, bytes,
// frames holding `marker` (in any byte of the frame: headers, a VXLAN packet's inner packet,
// payload), VXLAN frames (UDP 8472) and frames of the mTLS tunnel (TCP 15008).
//
//   ip netns exec weir-<lab>-underlay node dist/test/support/underlay-capture.js <seconds> <marker>
//
// The frames a port of a bridge forwards are seen on the port devices (not on the bridge device),
// hence no binding to a device.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
const socket = libc.func('int socket(int domain, int type, int protocol)') as (
  d: number,
  t: number,
  p: number,
) => number;
const setsockopt = libc.func(
  'int setsockopt(int fd, int level, int name, const void *value, uint32_t len)',
) as (fd: number, level: number, name: number, value: Buffer, len: number) => number;
const recv = libc.func('long recv(int fd, _Out_ void *buf, size_t len, int flags)') as (
  fd: number,
  b: Buffer,
  l: number,
  f: number,
) => number;

const AF_PACKET = 17;
const SOCK_RAW = 3;
const ETH_P_ALL_BE = 0x0300; // htons(0x0003)
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_RCVBUF = 8;

export interface CaptureResult {
  frames: number;
  bytes: number;
  markerFrames: number;
  vxlanFrames: number;
  tunnelFrames: number;
}

/** UDP/TCP ports of an IPv4 frame (Ethernet II, no VLAN). */
function ports(f: Buffer, n: number): { proto: number; sport: number; dport: number } | undefined {
  if (n < 34 || f.readUInt16BE(12) !== 0x0800) return undefined;
  const ihl = (f[14]! & 0x0f) * 4;
  const proto = f[23]!;
  const l4 = 14 + ihl;
  if (n < l4 + 4) return undefined;
  return { proto, sport: f.readUInt16BE(l4), dport: f.readUInt16BE(l4 + 2) };
}

function main(): void {
  const seconds = Number(process.argv[2] ?? 30);
  const marker = Buffer.from(process.argv[3] ?? '');
  const fd = socket(AF_PACKET, SOCK_RAW, ETH_P_ALL_BE);
  if (fd < 0) throw new Error(`socket(AF_PACKET) failed (errno ${koffi.errno()})`);
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(0n, 0);
  tv.writeBigInt64LE(100_000n, 8); // 100 ms: the loop checks stdin and the clock
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
  const sz = Buffer.alloc(4);
  sz.writeInt32LE(8 << 20);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, sz, 4);
  const r: CaptureResult = { frames: 0, bytes: 0, markerFrames: 0, vxlanFrames: 0, tunnelFrames: 0 };
  let stop = false;
  process.stdin.on('end', () => (stop = true));
  process.stdin.on('close', () => (stop = true));
  process.stdin.resume();
  const buf = Buffer.alloc(65536);
  const deadline = Date.now() + seconds * 1000;
  // Blocking reads with a timeout, yielding to the event loop (stdin) between batches.
  const loop = () => {
    const until = Date.now() + 50;
    while (Date.now() < until) {
      const n = recv(fd, buf, buf.length, 0);
      if (n <= 0) break;
      r.frames++;
      r.bytes += n;
      const frame = buf.subarray(0, n);
      if (marker.length > 0 && frame.includes(marker)) r.markerFrames++;
      const p = ports(buf, n);
      if (p?.proto === 17 && (p.dport === 8472 || p.sport === 8472)) r.vxlanFrames++;
      if (p?.proto === 6 && (p.dport === 15008 || p.sport === 15008)) r.tunnelFrames++;
    }
    if (stop || Date.now() > deadline) {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    }
    setImmediate(loop);
  };
  process.stdout.write('ready\n');
  loop();
}

if (process.argv[1]?.endsWith('underlay-capture.js')) main();
