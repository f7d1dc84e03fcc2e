// One extra thread of the node proxy (workers.ts): its own ProxyServer on the HTTP ports (its
// listeners join the ports' SO_REUSEPORT groups), its own view of the pinned ipcache, the
// snapshots the main thread forwards. What it produces goes to the main thread in batches (at
// most every BATCH_MS, and whenever the main thread asks): L7 records and access-log lines rendered here (the main thread only writes
// them), counter increments (applied to the process's metrics there).
import { writeFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { BpfMap } from '../bpf/index.js';
import { IpcacheMap } from '../datapath/maps/ipcache/index.js';
import { WeirError } from '../shared/errors.js';
import { renderAccess } from './access-log.js';
import { SharedClientPorts } from './client-ports.js';
import { startDiag } from './diag.js';
import { createHttpHandler } from './http/handler.js';
import { ProxyMetrics } from './metrics.js';
import { recordLine } from './records.js';
import { ProxyServer } from './server.js';
import { TunnelRoute } from './tunnel-route.js';
import type { L7Record } from './types.js';
import { IDENTITY_WORLD, type Count, type FromWorker, type ToWorker, type WorkerInit } from './workers.js';

const port = parentPort;
if (!port) throw new Error('src/proxy/worker.ts runs as a worker thread of `weir proxy run`');
const init = workerData as WorkerInit;

/** What goes to the main thread at the end of this turn: lines (each with its newline) and counts. */
let records = '';
let recordCount = 0;
let access = '';
let accessCount = 0;
const counts = new Map<string, number>();
let timer: NodeJS.Timeout | undefined;

function flush(): void {
  clearTimeout(timer);
  timer = undefined;
  if (recordCount === 0 && accessCount === 0 && counts.size === 0) return;
  const batch: Count[] = [];
  for (const [key, n] of counts) {
    const i = key.indexOf('\0');
    batch.push([key.slice(0, i), key.slice(i + 1), n]);
  }
  counts.clear();
  port!.postMessage({
    type: 'batch',
    records,
    recordCount,
    access,
    accessCount,
    counts: batch,
  } satisfies FromWorker);
  records = '';
  recordCount = 0;
  access = '';
  accessCount = 0;
}

/**
 * Batches go out BATCH_MS after the first thing waiting (one message per turn of the event loop
 * cost the HTTP/2 path half again its CPU per request: few streams per turn, a message each).
 * Status and metrics answers do not wait for it: the main thread asks for a flush first.
 */
const BATCH_MS = 10;

function later(): void {
  timer ??= setTimeout(flush, BATCH_MS);
}

/** A counter or gauge whose changes are sent to the main thread's ProxyMetrics. */
class Sent {
  /** The key of a labels object seen before (the per-request ones are made once: metrics.ts). */
  readonly #keys = new WeakMap<object, string>();
  readonly #unlabelled: string;
  constructor(readonly name: string) {
    this.#unlabelled = `${name}\0{}`;
  }
  inc(labels?: Record<string, string> | number, n = 1): void {
    const by = typeof labels === 'number' ? labels : n;
    let key: string;
    if (typeof labels !== 'object') key = this.#unlabelled;
    else {
      let k = this.#keys.get(labels);
      if (k === undefined) {
        k = `${this.name}\0${JSON.stringify(labels)}`;
        if (Object.isFrozen(labels)) this.#keys.set(labels, k);
      }
      key = k;
    }
    counts.set(key, (counts.get(key) ?? 0) + by);
    later();
  }
  dec(labels?: Record<string, string>, n = 1): void {
    this.inc(labels ?? {}, -n);
  }
}

/** The parts of ProxyMetrics a ProxyServer touches, sent to the main thread. */
const sent = {
  redirects: new Sent('redirects'),
  active: new Sent('active'),
  unresolved: new Sent('unresolved'),
  upstreamErrors: new Sent('upstreamErrors'),
  policyL7: new Sent('policyL7'),
  upstreamRequestErrors: new Sent('upstreamRequestErrors'),
  records: new Sent('records'),
  dns: new Sent('dns'),
  countRecord(r: L7Record): void {
    ProxyMetrics.prototype.countRecord.call(this as unknown as ProxyMetrics, r);
  },
};

const log = pino({ base: { lab: init.lab, component: 'proxy', worker: init.index } });
// The thread's name in ps/top (/proc/<pid>/task/<tid>/comm): node leaves its threads unnamed.
try {
  writeFileSync('/proc/thread-self/comm', `weir-proxy-w${init.index}`);
} catch {
  // not Linux, or /proc not mounted: a name only
}
startDiag(log, init.index);
const ipcacheMap = BpfMap.fromPin(init.ipcachePin, { readOnly: true });
const ipcache = new IpcacheMap(ipcacheMap);
const tunnelMap = BpfMap.fromPin(init.tunnel.pin, { readOnly: true });
const server = new ProxyServer({
  tunnel: new TunnelRoute({
    tunnelMap,
    entryOf: (ip) => ipcache.entry(ip),
    socketPath: init.tunnel.socket,
  }),
  identityOf: (ip) => ipcache.get(ip) ?? IDENTITY_WORLD,
  http: createHttpHandler,
  metrics: sent as unknown as ProxyMetrics,
  records: {
    push: (r: L7Record) => {
      records += recordLine(r) + '\n';
      recordCount++;
      later();
    },
  },
  log,
  onAccess: (a) => {
    access += renderAccess(a);
    accessCount++;
    later();
  },
  reusePort: true,
  clientPorts: new SharedClientPorts(init.clientPorts),
});

async function handle(m: ToWorker): Promise<void> {
  if (m.type === 'snapshot') {
    server.snapshots.apply(m.snapshot);
    await server.listen(m.listeners);
  } else if (m.type === 'close') {
    await server.close();
    flush();
    ipcacheMap.close();
    tunnelMap.close();
    process.exit(0);
  }
  flush();
}

port.on('message', (m: ToWorker) => {
  handle(m).then(
    () => port.postMessage({ type: 'done', id: m.id } satisfies FromWorker),
    (err: unknown) =>
      port.postMessage({
        type: 'done',
        id: m.id,
        error:
          err instanceof WeirError
            ? { code: err.code, message: err.message, details: err.details }
            : { code: 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) },
      } satisfies FromWorker),
  );
});
port.postMessage({ type: 'ready' } satisfies FromWorker);
