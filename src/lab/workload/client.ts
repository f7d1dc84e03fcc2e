// Talks to a workload's control socket. One connection per socket path carries any number of
// concurrent requests, matched to answers by id; it does not keep the process alive when idle.
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { WeirError } from '../../shared/errors.js';
import type { ControlReply, ControlRequest } from './protocol.js';

interface Pending {
  resolve: (r: ControlReply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

class Connection {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  readonly ready: Promise<void>;
  private readonly sock: Socket;
  closed = false;

  constructor(readonly path: string) {
    this.sock = connect(path);
    this.ready = new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
    this.sock.on('error', (err) => this.fail(err));
    this.sock.on('close', () => this.fail(new Error('control socket closed')));
    const lines = createInterface({ input: this.sock });
    lines.on('error', () => undefined); // the socket's own 'error' handler reports it
    lines.on('line', (line) => {
      const reply = JSON.parse(line) as ControlReply;
      const p = reply.id === undefined ? undefined : this.pending.get(reply.id);
      if (!p || reply.id === undefined) return;
      this.pending.delete(reply.id);
      clearTimeout(p.timer);
      this.idle();
      p.resolve(reply);
    });
    this.sock.unref();
  }

  request(req: ControlRequest, timeoutMs: number): Promise<ControlReply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.idle();
        reject(
          new WeirError('ERR_LAB_WORKLOAD_TIMEOUT', `no answer from ${this.path} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.sock.ref();
      this.sock.write(JSON.stringify({ ...req, id }) + '\n');
    });
  }

  private idle(): void {
    if (this.pending.size === 0) this.sock.unref();
  }

  private fail(err: Error): void {
    this.closed = true;
    connections.delete(this.path);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new WeirError('ERR_LAB_WORKLOAD_UNREACHABLE', `${this.path}: ${err.message}`, { cause: err }));
    }
    this.pending.clear();
    this.sock.destroy();
  }
}

const connections = new Map<string, Connection>();

/** Sends one request to the workload listening on `socketPath` and waits for its answer. */
export async function request(
  socketPath: string,
  req: ControlRequest,
  timeoutMs: number,
): Promise<ControlReply> {
  let c = connections.get(socketPath);
  if (!c || c.closed) {
    c = new Connection(socketPath);
    connections.set(socketPath, c);
  }
  try {
    await c.ready;
  } catch (err) {
    connections.delete(socketPath);
    throw new WeirError('ERR_LAB_WORKLOAD_UNREACHABLE', `${socketPath}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return c.request(req, timeoutMs);
}

/** Whether the workload answers ping within `timeoutMs`. */
export async function ping(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  try {
    return (await request(socketPath, { op: 'ping' }, timeoutMs)).ok;
  } catch {
    return false;
  }
}

/** Sends any JSON-lines request (the pod host's ops) and returns its answer as `R`. */
export async function call<R>(socketPath: string, req: { op: string }, timeoutMs: number): Promise<R> {
  return (await request(socketPath, req as unknown as ControlRequest, timeoutMs)) as unknown as R;
}
