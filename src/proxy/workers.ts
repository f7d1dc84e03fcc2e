// Several proxy threads in the one `weir proxy` process. The main thread (main.ts) serves like any
// worker and also holds what there is one of: the admin socket, the DNS proxy, the Gateway, the
// L7 record stream to the agent, the access log and the metrics. Each extra thread (worker.ts)
// runs its own ProxyServer with its own HTTP listeners on the same ports: every listener of a
// port is in one SO_REUSEPORT group, and the kernel picks a member for each new connection the
// datapath assigns to the group (bpf_sk_assign of a reuseport listener is followed by the group's
// selection, by the hash of the packet's 4-tuple, on kernels since the 2023 change "bpf, net:
// Support SO_REUSEPORT sockets with bpf_sk_assign"; an older one keeps the listener the datapath
// found and the other threads stay idle).
//
// To the agent it is still one process (one pid, one admin socket, one failure domain): a thread
// that fails ends the process (its listeners go with it, redirected connections fail closed in
// the datapath until the agent restarts it). Snapshots reach every thread before the admin API
// acknowledges them. Workers send their records (rendered), access-log lines (rendered) and
// counter increments to the main thread in one message per event-loop turn; status and metrics
// answers first wait for every worker to send what it has (flush), so counts are exact.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { ProxySnapshot } from '../policy/l7/types.js';
import { isErrorCode } from '../shared/error-codes.js';
import { WeirError } from '../shared/errors.js';
import type { AccessLog } from './access-log.js';
import type { ProxyMetrics } from './metrics.js';
import type { RecordQueue } from './records.js';
import type { ListenerPorts } from './server.js';

/** The identity of an address the ipcache does not know (as the datapath decides). */
export const IDENTITY_WORLD = 2;

/**
 * The young generation's semi-space of every proxy thread, at most (MiB; V8 grows it up to this
 * while objects survive scavenges, and shrinks it when the thread idles). The proxy makes a few
 * short-lived objects per request: with the default (16) a busy thread scavenged every ~60 ms;
 * twice the space halves the scavenges (bench/micro/http-proxy, --trace-gc). The main thread gets
 * it as `--max-semi-space-size` (src/agent/proxy-manager.ts), the workers as resourceLimits.
 */
export const PROXY_SEMI_SPACE_MB = 32;

/** Threads when the setting is 0: one per CPU the process may use. */
export const defaultWorkers = (): number => Math.max(1, availableParallelism());

/** What a worker is started with (workerData). */
export interface WorkerInit {
  lab: string;
  index: number;
  ipcachePin: string;
  /** SharedClientPorts.buffer() of the process. */
  clientPorts: SharedArrayBuffer;
  /** The pinned weir_tunnel and the main thread's tunnel hand-off socket (tunnel-route.ts). */
  tunnel: { pin: string; socket: string };
}

/** A counter increment: ProxyMetrics property, labels as JSON, amount (negative: a gauge's dec). */
export type Count = [metric: string, labels: string, n: number];

export type ToWorker =
  | {
      type: 'snapshot';
      id: number;
      snapshot: ProxySnapshot;
      listeners: Pick<ListenerPorts, 'ingress' | 'egress'>;
    }
  | { type: 'flush'; id: number }
  | { type: 'close'; id: number };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'done'; id: number; error?: { code: string; message: string; details?: Record<string, unknown> } }
  | {
      type: 'batch';
      /** recordCount records rendered by recordLine, each followed by a newline. */
      records: string;
      recordCount: number;
      /** accessCount access-log lines rendered by renderAccess. */
      access: string;
      accessCount: number;
      counts: Count[];
    };

/** Counters a worker may send (the ones ProxyServer and its records touch). */
const COUNTED = new Set([
  'redirects',
  'active',
  'unresolved',
  'upstreamErrors',
  'policyL7',
  'upstreamRequestErrors',
  'records',
]);

interface Thread {
  worker: Worker;
  redirects: number;
  active: { ingress: number; egress: number };
}

export interface ProxyWorkersOptions {
  /** Extra threads (besides the main one). */
  count: number;
  lab: string;
  ipcachePin: string;
  clientPorts: SharedArrayBuffer;
  tunnel: WorkerInit['tunnel'];
  metrics: ProxyMetrics;
  records: RecordQueue;
  accessLog: AccessLog;
  log: Logger;
  /** A worker failed: the process must end (the default exits with status 1). */
  onFatal?(err: Error): void;
}

export class ProxyWorkers {
  readonly #o: ProxyWorkersOptions;
  readonly #threads: Thread[] = [];
  readonly #pending = new Map<number, { left: number; errors: Error[]; done: () => void }>();
  #id = 0;
  #closing = false;

  constructor(o: ProxyWorkersOptions) {
    this.#o = o;
  }

  get count(): number {
    return this.#threads.length;
  }

