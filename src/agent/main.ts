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
import {
  Lab,
  PodDriver,
  externalsOf,
  nodeNamed,
  nodeOf,
  routingOf,
  underlayDevice,
  vxlanDevice,
} from '../lab/index.js';
import { WeirError } from '../shared/errors.js';
import { privateFileMode } from '../shared/private-fs.js';
import { FileStore, type JsonObject, type Lease, type Store } from '../store/index.js';
import { FlowObserver } from '../observe/stream.js';
import { Agent, HOST_DEVICE } from './agent.js';
import { listenApi } from './api-server.js';
import { TUNNEL_INBOUND_PORT, TUNNEL_OUTBOUND_PORT } from '../proxy/tunnel.js';
import { CaStore } from '../auth/ca-store.js';
import { AuthManager, type SvidIssuer } from './auth.js';
import { caNodeIssuer, lazyRemoteIssuer } from './auth-issuer.js';
import { authRoutes, type CaRoutesContext } from './auth-routes.js';
import { AgentClient } from './client.js';
import { nodesPrefix } from '../cluster/keys.js';
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
  checkEncryptionRouting,
  checkSettings,
  defaultValues,
  isPersisted,
  parseServeAddr,
  type AgentSettingValues,
} from './settings.js';
import { listenMetrics } from './metrics-server.js';
import { ProxyManager, proxyPortsOf } from './proxy-manager.js';

/**
 * The lab, and any settings of settings.ts given as flags. Absent persisted settings are as the
 * previous run stored them (else their default); absent others have their default.
 */
export interface AgentOptions extends Partial<AgentSettingValues> {
  lab: string;
  /** The node of the lab this agent runs (default: the first). */
  node?: string;
}

