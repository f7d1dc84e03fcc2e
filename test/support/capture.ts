// A packet capture in a lab namespace (no tcpdump on the machine): Debian's python3 reads an
// AF_PACKET socket bound to one device and prints each IPv4 TCP/UDP packet it receives there
// (not the ones the device sends) with its Ethernet source. Started before the traffic, stopped
// after it.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface Captured {
  /** The Ethernet source (the device that sent it onto the link). */
  mac: string;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  proto: 'tcp' | 'udp';
}

const script = `
import json, socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind((sys.argv[1], 0))
print('ready', flush=True)
while True:
    pkt, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING or len(pkt) < 34 or pkt[12:14] != b'\\x08\\x00':
        continue
    ihl = (pkt[14] & 15) * 4
    if pkt[23] not in (6, 17) or len(pkt) < 18 + ihl:
        continue
    sp, dp = struct.unpack('!HH', pkt[14 + ihl:18 + ihl])
    print(json.dumps({'mac': pkt[6:12].hex(':'), 'src': socket.inet_ntoa(pkt[26:30]), 'sport': sp,
                      'dst': socket.inet_ntoa(pkt[30:34]), 'dport': dp,
                      'proto': 'tcp' if pkt[23] == 6 else 'udp'}), flush=True)
`;

/** Starts capturing on `dev` in namespace `netns`; stop() ends it and returns what it saw. */
export async function capture(netns: string, dev: string): Promise<{ stop: () => Promise<Captured[]> }> {
  const child = spawn('ip', ['netns', 'exec', netns, 'python3', '-u', '-c', script, dev], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const seen: Captured[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`capture on ${netns}/${dev}: not ready: ${stderr}`)),
      20_000,
    );
    child.on('exit', (code) => reject(new Error(`capture on ${netns}/${dev} exited ${code}: ${stderr}`)));
    lines.on('line', (l) => {
      if (l === 'ready') {
        clearTimeout(timer);
        resolve();
      } else seen.push(JSON.parse(l) as Captured);
    });
  });
  return {
    stop: async () => {
      // Packets already read are printed; give the reader a moment for the last ones.
      await new Promise((r) => setTimeout(r, 300));
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      return seen;
    },
  };
}
