// A backend that tells each client who it saw: in a lab pod, a TCP server on 9090 and a UDP one on
// 9091 answer every connection and datagram with the peer's `addr:port` (the NodePort tests: snat
// shows the node, DSR the client itself).
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { startInPod } from './lines.js';

const peerServer = `
const net = require('net'), dgram = require('dgram');
const peer = (addr, port) => addr.replace(/^::ffff:/, '') + ':' + port + '\\n';
const t = net.createServer((s) => s.end(peer(s.remoteAddress, s.remotePort))).listen(9090);
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => u.send(peer(r.address, r.port), r.port, r.address));
u.bind(9091, () => t.listening ? console.log('ready') : t.on('listening', () => console.log('ready')));
`;

/** Starts the peer server in `pod` of lab `lab` (`weir lab exec`); resolves once it listens. */
export function startPeerServer(
  lab: string,
  pod: string,
  readyMs: number,
): Promise<ChildProcessWithoutNullStreams> {
  return startInPod(lab, pod, [process.execPath, '-e', peerServer], 'peer server', readyMs);
}
