// `weir agent`: the per-node process. Wires the modules in dependency order, then serves the API.
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { ifindexIn } from '../bpf/index.js';
import { Datapath } from '../datapath/loader.js';
import { Lab } from '../lab/index.js';
import { privateFileMode } from '../shared/private-fs.js';
import { FlowObserver } from '../observe/stream.js';
import { Agent, HOST_DEVICE } from './agent.js';
import { listenApi } from './api-server.js';
import { FlowPipeline } from './flows.js';
import { Lifecycle } from './lifecycle.js';
import { agentPidFile, agentSocket, agentStateFile, nodePinDir } from './paths.js';
import { agentRoutes } from './routes.js';
import { checkSettings, defaultValues, isPersisted, type AgentSettingValues } from './settings.js';
import { ProxyManager, proxyPortsOf } from './proxy-manager.js';
import { Store } from './store.js';

/**
 * The lab, and any settings of settings.ts given as flags. Absent persisted settings are as the
 * previous run stored them (else their default); absent others have their default.
 */
export interface AgentOptions extends Partial<AgentSettingValues> {
  lab: string;
}

export async function runAgent(opts: AgentOptions): Promise<void> {
  const log = pino({ base: { lab: opts.lab } });
  const lc = new Lifecycle();
  const lab = await Lab.open(opts.lab);
  const state = await lab.requireState();
  const pinDir = nodePinDir(opts.lab, state.node.name);
  const store = new Store(agentStateFile(opts.lab));
  const given = Object.fromEntries(Object.entries(opts).filter(([k, v]) => v !== undefined && k !== 'lab'));
  const persisted = Object.fromEntries(Object.entries(given).filter(([k]) => isPersisted(k)));
  const settings = store.settings({
    ...persisted,
    // A node without IPv6 cannot back an IPv6 ClusterIP: no IPv6 service CIDR unless asked for.
    serviceCIDRv6: opts.serviceCIDRv6 ?? (state.node.ip6 ? undefined : ''),
  });
  const run: AgentSettingValues = { ...defaultValues, ...given, ...settings };
  // Refuse bad settings (given now or stored by an earlier run) before anything starts.
  checkSettings(run);
  const proxyPorts = proxyPortsOf(settings.proxyPortRange);
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
        hostRouting: settings.hostRouting,
        eventsBufferBytes: run.eventsBufferBytes,
        // Where weir_to_container sends connections redirected to the node proxy.
        hostIfindex: ifindexIn(state.node.netns, HOST_DEVICE),
      });
    },
    // Pins stay: the datapath keeps enforcing while no agent runs.
    stop: () => datapath?.close(),
  });

  const observer = new FlowObserver({ capacity: run.flows, queueSize: run.flowQueue });
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
      }, run.ctGcInterval * 1000);
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
