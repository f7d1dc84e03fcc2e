// The per-node agent's datapath owner. The reconciler (reconcile.ts) hands it a view of the desired
// state as it stands on the node — namespaces, the pods with their veths, policy and service
// objects — and it turns that into kernel map contents, writing only what changed:
//
//   pods of the node, namespaces ─┐
//   policy objects ───────────────┼─► engine (pure) ─► per-endpoint entries, ipcache ─► diff ─► maps
//   identity allocator (persisted)┘
//   service objects + pods ──────────► lb model (pure) ─────────────────────────────► diff ─► lb maps
//
// What must survive a restart (identities, endpoint ids, lb ids) is in the Store (LocalState); the
// maps are pinned, so a restarted agent reads back what the kernel holds and rewrites nothing that
// is still right.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger as Pino } from 'pino';
import { macIn } from '../bpf/index.js';
import { Datapath } from '../datapath/loader.js';
import type { PolicyMapKey } from '../datapath/maps/policy/index.js';
import { EndpointFlags } from '../datapath/maps/endpoints/layout.js';
import { IdentityAllocator, type IdentityAllocatorState } from '../identity/allocator.js';
import type { LabelFilter } from '../identity/filter.js';
import type { DesiredObject, NamespaceInfo } from '../cluster/objects.js';
import type { PodPort } from '../k8s/core.js';
import { ensureProxyRouting, syncGatewayAddresses } from '../lab/index.js';
import type { ClusterDns } from './cluster-dns.js';
import { FqdnCache } from './fqdn-cache.js';
import { compileStored, gatewaySnapshotOf, meshRedirects, type MeshRedirects } from './gateway.js';
import type { GatewaySnapshot } from '../proxy/gateway/server.js';
import { isPolicyKind, validatePolicy } from '../policy/api/index.js';
import type { Policy } from '../policy/api/types.js';
import type { EndpointL7Policy } from '../policy/l7/types.js';
import { diff, type EntryDiff } from '../policy/diff.js';
import {
  computePolicy,
  SelectorCache,
  endpointLabels,
  type EngineConfig,
  type EngineInput,
  type EngineOutput,
  type EndpointPolicy,
} from '../policy/engine.js';
import type { DiffPod } from '../policy/verdict-diff.js';
import { DIR_INGRESS, PREFIX_PORT_ANY, PREFIX_PROTO_ANY, type PolicyMapEntry } from '../policy/entry.js';
import { WeirError } from '../shared/errors.js';
import { IDENTITY_REMOTE_NODE, IDENTITY_WORLD } from '../identity/reserved.js';
import { isServiceKind } from '../service/api/index.js';
import { connectionsToRevoke } from './ct-revalidate.js';
import { ServiceLb, type LbSettings } from './lb.js';
import { AgentMetrics } from './metrics.js';
import { objectKey, type EndpointConfig } from '../cluster/keys.js';
import type { LocalState } from './local-state.js';
import type { ClusterIdentities } from '../cluster/identities.js';
import { parseLabelFilter } from './settings.js';

/** ENDPOINT_F_FAIL_CLOSED (bpf/lib/common.h): the endpoint's policy did not fit its map. */
const ENDPOINT_F_FAIL_CLOSED = EndpointFlags.failClosed;
/** ENDPOINT_F_AUDIT: policy audit mode (policy denials pass, reported as AUDIT). */
const ENDPOINT_F_AUDIT = EndpointFlags.audit;

/** The node's device holding its IP (the lab's dummy): where the node proxy is reached from tc egress. */
export const HOST_DEVICE = 'weir_host';

/** The pod's own interface (the lab's, and a CNI's default CNI_IFNAME). */
const POD_IFNAME = 'eth0';

/** A pod to attach: its host veth and cgroup; with its netns and addresses, host routing into it. */
export interface AttachedPod {
  namespace: string;
  name: string;
  hostIfname: string;
  hostIfindex: number;
  cgroupPath: string;
  netns?: string;
  ip?: string;
  ip6?: string;
  /** The MAC of the pod's interface when the caller knows it (a runtime's container, weir-cni; a new lab pod). */
  mac?: string;
  /** The MAC of its host veth when the caller knows it (a new lab pod). */
  hostMac?: string;
}

export interface AgentConfig extends LbSettings {
  lab: string;
  /** Pins: /sys/fs/bpf/weir/<lab>/<node> */
  pinDir: string;
  policyMapMax: number;
  /** Which labels make up identities (Cilium's `labels` syntax); empty = the defaults. */
  identityLabels: string;
  /** East-west services at the socket; false: the pods' tc programs translate (and no hook stays attached). */
  socketLB?: boolean;
  /** The node proxy's listener ports (from --proxy-port-range); absent: the engine's defaults. */
  proxyPorts?: { ingress: number; egress: number; dns?: number };
  /** toFQDNs: the shortest life of a learned address (s) and the addresses per endpoint and name. */
  tofqdnsMinTtl?: number;
  tofqdnsEndpointMaxIpPerHostname?: number;
  /** --policy-audit-mode: every endpoint audits (policy denials pass, reported as AUDIT). */
  policyAuditMode?: boolean;
}

/** Where the L7 policy goes (the node proxy's manager): before the entries that redirect to it. */
export interface L7PolicySink {
  update(endpoints: EndpointL7Policy[]): Promise<void>;
  /** The Gateway data plane's tables and endpoints (north-south listeners). */
  updateGateway?(snapshot: Omit<GatewaySnapshot, 'version'>): Promise<void>;
  /** The DNS proxy forgets what it knew the FQDN cache holds (the cache lost entries). */
  forgetFqdn?(): Promise<void>;
}

export interface EndpointStatus {
  id: number;
  namespace: string;
  pod: string;
  ips: string[];
  ifname: string;
  ifindex: number;
  identity: number;
  labels: string[];
  ingressEnforced: boolean;
  egressEnforced: boolean;
  policyEntries: number;
  state: 'ready' | 'fail-closed';
  /** Policy audit mode: what policy denies passes, reported as AUDIT flows. */
  policyAuditMode?: boolean;
  error?: string;
}

