// `weir agent`: the per-node process. Wires the modules in dependency order, then serves the API.
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { ifindexIn } from '../bpf/index.js';
import { Datapath, type LbMode } from '../datapath/loader.js';
import { Lab } from '../lab/index.js';
import { privateFileMode } from '../shared/private-fs.js';
import { FlowObserver } from '../observe/stream.js';
import { parseServiceCIDR } from '../service/allocate.js';
import { checkMaglevSize, maglevSeed } from '../service/maglev.js';
import { Agent, parseLabelFilter } from './agent.js';
import { listenApi } from './api-server.js';
import { FlowPipeline } from './flows.js';
import { Lifecycle } from './lifecycle.js';
import { agentPidFile, agentSocket, agentStateFile, nodePinDir } from './paths.js';
import { agentRoutes } from './routes.js';
import { Store } from './store.js';
import { HOST_DEVICE } from './agent.js';
import { ProxyManager, proxyPortsOf } from './proxy-manager.js';

export interface AgentOptions {
  lab: string;
  /** Absent: as stored by the previous run, else the default. */
  policyMapMax?: number;
  identityLabels?: string;
  /** false: the datapath writes no flow events (observability off). Absent: as stored. */
  flowEvents?: boolean;
  ctGcIntervalMs: number;
  /** Flows kept for `weir observe` (Hubble's event buffer capacity, default 4095). */
  flows?: number;
  /** Lines a `weir observe -f` follower may have waiting before new ones are shed (default 1024). */
  flowQueue?: number;
  /** Bytes of the weir_events ring buffer (default: the datapath's, 4 MiB). */
  eventsBufferBytes?: number;
  /** Service backend selection, Maglev table size and seed, ClusterIP range. Absent: as stored. */
  lbAlgorithm?: 'random' | 'maglev';
  maglevTableSize?: number;
  maglevSeed?: string;
  serviceCIDR?: string;
  /** '' = no IPv6 service CIDR. */
  serviceCIDRv6?: string;
  /** NodePort forwarding mode (snat, dsr). Absent: as stored. */
  lbMode?: LbMode;
  /** Services at the socket (true) or at tc only (false). Absent: as stored. */
  socketLB?: boolean;
  /** The node proxy's port range "MIN-MAX" (listeners on the first two). Absent: as stored. */
  proxyPortRange?: string;
}

