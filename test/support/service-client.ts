// A client for service tests, run where a user's process runs: in a pod (its netns and cgroup,
// `weir lab exec`, so the socket LB hooks see it), in a lab external (`ext:<name>`), or in a pod's
// network namespace only (`via: 'tc'`: the test's own cgroup, no socket hook, so the pod's tc
// program translates every packet).
import { Lab } from '../../src/lab/index.js';
import { run } from '../../src/shared/exec.js';
import { ok } from './cli.js';

/**
 * A lab pod serving the workload's HTTP on port 8080 ("http") and UDP echo on 5353 ("dns"), as
 * YAML ending in `---`: the backend of the service tests.
 */
export const servicePod = (namespace: string, name: string, labels: string, annotations = '') => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${namespace}, labels: { ${labels} }${annotations ? `, annotations: { ${annotations} }` : ''} }
spec:
  containers:
  - name: c
    ports:
    - { name: http, containerPort: 8080 }
    - { name: dns, containerPort: 5353, protocol: UDP }
---`;

/** One connection or datagram: the peer the socket saw, what came back, or the error code. */
export interface Try {
  /** `addr:port` (IPv6: `[addr]:port`) as getpeername()/recvfrom() report it. */
  peer?: string;
  /** TCP: the HTTP body (the lab workload names its pod), else all it received; UDP: the answer. */
  body?: string;
  error?: string;
  ms: number;
}

export type Proto = 'tcp' | 'udp' | 'udpc';

/**
 * `tcp ip port n timeoutMs`: n connections, each sends an HTTP GET and reads to the end;
 * `udp`: n datagrams from fresh unconnected sockets; `udpc`: the same from connected sockets
 * (which learn of ICMP errors: ECONNREFUSED). Prints one JSON Try per line.
 */
const script = `
const [mode, ip, port, n, timeout] = process.argv.slice(1);
const net = require('net'), dgram = require('dgram');
const hp = (a, p) => (net.isIPv6(a) ? '[' + a + ']' : a) + ':' + p;
const one = () => new Promise((res) => {
  const t0 = Date.now();
  const done = (r) => res({ ...r, ms: Date.now() - t0 });
  if (mode === 'udp' || mode === 'udpc') {
    const s = dgram.createSocket(net.isIPv6(ip) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => { s.close(); done({ error: 'timeout' }); }, +timeout);
    s.on('message', (m, r) => { clearTimeout(timer); s.close(); done({ peer: hp(r.address, r.port), body: String(m).trim() }); });
    s.on('error', (e) => { clearTimeout(timer); s.close(); done({ error: e.code }); });
    if (mode === 'udpc') s.connect(+port, ip, () => s.send('hello'));
    else s.send('hello', +port, ip);
    return;
  }
  const s = net.connect({ host: ip, port: +port });
  let body = '', peer;
  s.setTimeout(+timeout, () => { s.destroy(); done({ error: 'timeout' }); });
  s.on('connect', () => { peer = hp(s.remoteAddress, s.remotePort); s.write('GET / HTTP/1.0\\r\\n\\r\\n'); });
  s.on('data', (d) => (body += d));
  s.on('end', () => { s.destroy(); const i = body.indexOf('\\r\\n\\r\\n'); done({ peer, body: (i < 0 ? body : body.slice(i + 4)).trim() }); });
  s.on('error', (e) => done({ error: e.code }));
});
(async () => { for (let i = 0; i < +n; i++) console.log(JSON.stringify(await one())); })();
`;

export interface ConnectOptions {
  timeoutMs?: number;
  /** 'socket' (default): as the pod's own process; 'tc': in its netns only (pods, not externals). */
  via?: 'socket' | 'tc';
}

/** Runs the client `n` times from `from` ("ns/pod" or "ext:name") in lab `lab`. */
export async function connect(
  lab: string,
  from: string,
  proto: Proto,
  ip: string,
  port: number,
  n: number,
  opts: ConnectOptions = {},
): Promise<Try[]> {
  const timeoutMs = opts.timeoutMs ?? 1000;
  const argv = [process.execPath, '-e', script, proto, ip, String(port), String(n), String(timeoutMs)];
  const budget = n * timeoutMs + 30_000;
  const out =
    opts.via === 'tc'
      ? (
          await run(['ip', 'netns', 'exec', (await (await Lab.open(lab)).pod(from)).netns, ...argv], {
            timeoutMs: budget,
          })
        ).stdout
      : await ok(['lab', 'exec', from, '--', ...argv], lab, budget);
  return out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Try);
}

/** `addr:port` as Try.peer writes it (IPv6: `[addr]:port`). */
export const peerText = (ip: string, port: number) => `${ip.includes(':') ? `[${ip}]` : ip}:${port}`;

/** The distinct answers (or errors), sorted. */
export const bodies = (tries: Try[]) => [...new Set(tries.map((t) => t.body ?? `error:${t.error}`))].sort();