/** A pod as the agent sees it: desired labels and ports, where it runs, whether it is ready. */
export interface AgentPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ports: PodPort[];
  node: string;
  ip: string;
  ip6?: string;
  /** The host-side veth in the node's netns (pods of this node). */
  hostIfname: string;
  hostIfindex: number;
  cgroupPath: string;
  ready: boolean;
  /** Annotated weir.dev/terminating: "true": a TERMINATING service backend. */
  terminating?: true;
  noWorkload?: true;
  /** A runtime's container without its Pod object yet: Cilium's reserved:init identity. */
  init?: true;
}

/** The node the agent runs on, as the datapath needs it. */
export interface AgentNode {
  name: string;
  netns: string;
  ip: string;
  ip6?: string;
  cgroupPath: string;
  /** Devices facing externals (NodePort from outside) and the node's address on each. */
  netdevs: { ifname: string; ip: string }[];
  /** Tunnel mode: the node's VXLAN device (external), where pods' traffic to other nodes goes. */
  tunnelDevice?: string;
  /**
   * A node other than a lab's first: it holds no Gateway address and its proxy gets no Gateway
   * listeners (north-south stays on the first node, where the externals are), only the mesh
   * tables and L7 policy of its own pods.
   */
  meshOnly?: boolean;
}

/** Everything a regeneration computes from. */
export interface AgentView {
  namespaces: NamespaceInfo[];
  /** Every pod with an address (this node's and, later, other nodes'). */
  pods: AgentPod[];
  /** Policy and service objects. */
  objects: DesiredObject[];
  /** Endpoint options (`weir endpoint config`) by "ns/pod". */
  endpointConfig?: Map<string, EndpointConfig>;
  /** The other nodes' addresses (a cluster): reserved:remote-node in the ipcache. */
  remoteNodeIPs?: string[];
  /** The other nodes (a cluster): their pod CIDRs, node address and underlay address. */
  remoteNodes?: {
    name: string;
    ip: string;
    ip6?: string;
    podCIDR: string;
    podCIDRv6?: string;
    underlayIP?: string;
  }[];
}

export interface RegenerationStats {
  count: number;
  lastMs: number;
  lastUpserts: number;
  lastDeletes: number;
}

/** Engine entry -> datapath key (the datapath wrapper encodes prefix lengths itself). */
export function toMapKey(e: PolicyMapEntry): PolicyMapKey {
  const key: PolicyMapKey = {
    identity: e.identity,
    direction: e.direction === DIR_INGRESS ? 'ingress' : 'egress',
    protocol: e.protocol,
  };
  if (e.prefixLen > PREFIX_PORT_ANY) {
    key.port = e.port;
    key.portPrefixLen = e.prefixLen - PREFIX_PORT_ANY;
  }
  return key;
}

/** Datapath entry -> engine entry, for reading back what a previous agent wrote. */
export function fromMapEntry(
  k: Required<PolicyMapKey>,
  v: { deny: boolean; auth?: boolean; proxyPort: number; cookie: number },
) {
  const prefixLen = k.protocol === 0 ? PREFIX_PROTO_ANY : PREFIX_PORT_ANY + k.portPrefixLen;
  const entry: PolicyMapEntry = {
    identity: k.identity,
    direction: k.direction === 'ingress' ? 1 : 2,
    protocol: k.protocol,
    port: k.protocol === 0 || k.portPrefixLen === 0 ? 0 : k.port,
    prefixLen,
    deny: v.deny,
    ...(v.auth ? { auth: true as const } : {}),
    proxyPort: v.proxyPort,
    cookie: v.cookie,
    l4Prefix: prefixLen - PREFIX_PROTO_ANY,
  };
  return entry;
}

