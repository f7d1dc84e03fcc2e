// `weir agent`: the per-node process. Wires the modules in dependency order — Store, node
// registration, datapath, the desired-state watch and the node's reconciler, then the API — and
// serves until SIGTERM/SIGINT.
import type { Server } from 'node:http';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { ifindexIn } from '../bpf/index.js';
import { DesiredView } from '../cluster/desired.js';
import { ClusterIdentities } from '../cluster/identities.js';
import { Informer } from '../cluster/informer.js';
import { desiredPrefix, nodeKey, statePrefix } from '../cluster/keys.js';
import type { NodeRecord } from '../cluster/objects.js';
import { Datapath } from '../datapath/loader.js';
import { Lab, PodDriver, externalsOf, nodeNamed, nodeOf, routingOf, vxlanDevice } from '../lab/index.js';
import { privateFileMode } from '../shared/private-fs.js';
import { FileStore, type JsonObject, type Lease, type Store } from '../store/index.js';
import { FlowObserver } from '../observe/stream.js';
import { Agent, HOST_DEVICE } from './agent.js';
import { listenApi } from './api-server.js';
import { CertificateAuthority } from '../auth/ca.js';
import { TUNNEL_INBOUND_PORT, TUNNEL_OUTBOUND_PORT } from '../proxy/tunnel.js';
import { AuthManager } from './auth.js';
import { authRoutes } from './auth-routes.js';
import { FlowPipeline } from './flows.js';
import { ClusterDns } from './cluster-dns.js';
import { Lifecycle } from './lifecycle.js';
import { Intake } from './intake.js';
import { LocalState } from './local-state.js';
import { agentDir, agentPidFile, agentSocket, agentStoreFile, nodePinDir } from './paths.js';
import { Reconciler } from './reconcile.js';
import { agentRoutes } from './routes.js';
import { CniService, cniRoutes } from './cni.js';
import {
  checkSettings,
  defaultValues,
  isPersisted,
  parseServeAddr,
  type AgentSettingValues,
} from './settings.js';
import { listenMetrics } from './metrics-server.js';
import { ProxyManager, proxyPortsOf } from './proxy-manager.js';

/** The node's keys (its record, its reconciled revision) live as long as this lease (Cilium: 15 min). */
const nodeLeaseSeconds = 900;

/**
 * The lab, and any settings of settings.ts given as flags. Absent persisted settings are as the
 * previous run stored them (else their default); absent others have their default.
 */
export interface AgentOptions extends Partial<AgentSettingValues> {
  lab: string;
  /** The node of the lab this agent runs (default: the first). */
  node?: string;
}