  /** Starts the threads; resolves when each is ready. */
  async start(): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let index = 1; index <= this.#o.count; index++) {
      const init: WorkerInit = {
        lab: this.#o.lab,
        index,
        ipcachePin: this.#o.ipcachePin,
        clientPorts: this.#o.clientPorts,
        tunnel: this.#o.tunnel,
      };
      const worker = new Worker(new URL('./worker.js', import.meta.url), {
        workerData: init,
        // Two semi-spaces and the new large-object space make the young generation (V8: 3×).
        resourceLimits: { maxYoungGenerationSizeMb: 3 * PROXY_SEMI_SPACE_MB },
      });
      const t: Thread = { worker, redirects: 0, active: { ingress: 0, egress: 0 } };
      this.#threads.push(t);
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.once('message', (m: FromWorker) =>
            m.type === 'ready' ? resolve() : reject(new Error(`worker ${index}: ${m.type} before ready`)),
          );
          worker.once('error', reject);
        }).then(() => {
          worker.on('message', (m: FromWorker) => this.#onMessage(t, m));
        }),
      );
      worker.on('error', (err) => this.#fatal(new Error(`proxy worker ${index} failed: ${err.message}`)));
      worker.on('exit', (code) => {
        if (!this.#closing) this.#fatal(new Error(`proxy worker ${index} exited (${code})`));
      });
    }
    await Promise.all(ready);
  }

  #fatal(err: Error): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#o.log.fatal({ err }, 'a proxy worker failed: the proxy stops (the agent restarts it)');
    if (this.#o.onFatal) this.#o.onFatal(err);
    else process.exit(1);
  }

  #onMessage(t: Thread, m: FromWorker): void {
    if (m.type === 'batch') {
      if (m.recordCount > 0) this.#o.records.pushLines(m.records, m.recordCount);
      if (m.accessCount > 0) this.#o.accessLog.writeLines(m.access, m.accessCount);
      for (const [metric, labelsText, n] of m.counts) this.#count(t, metric, labelsText, n);
      return;
    }
    if (m.type === 'done') {
      const p = this.#pending.get(m.id);
      if (!p) return;
      if (m.error)
        p.errors.push(
          isErrorCode(m.error.code)
            ? new WeirError(m.error.code, m.error.message, { details: m.error.details ?? {} })
            : new Error(m.error.message),
        );
      if (--p.left === 0) p.done();
    }
  }

  #count(t: Thread, metric: string, labelsText: string, n: number): void {
    if (!COUNTED.has(metric)) return;
    const labels = JSON.parse(labelsText) as Record<string, string>;
    const m = this.#o.metrics[metric as 'active'];
    if (metric === 'active') {
      const d = labels.direction === 'egress' ? 'egress' : 'ingress';
      t.active[d] += n;
      if (n >= 0) m.inc(labels, n);
      else m.dec(labels, -n);
      return;
    }
    if (metric === 'redirects') t.redirects += n;
    (m as unknown as { inc(l: Record<string, string>, n: number): void }).inc(labels, n);
  }

  /** Sends `msg` (with a fresh id) to every thread; resolves when all answered, rejects with the first error. */
  #all(msg: (id: number) => ToWorker): Promise<void> {
    if (this.#threads.length === 0) return Promise.resolve();
    const id = ++this.#id;
    return new Promise<void>((resolve, reject) => {
      const p = {
        left: this.#threads.length,
        errors: [] as Error[],
        done: () => {
          this.#pending.delete(id);
          if (p.errors[0]) reject(p.errors[0]);
          else resolve();
        },
      };
      this.#pending.set(id, p);
      for (const t of this.#threads) t.worker.postMessage(msg(id));
    });
  }

  /** Every thread runs `snapshot` and listens on `listeners` (HTTP; DNS stays on the main thread). */
  apply(snapshot: ProxySnapshot, listeners: ListenerPorts): Promise<void> {
    const http = { ingress: listeners.ingress, egress: listeners.egress };
    return this.#all((id) => ({ type: 'snapshot', id, snapshot, listeners: http }));
  }

  /** Resolves once every thread has sent its records, access-log lines and counts so far. */
  flush(): Promise<void> {
    return this.#all((id) => ({ type: 'flush', id }));
  }

  /** Connections open now in the workers, by direction. */
  active(): { ingress: number; egress: number } {
    const a = { ingress: 0, egress: 0 };
    for (const t of this.#threads) {
      a.ingress += t.active.ingress;
      a.egress += t.active.egress;
    }
    return a;
  }

  /** Connections each worker accepted since start. */
  redirects(): number[] {
    return this.#threads.map((t) => t.redirects);
  }

  /** Stops every thread: listeners closed, exchanges in flight drained (ProxyServer.close). */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.#threads.length === 0) return;
    this.#closing = true;
    const exited = this.#threads.map((t) => new Promise((r) => t.worker.once('exit', r)));
    const timer = setTimeout(() => {
      for (const t of this.#threads) void t.worker.terminate();
    }, timeoutMs);
    try {
      for (const t of this.#threads)
        t.worker.postMessage({ type: 'close', id: ++this.#id } satisfies ToWorker);
      await Promise.all(exited);
    } finally {
      clearTimeout(timer);
    }
  }
}