const podKey = (p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`;
const ipcacheText = (e: { identity: number; tunnelEndpoint?: string }) =>
  e.tunnelEndpoint ? `${e.identity}@${e.tunnelEndpoint}` : String(e.identity);

export class Agent {
  readonly allocator: IdentityAllocator;
  private readonly labelFilter: LabelFilter | undefined;
  /** What each endpoint's policy map holds, as last written or read back. */
  private readonly written = new Map<number, PolicyMapEntry[]>();
  /** prefix -> "identity" or "identity@tunnelEndpoint", as last written or read back. */
  private writtenIpcache = new Map<string, string>();
  private output: EngineOutput | undefined;
  private input: EngineInput | undefined;
  private held: number[] = [];
  /** weir_endpoints rows as this agent wrote or read them (a lookup per endpoint is a syscall). */
  private readonly endpointRows = new Map<number, { endpointId: number; identity: number; flags: number }>();
  /** Validated policies by stored object: validation is not repeated for unchanged objects. */
  /** Endpoints whose row carries ENDPOINT_F_AUDIT, as last written. */
  private auditing = new Set<number>();
  private readonly validated = new WeakMap<object, Policy>();
  /** The allocator generation last handed to the local state (its JSON is large). */
  private savedGeneration = -1;
  private view: AgentView = { namespaces: [], pods: [], objects: [] };
  readonly regen: RegenerationStats = { count: 0, lastMs: 0, lastUpserts: 0, lastDeletes: 0 };
  /** Endpoints whose programs this agent process attached (all of them after the first sync). */
  private readonly attached = new Set<number>();
  /** Service load balancing: Service/EndpointSlice objects -> the lb maps. */
  readonly lb: ServiceLb;
  /** The node's workload cgroup has the socket LB hooks (attached once per agent process). */
  private nodeSockLb = false;
  /** External-facing devices weir_from_netdev is attached to (by this agent run). */
  private readonly netdevs = new Set<string>();
  /** weir_to_proxy on weir_host and the node's policy routing for the proxy (once per agent run). */
  private proxyPath = false;
  /** The overlay programs on the node's VXLAN device (tunnel mode; once per agent run). */
  private overlay = false;
  /** One change at a time: API calls are serialised through this chain. */
  private queue: Promise<unknown> = Promise.resolve();
  /** The node proxy, told the L7 policy before every map write (set by main). */
  proxy: L7PolicySink | undefined;
  /** The lab's cluster DNS records, written after every regeneration (set by main). */
  clusterDns: ClusterDns | undefined;
  /**
   * Identities allocated in the Store for the whole cluster (set by main): before each
   * regeneration the node's label sets get their cluster ids, which the allocator then takes.
   */
  clusterIds: ClusterIdentities | undefined;

  constructor(
    readonly cfg: AgentConfig,
    readonly node: AgentNode,
    readonly local: LocalState,
    readonly datapath: Datapath,
    readonly log: Pino,
    readonly metrics: AgentMetrics = new AgentMetrics(),
  ) {
    this.labelFilter = cfg.identityLabels ? parseLabelFilter(cfg.identityLabels) : undefined;
    const ids = local.identities as IdentityAllocatorState | undefined;
    this.allocator = ids ? IdentityAllocator.fromJSON(ids) : new IdentityAllocator();
    // The restored references are those the last computation of the previous run held: this
    // run's first computation takes its own and releases them, so an identity no pod uses any
    // more is freed (and its SVID revoked) rather than kept by a reference nobody owns.
    this.held = this.allocator.list().flatMap((i) => Array<number>(this.allocator.refs(i.id)).fill(i.id));
    this.savedGeneration = this.allocator.generation;
    this.readBack();
    this.lb = new ServiceLb(cfg, datapath, log);
    this.fqdn = new FqdnCache({
      minTtl: cfg.tofqdnsMinTtl ?? 0,
      maxIpsPerName: cfg.tofqdnsEndpointMaxIpPerHostname ?? 50,
    });
    // What an earlier run learned: the first regeneration selects it as that run did.
    if (local.fqdn) this.fqdn.restore(local.fqdn);
  }

  /** What the DNS proxy learned (toFQDNs selects from it). */
  readonly fqdn: FqdnCache;
  private fqdnTimer: NodeJS.Timeout | undefined;

  /** Whether any policy has toFQDNs (else learning changes no map). */
  selectsFqdns(): boolean {
    return this.policies().some(
      (p) => p.kind !== 'NetworkPolicy' && p.rules.some((r) => r.egress.some((e) => e.fqdns)),
    );
  }

  /**
   * Allowed DNS answers from the DNS proxy (a batch): recorded, and when they bring a name/address
   * pair the node did not hold and a policy selects FQDNs, in force in the ipcache and policy maps
   * before this returns (the proxy releases the answers after). Returns what the node now holds
   * for each item's endpoint and name (the proxy skips the agent for answers it already holds).
   */
  async learnFqdn(
    items: { endpointId: number; name: string; answers: { ip: string; ttl: number }[] }[],
  ): Promise<{ regenerated: boolean; held: { ip: string; expiresAt: number }[][] }> {
    let changed = false;
    for (const it of items) changed = this.fqdn.learn(it.endpointId, it.name, it.answers).changed || changed;
    const held = () => items.map((it) => this.fqdn.held(it.endpointId, it.name));
    // A new pair is saved before the answer goes (a restart keeps what a pod was told); renewals
    // only move expiries: saved within a second.
    const saved = changed ? this.saveFqdn() : (this.saveFqdnSoon(), Promise.resolve());
    if (!this.selectsFqdns()) {
      await saved;
      return { regenerated: false, held: held() };
    }
    if (!changed) {
      // Already known, maybe from a lookup whose regeneration is still running (two pods, or two
      // lookups of one pod, resolving the same name at once): this answer too waits until the
      // addresses are in force, or its client would connect before they are.
      await this.regenChain;
      return { regenerated: false, held: held() };
    }
    await Promise.all([this.regenerate(), saved]);
    return { regenerated: true, held: held() };
  }

  private fqdnSaveTimer: NodeJS.Timeout | undefined;

  /** Writes the FQDN cache to the node's local state now. */
  async saveFqdn(): Promise<void> {
    clearTimeout(this.fqdnSaveTimer);
    this.fqdnSaveTimer = undefined;
    this.local.fqdn = this.fqdn.list();
    await this.local.save();
  }

  /** Writes the FQDN cache within a second (renewals, expiry). */
  private saveFqdnSoon(): void {
    if (this.fqdnSaveTimer) return;
    this.fqdnSaveTimer = setTimeout(() => {
      this.fqdnSaveTimer = undefined;
      void this.saveFqdn().catch((err: unknown) => this.log.error({ err }, 'FQDN cache not saved'));
    }, 1000);
    this.fqdnSaveTimer.unref();
  }

  /** Removes learned names (all, or those matching a pattern) and regenerates. */
  async cleanFqdn(pattern?: string): Promise<number> {
    const n = this.fqdn.clean(pattern);
    // The DNS proxy stops skipping the agent for what it knew was held, before this answers.
    await this.proxy?.forgetFqdn?.();
    if (n > 0) await Promise.all([this.regenerate(), this.saveFqdn()]);
    return n;
  }

  /** Expires learned addresses every `intervalMs`, keeping those with open connections. */
  startFqdnGc(intervalMs = 1000): void {
    this.fqdnTimer = setInterval(() => {
      const next = this.fqdn.nextExpiry();
      if (next === undefined || next > Date.now()) return;
      let open: Set<string>;
      try {
        open = new Set(
          this.datapath.ct
            .list()
            .filter((c) => !c.expired && c.state !== 'closing')
            .flatMap((c) => [c.dst, c.src]),
        );
      } catch (err) {
        this.log.error({ err }, 'FQDN GC: conntrack not readable; nothing expired');
        return;
      }
      if (this.fqdn.gc((ip) => open.has(ip)) > 0) {
        this.saveFqdnSoon();
        void this.regenerate().catch((err: unknown) =>
          this.log.error({ err }, 'FQDN GC regeneration failed'),
        );
      }
    }, intervalMs);
    this.fqdnTimer.unref();
  }

  stopFqdnGc(): void {
    clearInterval(this.fqdnTimer);
  }

  /**
   * The socket LB hooks on a cgroup, or none when the socket LB is off (hooks an earlier run left
   * are detached: from then on the pods' tc programs translate every packet to a service).
   */
  private sockLb(cgroupPath: string): void {
    if (this.cfg.socketLB === false) this.datapath.detachSockLb(cgroupPath);
    else this.datapath.attachSockLb(cgroupPath);
  }

  /** Runs `fn` after every earlier change has finished. */
  serialize<T>(fn: () => Promise<T> | T): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Loads what the pinned maps hold, so the first regeneration after a restart is a no-op. An
   * endpoint without a policy map yet starts empty; a map that cannot be read stops the agent
   * (its error names the map and the errno): taking it for empty would rewrite blindly.
   */
  private readBack(): void {
    for (const id of Object.values(this.local.endpoints.ids)) {
      const entries = this.datapath.readPolicy(id) ?? [];
      this.written.set(
        id,
        entries.map((e) => fromMapEntry(e.key, e.value)),
      );
    }
    this.writtenIpcache = new Map(this.datapath.ipcache.list().map((e) => [e.prefix, ipcacheText(e)]));
  }

  policies(objects: DesiredObject[] = this.view.objects): Policy[] {
    return objects
      .filter((o) => isPolicyKind(o.kind))
      .map((o) => {
        const key = o.object as object;
        let p = this.validated.get(key);
        if (!p) {
          p = validatePolicy(o.object, {
            file: o.file ?? '(agent store)',
            object: `${o.kind} ${objectKey(o)}`,
          });
          if (key && typeof key === 'object') this.validated.set(key, p);
        }
        return p;
      });
  }

  /** The pods of this node that have an endpoint. */
  private localPods(): AgentPod[] {
    return this.view.pods.filter((p) => p.node === this.node.name && this.local.endpoints.ids[podKey(p)]);
  }

  private gatewayText = '';
  /** The Gateway addresses the node's weir_host was last made to hold (sorted, JSON). */
  private gatewayAddresses: string | undefined;

  /**
   * Gateways: their addresses on the node (the lab driver) and the proxy's Gateway tables with the
   * ready endpoints of every Service port a route names (a mesh-only node: the mesh tables alone).
   * Only when something changed.
   */
  private async syncGateway(compiled: ReturnType<typeof compileStored>, mesh: MeshRedirects): Promise<void> {
    const snap = gatewaySnapshotOf(
      this.node.meshOnly ? { ...compiled, gatewayPorts: [] } : compiled,
      this.view.objects,
      this.view.pods,
      this.lb.frontends(),
      mesh,
    );
    const text = JSON.stringify(snap);
    if (text === this.gatewayText) return;
    const addresses = [...new Set(snap.ports.map((p) => p.address).filter((a): a is string => !!a))];
    // The snapshot names the pods (backends), so it changes with every pod of the cluster; the
    // node's addresses (an `ip` process to read them) only when the Gateways' addresses do.
    const addressText = JSON.stringify([...addresses].sort());
    if (addressText !== this.gatewayAddresses) {
      await syncGatewayAddresses(this.node.netns, addresses);
      this.gatewayAddresses = addressText;
    }
    await this.proxy?.updateGateway?.(snap);
    this.gatewayText = text;
  }

  /** The view regenerate() computes from (the reconciler sets it before each regeneration). */
  setView(view: AgentView): void {
    this.view = view;
  }

  /**
   * The node's own attachments: the socket LB on the node's cgroup (its processes reach services
   * too), weir_from_netdev on each device facing an external (NodePort from outside), and the
   * node proxy's way in. Once per agent run each.
   */
  async syncNode(): Promise<void> {
    if (!this.nodeSockLb) {
      this.sockLb(this.node.cgroupPath);
      this.nodeSockLb = true;
    }
    for (const d of this.node.netdevs) {
      if (this.netdevs.has(d.ifname)) continue;
      this.datapath.attachNetdev({ netns: this.node.netns, ifname: d.ifname });
      this.netdevs.add(d.ifname);
    }
    if (this.node.tunnelDevice && !this.overlay) {
      // Tunnel mode: pods' traffic to other nodes is encapsulated into the node's VXLAN device
      // (the VNI the sender's identity) and what arrives on it is judged with that identity.
      this.datapath.attachOverlay({ netns: this.node.netns, ifname: this.node.tunnelDevice });
      this.overlay = true;
    }
    if (!this.proxyPath) {
      // The node proxy's way in (bpf/lib/proxy.h): delivery of redirected connections from tc
      // egress, and local delivery of what the datapath marked for it. Node namespace only.
      this.datapath.attachHost({ netns: this.node.netns, ifname: HOST_DEVICE });
      await ensureProxyRouting(this.node.netns, { ipv6: true });
      this.proxyPath = true;
    }
  }

  /**
   * Endpoint ids and policy maps for pods about to be attached, made for all of them at once (one
   * link into weir_policy: Datapath.ensurePolicyMaps); attach() then finds their maps ready.
   * Endpoints of pods that never become Running are removed by prune().
   */
  prepare(pods: readonly { namespace: string; name: string }[]): void {
    const ids = pods.map((p) => this.local.endpointId(podKey(p)));
    this.datapath.ensurePolicyMaps(ids.filter((id) => !this.attached.has(id)));
  }

  /**
   * Attaches the datapath to a pod's host veth unless this agent process already did (after a
   * restart it replaces the programs atomically; maps and entries stay). A new endpoint's policy
   * map is empty until regenerate() writes its entries: every new connection drops until then.
   * Returns the endpoint id.
   */
  attach(pod: AttachedPod): number {
    const key = podKey(pod);
    const id = this.local.endpointId(key);
    if (this.attached.has(id)) return id;
    const have = this.datapath.endpoints.get(pod.hostIfindex);
    const local = this.localRoute(pod);
    this.datapath.attachEndpoint({
      netns: this.node.netns,
      ifindex: pod.hostIfindex,
      endpointId: id,
      identity: have?.identity ?? 0,
      flags: have?.flags ?? 0,
      ...(local ? { local } : {}),
    });
    // Socket LB: the pod's connect()/sendmsg() to a service address pick a backend before any
    // packet exists, so the tc programs (and policy) see pod -> backend.
    if (existsSync(pod.cgroupPath)) this.sockLb(pod.cgroupPath);
    this.endpointRows.clear();
    this.attached.add(id);
    this.written.set(id, this.written.get(id) ?? []);
    this.log.info({ endpoint: id, pod: key, ifname: pod.hostIfname }, 'endpoint attached');
    return id;
  }

  /** Removes the endpoints of pods that are no longer on this node. */
  prune(live: ReadonlySet<string>): void {
    const gone = Object.entries(this.local.endpoints.ids).filter(([key]) => !live.has(key));
    if (gone.length === 0) return;
    // All at once: one pass over the node's maps, one unlink from weir_policy.
    this.datapath.detachEndpoints(gone.map(([, id]) => ({ netns: this.node.netns, endpointId: id })));
    this.endpointRows.clear();
    for (const [key, id] of gone) {
      this.log.info({ endpoint: id, pod: key }, 'endpoint removed');
      this.written.delete(id);
      this.attached.delete(id);
      this.local.releaseEndpoint(key);
      this.metrics.policyMapPressure.remove({ map_name: `weir_policy_${id}` });
    }
  }

  /**
   * eBPF host routing into the pod (weir_lxc): its addresses and the MACs the node's routing would
   * write (the pod's eth0 as destination, its host veth as source). Unreadable (the pod's netns is
   * going away): none, and packets for it take the node's stack, judged by its weir_to_container.
   */
  private localRoute(pod: AttachedPod): { ips: string[]; mac: string; hostMac: string } | undefined {
    if (this.datapath.hostRouting !== 'bpf' || !pod.netns || !pod.ip) return undefined;
    try {
      return {
        ips: [pod.ip, ...(pod.ip6 ? [pod.ip6] : [])],
        mac: pod.mac || macIn(pod.netns, POD_IFNAME),
        hostMac: pod.hostMac || macIn(this.node.netns, pod.hostIfname),
      };
    } catch (err) {
      this.log.warn(
        { err, pod: `${pod.namespace}/${pod.name}` },
        'no host routing into the pod: its MAC is unreadable',
      );
      return undefined;
    }
  }

  private engineInput(policies: Policy[]): EngineInput {
    const node = this.node;
    const endpoints = this.localPods().map((p) => ({
      id: this.local.endpoints.ids[podKey(p)] as number,
      namespace: p.namespace,
      pod: p.name,
      labels: p.labels,
      ...(p.init ? { init: true } : {}),
      ips: [p.ip, ...(p.ip6 ? [p.ip6] : [])],
      namedPorts: p.ports
        .filter((port) => port.name)
        .map((port) => ({ name: port.name as string, port: port.containerPort, protocol: port.protocol })),
    }));
    const nodeIPs = [node.ip, ...(node.ip6 ? [node.ip6] : []), ...node.netdevs.map((d) => d.ip)];
    const tunnel = node.tunnelDevice !== undefined;
    const underlayOf = new Map((this.view.remoteNodes ?? []).map((n) => [n.name, n.underlayIP]));
    const remoteEndpoints = this.view.pods
      .filter((p) => p.node !== node.name && p.ip)
      .map((p) => ({
        namespace: p.namespace,
        pod: p.name,
        labels: p.labels,
        // Both routing modes: the node's underlay address, from which the datapath derives the
        // peer's node id (mutual auth, bpf/lib/auth.h). Only a tunnel device in weir_tunnel
        // (tunnel mode) makes it encapsulate towards it; native routing leaves it to the routes.
        ...(underlayOf.get(p.node) ? { tunnelEndpoint: underlayOf.get(p.node) as string } : {}),
        ips: [p.ip, ...(p.ip6 ? [p.ip6] : [])],
        namedPorts: p.ports
          .filter((port) => port.name)
          .map((port) => ({ name: port.name as string, port: port.containerPort, protocol: port.protocol })),
      }));
    const config: Partial<EngineConfig> = {
      policyMapMax: this.cfg.policyMapMax,
      ...(this.cfg.proxyPorts ? { proxyPorts: this.cfg.proxyPorts } : {}),
      ...(this.labelFilter ? { labelFilter: this.labelFilter } : {}),
    };
    return {
      namespaces: this.view.namespaces,
      endpoints,
      nodeIPs,
      policies,
      config,
      fqdns: this.fqdn.view(),
      ...(remoteEndpoints.length ? { remoteEndpoints } : {}),
      ...(this.view.remoteNodeIPs?.length ? { remoteNodeIPs: this.view.remoteNodeIPs } : {}),
      ...(tunnel
        ? {
            tunnelPrefixes: (this.view.remoteNodes ?? []).flatMap((n) =>
              n.underlayIP
                ? [
                    { prefix: n.podCIDR, identity: IDENTITY_WORLD, tunnelEndpoint: n.underlayIP },
                    { prefix: n.ip, identity: IDENTITY_REMOTE_NODE, tunnelEndpoint: n.underlayIP },
                    ...(n.podCIDRv6
                      ? [{ prefix: n.podCIDRv6, identity: IDENTITY_WORLD, tunnelEndpoint: n.underlayIP }]
                      : []),
                    ...(n.ip6
                      ? [{ prefix: n.ip6, identity: IDENTITY_REMOTE_NODE, tunnelEndpoint: n.underlayIP }]
                      : []),
                  ]
                : [],
            ),
          }
        : {}),
    };
  }

  /**
   * Gives every pod label set of the input (this node's pods and the other nodes') its cluster
   * id, and makes the allocator take those ids. When every label set has its id already (the
   * common change: another node's new pod, whose node allocated and references it), only this
   * node's references remain to be written: they are returned, still being written, for the
   * regeneration to await after it wrote the maps, so an etcd round trip (a transaction and its
   * watch event) no longer stands between another node's pod and this node's policy.
   */
  private async syncClusterIds(input: EngineInput): Promise<Promise<void> | undefined> {
    const ids = this.clusterIds;
    if (!ids) return undefined;
    const nsLabels = new Map(input.namespaces.map((n) => [n.name, n.labels]));
    const sets = new Map<string, string[]>();
    for (const ep of [...input.endpoints, ...(input.remoteEndpoints ?? [])]) {
      if (ep.init) continue;
      const labels = endpointLabels(ep, nsLabels.get(ep.namespace) ?? {}, this.labelFilter);
      sets.set(labels.join('\n'), labels);
    }
    const used = [...sets.values()];
    const preferred = (labels: readonly string[]) => this.allocator.find(labels)?.id;
    let references: Promise<void> | undefined;
    if (ids.allKnown(used)) {
      references = ids.sync(used, preferred);
      // Awaited by regenerateNow; a pass that fails before that retries anyway.
      references.catch(() => undefined);
    } else await ids.sync(used, preferred);
    this.allocator.clusterIds = ids.lookup();
    const moved = this.allocator.adoptClusterIds();
    if (moved.size) {
      this.held = this.held.map((id) => moved.get(id) ?? id);
      this.log.warn({ moved: [...moved] }, 'identities moved to the ids the cluster gave their label sets');
    }
    return references;
  }

  /**
   * Computes everything and writes the differences. Upserts go before deletes. One at a time: the
   * reconciler and the DNS proxy's answers (toFQDNs) both regenerate.
   */
  regenerate(policies?: Policy[]): Promise<void> {
    const run = this.regenChain.then(() => this.regenerateTimed(policies ?? this.policies()));
    this.regenChain = run.catch(() => undefined);
    return run;
  }

  private regenChain: Promise<unknown> = Promise.resolve();
  /** Selector results across regenerations (the engine updates them with the identities that changed). */
  private readonly selectorCache = new SelectorCache();

  private async regenerateTimed(policies: Policy[]): Promise<void> {
    const end = this.metrics.regenerationSeconds.startTimer();
    try {
      await this.regenerateNow(policies);
      this.metrics.regenerations.inc({ outcome: 'success' });
    } catch (err) {
      this.metrics.regenerations.inc({ outcome: 'failure' });
      throw err;
    } finally {
      end();
    }
  }

  private async regenerateNow(policies: Policy[]): Promise<void> {
    const t0 = performance.now();
    const input = this.engineInput(policies);
    const references = await this.syncClusterIds(input);
    const output = computePolicy(input, {
      allocator: this.allocator,
      previousHeld: this.held,
      selectorCache: this.selectorCache,
    });
    // The node proxy gets the L7 policy before any entry redirects to it, so a connection it
    // accepts finds its port's rules (it never blocks the maps: a proxy that is down or slow
    // leaves redirected connections failing closed until it runs this snapshot).
    await this.proxy?.update(output.l7);
    let upserts = 0;
    let deletes = 0;

    // ipcache first: new identities must resolve before entries that name them apply.
    const ipcache = new Map(output.ipcache.map((e) => [e.prefix, ipcacheText(e)]));
    for (const e of output.ipcache) {
      if (this.writtenIpcache.get(e.prefix) !== ipcacheText(e)) {
        this.mapOp('weir_ipcache', 'update', () =>
          this.datapath.ipcache.upsert(
            e.prefix,
            e.identity,
            e.tunnelEndpoint ? { tunnelEndpoint: e.tunnelEndpoint } : {},
          ),
        );
        upserts++;
      }
    }

    const podsById = new Map(input.endpoints.map((e) => [e.id, e]));
    const localByKey = new Map(this.localPods().map((p) => [podKey(p), p]));
    // Endpoints selected alike share their entry arrays, old and new: one diff per distinct pair.
    const diffs = new Map<PolicyMapEntry[], Map<PolicyMapEntry[], EntryDiff>>();
    const changed = new Set<number>();
    const auditing = new Set<number>();
    const setRow = (ifindex: number, row: { endpointId: number; identity: number; flags: number }) => {
      this.datapath.endpoints.set(ifindex, row);
      this.endpointRows.set(ifindex, row);
    };
    for (const [id, pol] of output.endpoints) {
      const pod = podsById.get(id);
      const podState = pod && localByKey.get(`${pod.namespace}/${pod.pod}`);
      if (!podState) continue;
      const old = this.written.get(id) ?? [];
      let byNew = diffs.get(old);
      if (!byNew) diffs.set(old, (byNew = new Map()));
      let d = byNew.get(pol.entries);
      if (!d) byNew.set(pol.entries, (d = diff(old, pol.entries)));
      if (d.upserts.length + d.deletes.length > 0) changed.add(id);
      const audit = this.auditMode(pod.namespace, pod.pod);
      if (audit) auditing.add(id);
      // Audit mode turned off — since the last pass, or while the agent was down (the row in the
      // kernel still has the flag): the connections it let through are revalidated below.
      const prevRow =
        this.endpointRows.get(podState.hostIfindex) ?? this.datapath.endpoints.get(podState.hostIfindex);
      if (!audit && (this.auditing.has(id) || ((prevRow?.flags ?? 0) & ENDPOINT_F_AUDIT) !== 0))
        changed.add(id);
      const flags = (pol.failClosed ? ENDPOINT_F_FAIL_CLOSED : 0) | (audit ? ENDPOINT_F_AUDIT : 0);
      if (pol.failClosed) {
        // Fail closed before anything is removed: the endpoint drops every new connection.
        setRow(podState.hostIfindex, { endpointId: id, identity: pol.identity, flags });
        this.log.error(
          { endpoint: id, pod: `${pod.namespace}/${pod.pod}`, error: pol.error },
          'policy map overflow',
        );
        this.metrics.policyMapOverflows.inc({ endpoint: String(id) });
      }
      this.metrics.policyMapPressure.set(
        { map_name: `weir_policy_${id}` },
        pol.entries.length / this.cfg.policyMapMax,
      );
      if (changed.has(id)) {
        const pm = this.datapath.policy(id);
        for (const e of d.upserts)
          this.mapOp('weir_policy', 'update', () =>
            pm.upsert(toMapKey(e), {
              deny: e.deny,
              auth: e.auth === true,
              proxyPort: e.proxyPort,
              cookie: e.cookie,
            }),
          );
        for (const e of d.deletes) this.mapOp('weir_policy', 'delete', () => pm.delete(toMapKey(e)));
      }
      upserts += d.upserts.length;
      deletes += d.deletes.length;
      this.written.set(id, pol.entries);
      let cur = this.endpointRows.get(podState.hostIfindex);
      if (!cur) {
        cur = this.datapath.endpoints.get(podState.hostIfindex);
        if (cur) this.endpointRows.set(podState.hostIfindex, cur);
      }
      if (!cur || cur.identity !== pol.identity || cur.flags !== flags || cur.endpointId !== id)
        setRow(podState.hostIfindex, { endpointId: id, identity: pol.identity, flags });
    }

    const ipcacheUpserts = upserts;
    for (const prefix of this.writtenIpcache.keys()) {
      if (!ipcache.has(prefix)) {
        this.mapOp('weir_ipcache', 'delete', () => this.datapath.ipcache.delete(prefix));
        deletes++;
      }
    }
    const ipcacheChanged = ipcacheUpserts > 0 || ipcache.size !== this.writtenIpcache.size;
    // Gateway API: compiled once; Services with mesh routes are redirected to the proxy.
    const compiled = compileStored(this.view.objects, this.view.namespaces);
    const mesh = meshRedirects(
      compiled,
      this.view.objects,
      this.node.ip,
      this.cfg.proxyPorts?.ingress ?? 10000,
    );
    const lb = this.lb.regenerate(this.view.objects, this.view.pods, this.node, this.local.lb, mesh);
    upserts += lb.stats.upserts;
    deletes += lb.stats.deletes;
    this.local.lb = lb.output.ids;
    await this.syncGateway(compiled, mesh);
    this.writtenIpcache = ipcache;
    this.held = output.held;
    // Audit mode turned off (the endpoint rows enforce already): the connections it let through
    // that policy denies are revoked now; those the policy allows keep their entries.
    this.auditing = auditing;
    // A changed ipcache can change any peer's identity: then every endpoint's connections count.
    if (ipcacheChanged || changed.size > 0)
      this.revokeConnections(input, output, ipcacheChanged ? undefined : changed);
    this.metrics.mapEntriesWritten.inc({ operation: 'upsert' }, upserts);
    this.metrics.mapEntriesWritten.inc({ operation: 'delete' }, deletes);
    this.metrics.identities.set(this.allocator.list().length);
    this.metrics.policies.set(policies.length);
    this.metrics.endpointState.reset();
    for (const pol of output.endpoints.values())
      this.metrics.endpointState.inc({ endpoint_state: pol.failClosed ? 'fail-closed' : 'ready' });
    this.output = output;
    this.input = input;
    if (this.allocator.generation !== this.savedGeneration) {
      this.local.identities = this.allocator.toJSON();
      this.savedGeneration = this.allocator.generation;
    }
    // The node's identity references (when they were not needed first): the pass ends with them.
    await references;
    const ms = performance.now() - t0;
    Object.assign(this.regen, {
      count: this.regen.count + 1,
      lastMs: ms,
      lastUpserts: upserts,
      lastDeletes: deletes,
    });
    this.log.info({ ms: Math.round(ms * 10) / 10, upserts, deletes }, 'regenerated');
    await this.clusterDns
      ?.write({
        ...this.lb.lastServices,
        pods: this.view.pods,
        namespaces: this.view.namespaces.map((n) => n.name),
      })
      .catch((err: unknown) => this.log.error({ err }, 'cluster DNS records not written'));
  }

  /** Writes what must survive a restart (identities, endpoint ids, lb ids) when it changed. */
  async persist(): Promise<void> {
    await this.local.save();
  }

  /** One write to a kernel map, counted by map, operation and outcome (a failure is rethrown). */
  private mapOp<T>(mapName: string, operation: 'update' | 'delete', fn: () => T): T {
    try {
      const r = fn();
      this.metrics.mapOpErrors.inc({ map_name: mapName, operation, outcome: 'success' });
      return r;
    } catch (err) {
      this.metrics.mapOpErrors.inc({ map_name: mapName, operation, outcome: 'fail' });
      throw err;
    }
  }

  /**
   * Removes conntrack entries of connections the new policy no longer allows; with `only`, just
   * those of these endpoints (the others' entries and every peer identity are unchanged).
   */
  private revokeConnections(input: EngineInput, output: EngineOutput, only?: ReadonlySet<number>): void {
    const byIP = new Map<string, { entries: PolicyMapEntry[] }>();
    for (const ep of input.endpoints) {
      if (only && !only.has(ep.id)) continue;
      // An auditing endpoint keeps what it let through (its denials pass anyway).
      if (this.auditing.has(ep.id)) continue;
      const pol = output.endpoints.get(ep.id);
      const entries = { entries: pol?.entries ?? [] };
      for (const ip of ep.ips) byIP.set(ip, entries);
    }
    const revoke = connectionsToRevoke(this.datapath.ct.liveTuples(), byIP, output.ipcache);
    for (const t of revoke) this.mapOp('weir_ct', 'delete', () => this.datapath.ct.delete(t));
    if (revoke.length > 0)
      this.log.info({ connections: revoke.length }, 'revoked connections the policy no longer allows');
  }

  endpoints(): EndpointStatus[] {
    const out: EndpointStatus[] = [];
    if (!this.output) return out;
    const pods = new Map(this.localPods().map((p) => [podKey(p), p]));
    for (const [key, id] of Object.entries(this.local.endpoints.ids)) {
      const pod = pods.get(key);
      const pol: EndpointPolicy | undefined = this.output.endpoints.get(id);
      if (!pod || !pol) continue;
      out.push({
        id,
        namespace: pod.namespace,
        pod: pod.name,
        ips: [pod.ip, ...(pod.ip6 ? [pod.ip6] : [])],
        ifname: pod.hostIfname,
        ifindex: pod.hostIfindex,
        identity: pol.identity,
        labels: pol.labels,
        ingressEnforced: pol.ingressEnforced,
        egressEnforced: pol.egressEnforced,
        policyEntries: pol.entries.length,
        state: pol.failClosed ? 'fail-closed' : 'ready',
        policyAuditMode: this.auditMode(pod.namespace, pod.name),
        ...(pol.error ? { error: pol.error.message } : {}),
      });
    }
    return out.sort((a, b) => a.id - b.id);
  }

  /**
   * The other nodes' pods (a cluster) with the identities this node's ipcache gives them: flows
   * name them like Hubble names remote endpoints (ID 0, namespace and pod set).
   */
  remoteEndpoints(): { namespace: string; pod: string; ips: string[]; identity: number; labels: string[] }[] {
    if (!this.output) return [];
    const ipcache = new Map(this.output.ipcache.map((e) => [e.prefix, e.identity]));
    return this.view.pods
      .filter((p) => p.node !== this.node.name && p.ip)
      .map((p) => {
        const identity = ipcache.get(`${p.ip}/32`) ?? 0;
        return {
          namespace: p.namespace,
          pod: p.name,
          ips: [p.ip, ...(p.ip6 ? [p.ip6] : [])],
          identity,
          labels: this.allocator.get(identity)?.labels ?? [],
        };
      });
  }

  /** Whether an endpoint audits: its own PolicyAuditMode, else the agent's --policy-audit-mode. */
  auditMode(namespace: string, pod: string): boolean {
    return (
      this.view.endpointConfig?.get(`${namespace}/${pod}`)?.policyAuditMode ??
      this.cfg.policyAuditMode === true
    );
  }

  /** The engine's view (for `policy trace`), and the same shape read back from the live maps. */
  engineView(): { input: EngineInput; output: EngineOutput } {
    if (!this.input || !this.output)
      throw new WeirError('ERR_AGENT_NOT_READY', 'the agent has not regenerated yet');
    return { input: this.input, output: this.output };
  }

  /** The node's pods with an endpoint: what `policy diff` enumerates (every declared port). */
  diffPods(): DiffPod[] {
    return this.localPods().map((p) => ({
      name: podKey(p),
      endpointId: this.local.endpoints.ids[podKey(p)] as number,
      ports: p.ports.map((port) => ({ port: port.containerPort, protocol: port.protocol })),
    }));
  }

  /**
   * The engine view with what the kernel holds: each endpoint's policy map as weir_policy points
   * to it, its weir_endpoints row, the ipcache. An endpoint weir_policy has no map for is shown as
   * the datapath treats it (every new connection dropped); a map that cannot be read is an error
   * naming it and the errno, never a verdict computed from nothing.
   */
  datapathView(): { input: EngineInput; output: EngineOutput } {
    const view = this.engineView();
    const endpoints = new Map<number, EndpointPolicy>();
    for (const [id, pol] of view.output.endpoints) {
      const live = this.datapath.livePolicy(id);
      const entries = (live ?? []).map((e) => fromMapEntry(e.key, e.value));
      const key = Object.entries(this.local.endpoints.ids).find(([, v]) => v === id)?.[0];
      const pod = key ? this.localPods().find((p) => podKey(p) === key) : undefined;
      const row = pod ? this.datapath.endpoints.get(pod.hostIfindex) : undefined;
      endpoints.set(id, {
        ...pol,
        identity: row?.identity ?? 0,
        entries,
        failClosed: !live || !row || (row.flags & ENDPOINT_F_FAIL_CLOSED) !== 0,
        ...(live
          ? {}
          : {
              error: {
                code: 'ERR_DATAPATH_NO_POLICY_MAP' as const,
                message: `weir_policy has no policy map for endpoint ${id}: its new connections drop (Endpoint not ready)`,
              },
            }),
      });
    }
    const ipcache = this.datapath.ipcache.list().map((e) => ({ prefix: e.prefix, identity: e.identity }));
    return { input: view.input, output: { ...view.output, endpoints, ipcache } };
  }

  identities() {
    return this.allocator.list();
  }

  /**
   * The identities the given pods (of the desired state: any node's) have, by their labels and
   * their namespace's: the cluster's ids, else this node's allocator's. Pods of a label set no
   * node allocated yet are left out.
   */
  identitiesOf(pods: Iterable<{ namespace: string; labels: Record<string, string> }>): Set<number> {
    const nsLabels = new Map(this.view.namespaces.map((n) => [n.name, n.labels]));
    const cluster = this.clusterIds?.lookup();
    const out = new Set<number>();
    for (const p of pods) {
      const labels = endpointLabels(p, nsLabels.get(p.namespace) ?? {}, this.labelFilter);
      const id = cluster?.(labels.join('\n')) ?? this.allocator.find(labels)?.id;
      if (id !== undefined) out.add(id);
    }
    return out;
  }

  /** A copy of the identity allocator, for what-if computations (policy diff). */
  allocatorCopy(): IdentityAllocator {
    return this.allocator.clone();
  }

  /** The policy objects in force. */
  objects(): DesiredObject[] {
    return this.view.objects.filter((o) => isPolicyKind(o.kind));
  }

  /** The Service and EndpointSlice objects, as stored (with allocated clusterIP and nodePorts). */
  serviceObjects(): DesiredObject[] {
    return this.view.objects.filter((o) => isServiceKind(o.kind));
  }

  static pinDirFor(lab: string, node: string, root: string): string {
    return join(root, lab, node);
  }
}
