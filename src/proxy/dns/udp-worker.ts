// The DNS proxy's UDP reader: a worker thread blocked in recvmsg on the proxy's UDP socket (the
// main thread's event loop never blocks), posting each datagram with its original destination.
// It stops when the main thread sets the shared stop flag (seen at the next receive timeout).
import { parentPort, workerData } from 'node:worker_threads';
import { EAGAIN, EINTR, Receiver } from './udp.js';

const { fd, stop } = workerData as { fd: number; stop: SharedArrayBuffer };
const flag = new Int32Array(stop);
const rx = new Receiver(fd);
for (;;) {
  if (Atomics.load(flag, 0) !== 0) break;
  const r = rx.receive();
  if (typeof r === 'number') {
    if (r === -EAGAIN || r === -EINTR) continue;
    parentPort?.postMessage({ error: -r });
    break;
  }
  parentPort?.postMessage(r);
}