export async function runAgent(opts: AgentOptions): Promise<void> {
  const lc = new Lifecycle();
  const lab = await Lab.open(opts.lab);
  const labConfig = await lab.requireConfig();
  const node = nodeNamed(labConfig, opts.node);
  const log = pino({ base: { lab: opts.lab, node: node.name } });
  // The first node's agent keeps the lab's paths (a lab of one node: the only agent).
  const first = node.name === nodeOf(labConfig).name;
  const dirNode = first ? undefined : node.name;
  // Externals hang off the first node.
  const externals = first ? externalsOf(labConfig) : [];
  const pinDir = nodePinDir(opts.lab, node.name);
  // One node: a root-only file only this process opens. A cluster: the lab's etcd, shared by
  // every node's agent.
  const store: Store = labConfig.kvstore
    ? await (await import('../store/etcd.js')).EtcdStore.connect({ endpoints: labConfig.kvstore.endpoints })
    : await FileStore.open(agentStoreFile(opts.lab));
  lc.append({ name: 'store', stop: () => store.close() });
  const local = await LocalState.load(store, node.name);
  const given = Object.fromEntries(
    Object.entries(opts).filter(([k, v]) => v !== undefined && k !== 'lab' && k !== 'node'),
  );
  const persisted = Object.fromEntries(Object.entries(given).filter(([k]) => isPersisted(k)));
  const settings = local.mergeSettings({
    ...persisted,
    // A node without IPv6 cannot back an IPv6 ClusterIP: no IPv6 service CIDR unless asked for.
    serviceCIDRv6: opts.serviceCIDRv6 ?? (node.ip6 ? undefined : ''),
  });
  const run: AgentSettingValues = { ...defaultValues, ...given, ...settings };
  // Refuse bad settings (given now or stored by an earlier run) before anything starts.
  checkSettings(run);
  const proxyPorts = proxyPortsOf(settings.proxyPortRange);
  await local.save();

  // The node registers itself under its lease: the API schedules pods on registered nodes.
  let lease: Lease | undefined;
  lc.append({
    name: 'node',
    start: async () => {
      lease = await store.grantLease(nodeLeaseSeconds);
      lease.onLost((err) => log.error({ err }, 'the node lease was lost'));
      const rec: NodeRecord = {
        name: node.name,
        ip: node.ip,
        ...(node.ip6 ? { ip6: node.ip6 } : {}),
        podCIDR: node.podCIDR,
        ...(node.podCIDRv6 ? { podCIDRv6: node.podCIDRv6 } : {}),
        ...(node.underlayIP ? { underlayIP: node.underlayIP } : {}),
        netns: node.netns,
        agentPid: process.pid,
        startedAt: new Date().toISOString(),
      };
      await store.put(nodeKey(node.name), rec as unknown as JsonObject, { lease: lease.id });
    },
    // The keys stay until the lease runs out: a restart within it finds the node registered.
    stop: () => lease?.release(),
  });

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
        hostIfindex: ifindexIn(node.netns, HOST_DEVICE),
      });
      // --encryption mtls: pods' TCP to other nodes' pods goes to the proxy's tunnel listener
      // (fails closed until the proxy listens); none: plain VXLAN.
      datapath.setEncryptPort(run.encryption === 'mtls' ? TUNNEL_OUTBOUND_PORT : 0);
    },
    // Pins stay: the datapath keeps enforcing while no agent runs.
    stop: () => datapath?.close(),
  });

  const observer = new FlowObserver({ capacity: run.flows, queueSize: run.flowQueue });
  let flows: FlowPipeline | undefined;

  // The node proxy (L7), one per node in the node's namespace: adopted when a previous agent left
  // one running, else started the first time a policy needs it. Never stopped here: it outlives
  // the agent.
  let proxy: ProxyManager | undefined;
  lc.append({
    name: 'proxy',
    start: async () => {
      proxy = new ProxyManager({
        lab: opts.lab,
        ...(dirNode ? { node: dirNode } : {}),
        nodeNetns: node.netns,
        ipcachePin: join(pinDir, 'weir_ipcache'),
        ports: { ...proxyPorts, dnsRejectCode: settings.tofqdnsDnsRejectResponseCode },
        workers: run.proxyWorkers,
        log: log.child({ component: 'proxy-manager' }),
        onRecord: (r) => flows?.ingestL7(r),
        onLost: (n) => observer.recordLost('OBSERVER_EVENTS_QUEUE', n),
      });
      // A proxy the previous agent left knows what that agent's FQDN cache held; this one holds
      // what was saved, maybe less: the proxy asks again from now on.
      if (await proxy.adopt()) await proxy.forgetFqdn();
    },
    stop: () => proxy?.close(),
  });

  let agent: Agent | undefined;
  const desired = new Informer(store, desiredPrefix, {
    onError: (err) => log.warn({ err }, 'desired watch'),
  });
  const desiredView = new DesiredView(desired);
  const clusterState = new Informer(store, statePrefix, {
    onError: (err) => log.warn({ err }, 'state watch'),
  });
  const clusterIds = new ClusterIdentities(store, clusterState, node.name, () => lease);
  let reconciler: Reconciler | undefined;
  lc.append({
    name: 'agent',
    start: async () => {
      agent = new Agent(
        // Every setting in force: stored, given now (--tofqdns-min-ttl is not stored), or default.
        { lab: opts.lab, pinDir, ...run, proxyPorts },
        {
          name: node.name,
          netns: node.netns,
          ip: node.ip,
          ...(node.ip6 ? { ip6: node.ip6 } : {}),
          cgroupPath: node.cgroupPath,
          netdevs: externals.map((e) => ({ ifname: e.nodeIfname, ip: e.transitNodeIP })),
          ...(routingOf(labConfig) === 'tunnel' ? { tunnelDevice: vxlanDevice } : {}),
          // Gateway addresses and listeners (north-south) are the first node's, as the externals.
          ...(first ? {} : { meshOnly: true }),
        },
        local,
        datapath as Datapath,
        log,
      );
      agent.proxy = proxy;
      agent.clusterIds = clusterIds;
      agent.clusterDns = new ClusterDns(opts.lab, {
        ttl: labConfig.spec.dns?.ttl ?? 3600,
        records: labConfig.spec.dns?.records ?? {},
        externals: labConfig.spec.externals,
      });
      await clusterState.start();
      await desired.start();
      reconciler = new Reconciler({
        store,
        node,
        driver: new PodDriver(labConfig, node),
        agent,
        desired,
        view: desiredView,
        state: clusterState,
        lease: lease as Lease,
        log,
      });
      // The first pass puts the stored desired state in force before the API answers.
      await reconciler.start();
      agent.startFqdnGc();
    },
    stop: async () => {
      agent?.stopFqdnGc();
      clusterIds.close();
      await reconciler?.stop();
      await desired.stop();
      await clusterState.stop();
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
      flows = new FlowPipeline({
        datapath: dp,
        agent: a,
        observer,
        nodeName: node.name,
        log,
        onAuthRequired: (pair) => void auth?.required(pair),
      });
      flows.start();
    },
    stop: () => flows?.stop(),
  });

  // Mutual authentication: the lab CA (its key stays in this node's state dir), SVIDs for the
  // identities in use, the auth listener, handshakes for 189 drops (src/agent/auth.ts).
  let auth: AuthManager | undefined;
  lc.append({
    name: 'auth',
    start: async () => {
      const a = agent as Agent;
      auth = new AuthManager({
        ca: await CertificateAuthority.open(join(agentDir(opts.lab), 'ca')),
        trustDomain: run.trustDomain,
        svidTtl: run.svidTtl,
        listen: { host: node.ip, port: run.authListenerPort },
        map: (datapath as Datapath).auth,
        identities: () => a.identities(),
        log: log.child({ component: 'auth' }),
      });
      await auth.start();
      a.metrics.sources.auth = () => auth?.counts();
    },
    stop: () => auth?.stop(),
  });

  // --encryption mtls: the node proxy gets the SVIDs of this node's pod identities and the CA,
  // again whenever they change (issue, renewal, a new identity), and runs the mTLS tunnels.
  let tunnelTimer: NodeJS.Timeout | undefined;
  if (run.encryption === 'mtls')
    lc.append({
      name: 'tunnel',
      start: async () => {
        const a = agent as Agent;
        let busy = false;
        const sync = async () => {
          if (busy || !auth || !proxy) return;
          busy = true;
          try {
            const svids = await auth.svidsOf(a.endpoints().map((e) => e.identity));
            await proxy.updateTunnel({
              trustDomain: run.trustDomain,
              caPem: auth.caPem,
              outboundPort: TUNNEL_OUTBOUND_PORT,
              inboundPort: TUNNEL_INBOUND_PORT,
              svids: svids
                .sort((x, y) => x.identity - y.identity)
                .map((v) => ({ identity: v.identity, certPem: v.certPem, keyPem: v.keyPem })),
            });
          } catch (err) {
            log.error({ err }, 'tunnel: the proxy did not take the tunnel config');
          } finally {
            busy = false;
          }
        };
        await sync();
        tunnelTimer = setInterval(() => void sync(), 1000);
        tunnelTimer.unref();
      },
      stop: () => clearInterval(tunnelTimer),
    });

  let gcTimer: NodeJS.Timeout | undefined;
  lc.append({
    name: 'ct-gc',
    start: () => {
      gcTimer = setInterval(() => {
        try {
          const gc = datapath?.ct.collectUnclosed();
          if (gc && gc.removed > 0) log.info({ removed: gc.removed }, 'conntrack gc');
          flows?.closeExpired(gc?.unclosed ?? []);
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
      const a = agent as Agent;
      const intake = new Intake({
        store,
        lab: opts.lab,
        desired,
        view: desiredView,
        state: clusterState,
        allocateServices: (stored) => a.lb.allocator(stored),
        log,
      });
      server = await listenApi(agentSocket(opts.lab, dirNode), [
        ...agentRoutes(a, intake, reconciler as Reconciler, observer, proxy),
        ...authRoutes(() => auth),
        ...cniRoutes(
          new CniService({
            agent: a,
            intake,
            reconciler: reconciler as Reconciler,
            node,
            state: clusterState,
            desired: () => desiredView.state,
          }),
        ),
      ]);
      writeFileSync(agentPidFile(opts.lab, dirNode), String(process.pid), { mode: privateFileMode });
    },
    stop: () =>
      new Promise<void>((resolve) => {
        rmSync(agentPidFile(opts.lab, dirNode), { force: true });
        server?.closeAllConnections();
        server?.close(() => resolve());
      }),
  });

  const metricsAddr = parseServeAddr(run.prometheusServeAddr);
  let metricsServer: Server | undefined;
  if (metricsAddr)
    lc.append({
      name: 'metrics',
      start: async () => {
        const a = agent as Agent;
        metricsServer = await listenMetrics(metricsAddr, async () => ({
          contentType: a.metrics.registry.contentType,
          text: (await a.metrics.registry.metrics()) + ((await proxy?.metricsText()) ?? ''),
        }));
      },
      stop: () =>
        new Promise<void>((resolve) => {
          metricsServer?.closeAllConnections();
          metricsServer?.close(() => resolve());
        }),
    });

  await lc.start();
  log.info(
    { pid: process.pid, pinDir, socket: agentSocket(opts.lab, dirNode), store: store.backend },
    'agent ready',
  );

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
