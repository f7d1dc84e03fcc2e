// The workloads' control sockets (a pod's, and the pod host's): JSON lines on a unix socket path,
// one request a line, one reply a line with the request's id; a request that is no JSON, or whose
// handler throws, gets `ok: false` and the reason (shared by the per-process workload and the pod
// host).
import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { createInterface } from 'node:readline';

/** Serves `handle` on the unix socket `path` (a stale socket file there is replaced). */
export function serveLines<Q extends { id?: number }, R>(
  path: string,
  handle: (req: Q) => Promise<R> | R,
): Server {
  rmSync(path, { force: true });
  const srv = createServer((sock) => {
    sock.on('error', () => sock.destroy());
    const lines = createInterface({ input: sock });
    lines.on('error', () => undefined);
    lines.on('line', (line) => {
      let req: Q;
      try {
        req = JSON.parse(line) as Q;
      } catch {
        return void sock.write(JSON.stringify({ ok: false, error: 'bad JSON' }) + '\n');
      }
      void Promise.resolve()
        .then(() => handle(req))
        .then(
          (reply) => reply,
          (err: unknown) => ({ id: req.id, ok: false, error: (err as Error).message }),
        )
        .then((reply) => {
          if (!sock.destroyed) sock.write(JSON.stringify(reply) + '\n');
        });
    });
  });
  srv.listen(path);
  return srv;
}
