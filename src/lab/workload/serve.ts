// What a workload serves on a TCP port: HTTP 200 naming the workload to a request that looks like
// HTTP/1.x (with the request it received echoed in x-weir-request), an echo of anything else (shared by the per-process workload and the pod host).
import type { Socket } from 'node:net';
import { requestEchoHeader } from './http-answer.js';

const httpRequestLine = /^[A-Z]{3,7} \S+ HTTP\/1\.[01]\r?\n/;

export function serveTcpConnection(sock: Socket, name: string): void {
  let head = Buffer.alloc(0);
  let mode: 'sniff' | 'echo' | 'http' = 'sniff';
  sock.on('error', () => sock.destroy());
  sock.on('data', (chunk: Buffer) => {
    if (mode === 'echo') return void sock.write(chunk);
    if (mode === 'http') return;
    head = Buffer.concat([head, chunk]);
    const text = head.toString('latin1');
    const firstLine = text.indexOf('\n');
    if (firstLine < 0 && head.length < 64 && /^[A-Z]{0,7}( |$)/.test(text)) return; // wait for more
    if (!httpRequestLine.test(text)) {
      mode = 'echo';
      return void sock.write(head);
    }
    if (!text.includes('\r\n\r\n') && !text.includes('\n\n')) return;
    mode = 'http';
    const body = `${name}\n`;
    sock.end(
      `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `${requestEchoHeader(text)}Connection: close\r\n\r\n${body}`,
    );
  });
}