/** The cluster's etcd, or a clear error naming it and where it was tried from. */
async function connectEtcd(endpoints: string[], node: string, netns: string): Promise<Store> {
  const { EtcdStore } = await import('../store/etcd.js');
  try {
    return await EtcdStore.connect({ endpoints, connectTimeoutMs: 10_000 });
  } catch (err) {
    throw new WeirError(
      'ERR_STORE_UNREACHABLE',
      `the lab's etcd ${endpoints.join(',')} is not reachable from node ${node} (namespace ${netns}): ` +
        `${(err as Error).message}; an etcd given by --kvstore-endpoints must be reachable from every node's namespace`,
      { cause: err },
    );
  }
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
    ? await connectEtcd(labConfig.kvstore.endpoints, node.name, node.netns)
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
  checkEncryptionRouting(run.encryption, routingOf(labConfig));
  const proxyPorts = proxyPortsOf(settings.proxyPortRange);
  await local.save();

  // The node registers itself under its lease (--kvstore-lease-ttl; Cilium: 15 min): the API
  // schedules pods on registered nodes, the other nodes take its pods as peers and backends while
  // its record lives. A lease that ran out (etcd unreachable for longer than its TTL: its keys are
  // gone from the cluster) is replaced as soon as etcd answers again: the record is written again,
  // and the reconciler and the identity allocator write their keys again under the new lease.
  let lease: Lease | undefined;
  let stopping = false;
  let reRegistering: Promise<void> | undefined;
  const grant = async () => {
    const l = await store.grantLease(run.kvstoreLeaseTtl);
    l.onLost((err) => {
      if (stopping || lease !== l) return;
      log.error({ err }, 'the node lease was lost: registering the node again');
      reRegistering ??= reRegister().finally(() => (reRegistering = undefined));
    });
    return l;
  };
  const putRecord = async (l: Lease) => {
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
    await store.put(nodeKey(node.name), rec as unknown as JsonObject, { lease: l.id });
  };
  const reRegister = async () => {
    for (let delay = 500; !stopping; delay = Math.min(delay * 2, 5000)) {
      let l: Lease | undefined;
      try {
        l = await grant();
        // The watch delivers the lost keys' deletions first (the old record's among them, all in
        // one revision). Then a pass writes this node's keys again under the new lease — its
        // identity references, taking back the ids its pods hold when nobody took them meanwhile —
        // and only then the node's record: the other nodes see its pods again with the ids they had.
        const end = Date.now() + 30_000;
        while (clusterState.items.has(nodeKey(node.name)) && Date.now() < end)
          await new Promise((r) => setTimeout(r, 100));
        lease = l;
        await reconciler?.leaseChanged();
        await putRecord(l);
        log.info({ lease: l.id }, 'node registered again under a new lease');
        return;
      } catch (err) {
        l?.release();
        log.warn({ err }, 'registering the node again failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };
  const register = async () => {
    const l = await grant();
    await putRecord(l);
    lease = l;
  };
  lc.append({
    name: 'node',
    start: register,
    // The keys stay until the lease runs out: a restart within it finds the node registered.
    stop: async () => {
      stopping = true;
      lease?.release();
      await reRegistering;
    },
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
        onRecordLine: (line) => flows?.ingestRecordLine(line),
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
          netdevs: [
            ...externals.map((e) => ({ ifname: e.nodeIfname, ip: e.transitNodeIP })),
            // Native routing: what other nodes send arrives on the underlay device (NodePort
            // replies from a backend there, DSR connections to a backend here, replies to the
            // node proxy's upstream connections), as Cilium's cil_from_netdev on its --devices.
            ...(routingOf(labConfig) === 'native' && node.underlayIP
              ? [{ ifname: underlayDevice, ip: node.underlayIP }]
              : []),
          ],
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
        lease: () => lease as Lease,
        log,
      });
      // The first pass puts the stored desired state in force before the API answers.
      await reconciler.start();
      agent.startFqdnGc();
    },
    stop: async () => {
      agent?.stopFqdnGc();
      await reconciler?.stop();
      await clusterIds.close();
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

  // Mutual authentication: the lab CA on the first node only (its key stays in that node's state
  // dir; the other nodes' agents send it CSRs through its API), SVIDs for the identities in use,
  // the auth listener, handshakes for 189 drops (src/agent/auth.ts, docs/mtls.md).
  let auth: AuthManager | undefined;
  let caContext: CaRoutesContext | undefined;
  const several = labConfig.spec.nodes.length > 1;
  lc.append({
    name: 'auth',
    start: async () => {
      const a = agent as Agent;
      const otherNodes = () =>
        clusterState
          .values<NodeRecord>(nodesPrefix)
          .map((n) => n.value)
          .filter((n) => n.name !== node.name);
      let issuer: SvidIssuer;
      if (first) {
        const caStore = await CaStore.open(join(agentDir(opts.lab), 'ca'));
        issuer = caNodeIssuer(caStore);
        caContext = {
          store: caStore,
          trustDomain: run.trustDomain,
          maxTtl: run.svidTtl,
          nodes: () => clusterState.values<NodeRecord>(nodesPrefix).map((n) => n.value.name),
          identities: () => a.identities().map((i) => i.id),
          hostedBy: (name) =>
            a.identitiesOf([...desiredView.state.pods.values()].filter((p) => p.node === name)),
          count: (result) => a.metrics.authSvidRequests.inc({ result }),
          log: log.child({ component: 'auth' }),
        };
      } else {
        // The first node's agent runs the CA: its API signs this node's CSRs. It may still be
        // starting (or be down): this agent does not wait for it; until it answers, this node
        // trusts nothing and authenticates no pair (fail closed).
        issuer = lazyRemoteIssuer(new AgentClient(agentSocket(opts.lab), 10_000), node.name);
      }
      auth = new AuthManager({
        issuer,
        ...(several
          ? {
              nodes: otherNodes,
              localIdentities: () => a.endpoints().map((e) => e.identity),
              bindHost: '0.0.0.0',
            }
          : {}),
        trustDomain: run.trustDomain,
        svidTtl: run.svidTtl,
        // --encryption mtls: a node SVID for the node proxy's own upstreams (Gateway, mesh
        // routes, DNS) in the tunnels.
        ...(run.encryption === 'mtls' ? { nodeName: node.name } : {}),
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
            const nodeSvid = await auth.nodeSvid();
            const records = clusterState.values<NodeRecord>(nodesPrefix).map((n) => n.value);
            await proxy.updateTunnel({
              trustDomain: run.trustDomain,
              caPem: auth.caPem,
              outboundPort: TUNNEL_OUTBOUND_PORT,
              inboundPort: TUNNEL_INBOUND_PORT,
              svids: svids
                .sort((x, y) => x.identity - y.identity)
                .map((v) => ({ identity: v.identity, certPem: v.certPem, keyPem: v.keyPem })),
              // The node's own upstreams: its addresses (the forwarded source) and node SVID;
              // the other nodes' records, whose node SVIDs this node's listener accepts.
              node: {
                name: node.name,
                ips: [node.ip, ...(node.ip6 ? [node.ip6] : [])],
                ...(nodeSvid ? { svid: { certPem: nodeSvid.certPem, keyPem: nodeSvid.keyPem } } : {}),
              },
              nodes: records
                .filter((n) => n.name !== node.name && n.underlayIP)
                .map((n) => ({
                  name: n.name,
                  underlayIP: n.underlayIP as string,
                  ips: [n.ip, ...(n.ip6 ? [n.ip6] : [])],
                }))
                .sort((x, y) => x.name.localeCompare(y.name)),
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
        ...authRoutes(
          () => auth,
          () => caContext,
        ),
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
