// `weir proxy run`: the node proxy, one process per node in the node's network namespace, started
// (and restarted) by the agent, detached from it: it outlives an agent restart, and a restarted
// agent adopts it through its pid file and admin socket. It listens only once the agent has sent
// it the first L7 policy snapshot (until then redirected connections fail closed in the datapath).
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Agent, request, type Server } from 'node:http';
import { agentSocket } from '../agent/paths.js';
import { pino } from 'pino';
import { BpfMap } from '../bpf/index.js';
import { IpcacheMap } from '../datapath/maps/ipcache/index.js';
import { privateDirSync, privateFileMode } from '../shared/private-fs.js';
import { AccessLog } from './access-log.js';
import { startDiag } from './diag.js';
import { listenAdmin } from './admin.js';
import { createHttpHandler } from './http/handler.js';
import { ProxyMetrics } from './metrics.js';
import { proxyAccessLogFile, proxyDir, proxyPidFile, proxySocket, proxyTitle } from './paths.js';
import { RecordQueue } from './records.js';
import { ProxyServer } from './server.js';
import { GatewayServer } from './gateway/server.js';
import { FqdnLearner, learnItemsOf, type Held } from './dns/learner.js';
import { SharedClientPorts } from './client-ports.js';
import { IDENTITY_WORLD, ProxyWorkers, defaultWorkers } from './workers.js';
import { TunnelProxy } from './tunnel.js';
import { TunnelRoute } from './tunnel-route.js';

/** The connection to the agent's API, kept open between requests. */
const keepAlive = new Agent({ keepAlive: true, maxSockets: 4 });

/** POST a JSON body to a unix-socket HTTP API; rejects on a non-2xx answer or after `timeoutMs`. */
function postJson<T>(socketPath: string, path: string, body: unknown, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request(
      {
        socketPath,
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
        timeout: timeoutMs,
        agent: keepAlive,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          if ((res.statusCode ?? 500) >= 300) reject(new Error(`${path}: ${res.statusCode} ${text}`));
          else resolve((text ? JSON.parse(text) : undefined) as T);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${path}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

export interface ProxyOptions {
  lab: string;
  /** The lab's node this proxy serves (its agent, paths and title); absent: the first node. */
  node?: string;
  /** The pinned weir_ipcache of the node (opened read only). */
  ipcachePin: string;
  /** L7 records kept for the agent while it does not read them. */
  recordQueue?: number;
  /** The access log's file size before it is rotated (bytes). */
  accessLogMaxBytes?: number;
  /** Proxy threads serving HTTP (workers.ts); 0 or absent: one per CPU. */
  workers?: number;
}

export async function runProxy(o: ProxyOptions): Promise<void> {
  process.title = proxyTitle(o.lab, o.node);
  const log = pino({ base: { lab: o.lab, ...(o.node ? { node: o.node } : {}), component: 'proxy' } });
  startDiag(log, 0);
  const ipcacheMap = BpfMap.fromPin(o.ipcachePin, { readOnly: true });
  const ipcache = new IpcacheMap(ipcacheMap);
  // --encryption mtls: the datapath's switch (weir_tunnel, pinned beside the ipcache) decides
  // which of the proxy's own upstreams go through the tunnel (tunnel-route.ts).
  const tunnelPin = join(dirname(o.ipcachePin), 'weir_tunnel');
  const tunnelMap = BpfMap.fromPin(tunnelPin, { readOnly: true });
  const handoffSocket = join(proxyDir(o.lab, o.node), 'tunnel.sock');
  const tunnelRoute = new TunnelRoute({
    tunnelMap,
    entryOf: (ip) => ipcache.entry(ip),
    socketPath: handoffSocket,
  });
  const metrics = new ProxyMetrics();
  const records = new RecordQueue(o.recordQueue);
  const accessLog = new AccessLog({
    path: proxyAccessLogFile(o.lab, o.node),
    ...(o.accessLogMaxBytes ? { maxBytes: o.accessLogMaxBytes } : {}),
  });
  const handler = 'http';
  const learner = new FqdnLearner({
    send: async (items) =>
      (await postJson<{ held: Held[] }>(agentSocket(o.lab, o.node), '/v1/fqdn/learn', { items }, 5000)).held,
    onError: (err, items) => log.error({ err, items }, 'FQDN learn failed: answers withheld'),
  });
  const threads = o.workers || defaultWorkers();
  const clientPorts = threads > 1 ? SharedClientPorts.buffer() : undefined;
  const workers = clientPorts
    ? new ProxyWorkers({
        count: threads - 1,
        lab: o.lab,
        ipcachePin: o.ipcachePin,
        clientPorts,
        tunnel: { pin: tunnelPin, socket: handoffSocket },
        metrics,
        records,
        accessLog,
        log,
      })
    : undefined;
  const server = new ProxyServer({
    ...(clientPorts ? { reusePort: true, clientPorts: new SharedClientPorts(clientPorts) } : {}),
    // No ipcache entry: the world (as the datapath decides). A failed read throws: the connection
    // is reset (fail closed), never judged as some other peer.
    identityOf: (ip) => ipcache.get(ip) ?? IDENTITY_WORLD,
    http: createHttpHandler,
    tunnel: tunnelRoute,
    metrics,
    records,
    log,
    onAccess: (a) => accessLog.write(a),
    // toFQDNs: the agent puts an answer's new addresses in force before the pod gets the answer.
    beforeRelease: ({ endpointId, name, answer }) => learner.learn(...learnItemsOf(endpointId, name, answer)),
  });
  const gateway = new GatewayServer({
    log,
    registry: metrics.registry,
    tunnel: tunnelRoute,
    onRecord: (r) => {
      metrics.records.inc();
      metrics.countRecord(r);
      records.push(r);
    },
  });
  // --encryption mtls: the tunnels between the nodes' proxies, on the main thread.
  const tunnel = new TunnelProxy({
    entryOf: (ip) => ipcache.entry(ip),
    registry: metrics.registry,
    log: log.child({ component: 'tunnel' }),
  });
  privateDirSync(proxyDir(o.lab, o.node));
  await tunnel.listenHandoff(handoffSocket);
  await workers?.start();
  metrics.sources.snapshotVersion = () => server.snapshots.version;
  metrics.sources.recordsLost = () => records.lost;
  metrics.sources.accessLog = () => accessLog.stats();
  const admin: Server = await listenAdmin(proxySocket(o.lab, o.node), {
    lab: o.lab,
    handler,
    startedAt: new Date().toISOString(),
    server,
    metrics,
    records,
    accessLog,
    gateway,
    fqdn: learner,
    tunnel,
    ...(workers ? { workers } : {}),
  });
  writeFileSync(proxyPidFile(o.lab, o.node), String(process.pid), { mode: privateFileMode });
  log.info(
    { pid: process.pid, socket: proxySocket(o.lab, o.node), handler, threads },
    'proxy ready, waiting for a snapshot',
  );

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'proxy stopping');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  rmSync(proxyPidFile(o.lab, o.node), { force: true });
  admin.closeAllConnections();
  admin.close();
  learner.close();
  await Promise.all([server.close(), workers?.close(), tunnel.close()]);
  await gateway.close();
  accessLog.close();
  ipcacheMap.close();
  tunnelMap.close();
  process.exit(0);
}