export async function runAgent(opts: AgentOptions): Promise<void> {
  const log = pino({ base: { lab: opts.lab } });
  const lc = new Lifecycle();
  const lab = await Lab.open(opts.lab);
  const state = await lab.requireState();
  const pinDir = nodePinDir(opts.lab, state.node.name);
  const store = new Store(agentStateFile(opts.lab));
  const settings = store.settings({
    policyMapMax: opts.policyMapMax,
    identityLabels: opts.identityLabels,
    flowEvents: opts.flowEvents,
    lbAlgorithm: opts.lbAlgorithm,
    maglevTableSize: opts.maglevTableSize,
    maglevSeed: opts.maglevSeed,
    serviceCIDR: opts.serviceCIDR,
    // A node without IPv6 cannot back an IPv6 ClusterIP: no IPv6 service CIDR unless asked for.
    serviceCIDRv6: opts.serviceCIDRv6 ?? (state.node.ip6 ? undefined : ''),
    lbMode: opts.lbMode,
    socketLB: opts.socketLB,
    proxyPortRange: opts.proxyPortRange,
  });
  // Refuse bad settings before anything starts.
  if (settings.identityLabels) parseLabelFilter(settings.identityLabels);
  checkMaglevSize(settings.maglevTableSize);
  maglevSeed(settings.maglevSeed);
  const proxyPorts = proxyPortsOf(settings.proxyPortRange);
  parseServiceCIDR(settings.serviceCIDR);
  if (settings.serviceCIDRv6) parseServiceCIDR(settings.serviceCIDRv6, 'IPv6');
  store.save();

  let datapath: Datapath | undefined;
  lc.append({
    name: 'datapath',
    start: () => {
      datapath = Datapath.open({
        pinDir,
        policyMapMax: settings.policyMapMax,
        events: settings.flowEvents,
        maglevTableSize: settings.maglevTableSize,
        lbMode: settings.lbMode,
        // Where weir_to_container sends connections redirected to the node proxy.
        hostIfindex: ifindexIn(state.node.netns, HOST_DEVICE),
        ...(opts.eventsBufferBytes ? { eventsBufferBytes: opts.eventsBufferBytes } : {}),
      });
    },
    // Pins stay: the datapath keeps enforcing while no agent runs.
    stop: () => datapath?.close(),
  });

  const observer = new FlowObserver({
    ...(opts.flows ? { capacity: opts.flows } : {}),
    ...(opts.flowQueue ? { queueSize: opts.flowQueue } : {}),
  });
  let flows: FlowPipeline | undefined;

  // The node proxy (L7): adopted when a previous agent left one running, else started the first
  // time a policy needs it. Never stopped here: it outlives the agent.
  let proxy: ProxyManager | undefined;
  lc.append({
    name: 'proxy',
    start: async () => {
      proxy = new ProxyManager({
        lab: opts.lab,
        nodeNetns: state.node.netns,
        ipcachePin: join(pinDir, 'weir_ipcache'),
        ports: proxyPorts,
        log: log.child({ component: 'proxy-manager' }),
        onRecord: (r) => flows?.ingestL7(r),
        onLost: (n) => observer.recordLost('OBSERVER_EVENTS_QUEUE', n),
      });
      await proxy.adopt();
    },
    stop: () => proxy?.close(),
  });

  let agent: Agent | undefined;
  lc.append({
    name: 'agent',
    start: async () => {
      agent = new Agent(
        { lab: opts.lab, pinDir, ...settings, proxyPorts },
        store,
        lab,
        datapath as Datapath,
        log,
      );
      agent.proxy = proxy;
      await agent.sync();
    },
  });

  lc.append({
    name: 'flows',
    start: () => {
      const dp = datapath as Datapath;
      const a = agent as Agent;
      a.metrics.sources.datapathCounters = () => dp.metrics.list();
      a.metrics.sources.lostEvents = () => observer.status().lost;
      a.metrics.sources.endpoints = () => a.endpoints().length;
      flows = new FlowPipeline({ datapath: dp, agent: a, observer, nodeName: state.node.name, log });
      flows.start();
    },
    stop: () => flows?.stop(),
  });

  let gcTimer: NodeJS.Timeout | undefined;
  lc.append({
    name: 'ct-gc',
    start: () => {
      gcTimer = setInterval(() => {
        try {
          const removed = datapath?.ct.collect() ?? [];
          if (removed.length > 0) log.info({ removed: removed.length }, 'conntrack gc');
          flows?.closeExpired(removed);
        } catch (err) {
          log.error({ err }, 'conntrack gc failed');
        }
      }, opts.ctGcIntervalMs);
      gcTimer.unref();
    },
    stop: () => clearInterval(gcTimer),
  });

  let server: Awaited<ReturnType<typeof listenApi>> | undefined;
  lc.append({
    name: 'api',
    start: async () => {
      server = await listenApi(agentSocket(opts.lab), agentRoutes(agent as Agent, observer, proxy));
      writeFileSync(agentPidFile(opts.lab), String(process.pid), { mode: privateFileMode });
    },
    stop: () =>
      new Promise<void>((resolve) => {
        rmSync(agentPidFile(opts.lab), { force: true });
        server?.closeAllConnections();
        server?.close(() => resolve());
      }),
  });

  await lc.start();
  log.info({ pid: process.pid, pinDir, socket: agentSocket(opts.lab) }, 'agent ready');

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'agent stopping');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  const errors = await lc.stop();
  for (const err of errors) log.error({ err }, 'stop failed');
}
