// The service model, pure: Services + EndpointSlices (applied ones and those derived from the lab's
// pods, as Kubernetes' EndpointSlice controller would) -> what the load-balancing maps hold:
//
//   frontends  (each ClusterIP:port/proto, NodePort on the node IP) with slot 0 metadata and backend slots
//   backends   (stable ids by address:port/proto, ACTIVE or TERMINATING)
//   rev-NAT    (stable index per frontend: what a translated socket shows as its peer)
//   Maglev     (per frontend, over its ACTIVE backends, when the algorithm is maglev)
import type { PodPort } from '../k8s/core.js';
import { assignIds } from './allocate.js';
import { hostPort, ipFamilyOf } from './ip.js';
import { maglevTable } from './maglev.js';
import {
  type EndpointSlice,
  type IPFamily,
  type Service,
  type ServicePort,
  type ServiceProtocol,
  type SliceEndpoint,
} from './api/types.js';

/** SVC_F_* of bpf/lib/common.h. */
export const SVC_F_AFFINITY = 1 << 0;
export const SVC_F_MAGLEV = 1 << 1;
export const SVC_F_NODEPORT = 1 << 2;
export const SVC_F_LOCAL = 1 << 3;
export const MAX_REV_NAT = 0xffff;
export const MAX_BACKEND_ID = 0xffffffff;

export type LbAlgorithm = 'random' | 'maglev';
export type BackendState = 'active' | 'terminating';

/** A lab pod as the EndpointSlice controller sees it. */
export interface LbPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ip: string;
  /** Its IPv6 address (a lab with podCIDRv6): what IPv6 EndpointSlices list. */
  ip6?: string;
  ports: PodPort[];
  node: string;
  /** Its workload answers (Kubernetes: the Ready condition). */
  ready: boolean;
  /** Being deleted (annotation weir.dev/terminating): serves existing connections, gets no new ones. */
  terminating: boolean;
}

export interface LbConfig {
  algorithm: LbAlgorithm;
  maglevSize: number;
  /** The murmur3 seed (maglevSeed() of the cluster-wide base64 seed). */
  maglevSeed: number;
  nodeName: string;
  nodeIP: string;
}

export interface LbIds {
  /** "10.0.1.5:8080/TCP" -> backend id */
  backends: Record<string, number>;
  /** "10.96.0.10:80/TCP" -> rev-NAT index */
  revNat: Record<string, number>;
}

export interface LbInput {
  services: Service[];
  /** EndpointSlices applied by hand (services without a selector, or extra endpoints). */
  slices: EndpointSlice[];
  pods: LbPod[];
  config: LbConfig;
  ids: LbIds;
  /**
   * Maglev tables of earlier runs by their inputs (size, seed, backend ids and names): a table is
   * computed only when its backends change. Pruned to the tables this run uses.
   */
  maglevCache?: Map<string, Uint32Array>;
}

export interface LbBackend {
  id: number;
  /** address:port/proto, the Maglev name. */
  name: string;
  address: string;
  port: number;
  protocol: ServiceProtocol;
  state: BackendState;
}

export interface LbFrontend {
  /** "ns/name" */
  service: string;
  portName: string;
  type: 'ClusterIP' | 'NodePort';
  address: string;
  port: number;
  protocol: ServiceProtocol;
  revNatIndex: number;
  flags: number;
  /** Seconds; 0 without session affinity. */
  affinityTimeout: number;
  /** Backend ids in slot order: ACTIVE ones first. */
  backends: number[];
  active: number;
}

export interface LbOutput {
  frontends: LbFrontend[];
  backends: Map<number, LbBackend>;
  /** rev-NAT index -> Maglev table (maglev algorithm, frontends with ACTIVE backends). */
  maglev: Map<number, Uint32Array>;
  /** EndpointSlices derived from pods (per service with a selector: one per address family). */
  derivedSlices: EndpointSlice[];
  ids: LbIds;
}

/** "10.96.0.10:80/TCP", "[fd00:10:96::a]:80/TCP" (Cilium's notation). */
export const frontendName = (f: { address: string; port: number; protocol: string }) =>
  `${hostPort(f.address, f.port)}/${f.protocol}`;

/**
 * The address families a service's endpoints are kept for, as Kubernetes' EndpointSlice controller
 * picks them: spec.ipFamilies, else the families of its clusterIPs, else IPv4.
 */
export function serviceFamilies(svc: Service): IPFamily[] {
  if (svc.ipFamilies.length > 0) return svc.ipFamilies;
  const fams = svc.clusterIPs.flatMap((ip) => ipFamilyOf(ip) ?? []);
  return fams.length > 0 ? fams : ['IPv4'];
}

const selects = (sel: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(sel).every(([k, v]) => labels[k] === v);

/** The pod's port for a service port: a number as it is, a name through the pod's containerPorts. */
export function resolveTargetPort(sp: ServicePort, pod: Pick<LbPod, 'ports'>): number | undefined {
  if (typeof sp.targetPort === 'number') return sp.targetPort;
  return pod.ports.find((p) => p.name === sp.targetPort && p.protocol === sp.protocol)?.containerPort;
}

/**
 * What the EndpointSlice controller would write for a service with a selector: the selected pods
 * of its namespace, with conditions from readiness and termination, ports resolved per pod. One
 * set of slices per address family of the service (addressType IPv4: pod.ip, IPv6: pod.ip6; a
 * pod without an address of the family is in none). Pods whose resolved ports differ go in
 * separate slices, as in Kubernetes.
 */
export function deriveSlices(svc: Service, pods: LbPod[]): EndpointSlice[] {
  if (!svc.selector) return [];
  const selector = svc.selector;
  const selected = pods
    .filter((p) => p.namespace === svc.namespace && selects(selector, p.labels))
    .sort((a, b) => a.name.localeCompare(b.name));
  return serviceFamilies(svc).flatMap((family) => familySlices(svc, selected, family));
}

function familySlices(svc: Service, selected: LbPod[], family: IPFamily): EndpointSlice[] {
  const groups = new Map<string, EndpointSlice>();
  // The IPv4 names are those weir used before dual-stack, so existing slices keep theirs.
  const prefix = `${svc.name}-weir${family === 'IPv6' ? '-v6' : ''}`;
  for (const pod of selected) {
    const address = family === 'IPv4' ? pod.ip : pod.ip6;
    if (!address) continue;
    const ports = svc.ports.flatMap((sp) => {
      const port = resolveTargetPort(sp, pod);
      return port === undefined ? [] : [{ name: sp.name, protocol: sp.protocol, port }];
    });
    const key = JSON.stringify(ports);
    let slice = groups.get(key);
    if (!slice) {
      slice = {
        namespace: svc.namespace,
        name: groups.size === 0 ? prefix : `${prefix}-${groups.size}`,
        serviceName: svc.name,
        addressType: family,
        endpoints: [],
        ports,
      };
      groups.set(key, slice);
    }
    const ready = pod.ready && !pod.terminating;
    slice.endpoints.push({
      addresses: [address],
      conditions: { ready, serving: pod.ready, terminating: pod.terminating },
      nodeName: pod.node,
      pod: `${pod.namespace}/${pod.name}`,
    });
  }
  return [...groups.values()];
}

/** ACTIVE when ready; TERMINATING when terminating but still serving; else not a backend. */
function endpointState(e: SliceEndpoint): BackendState | undefined {
  if (e.conditions.ready && !e.conditions.terminating) return 'active';
  if (e.conditions.serving) return 'terminating';
  return undefined;
}

interface Candidate {
  name: string;
  address: string;
  port: number;
  protocol: ServiceProtocol;
  state: BackendState;
  local: boolean;
}

/** The backends of one service port in one family: a frontend's backends are of its own family. */
function candidates(
  svc: Service,
  sp: ServicePort,
  family: IPFamily,
  slices: EndpointSlice[],
  nodeName: string,
): Candidate[] {
  const out = new Map<string, Candidate>();
  for (const slice of slices) {
    if (slice.namespace !== svc.namespace || slice.serviceName !== svc.name) continue;
    if (slice.addressType !== family) continue;
    const port = slice.ports.find((p) => p.name === sp.name && p.protocol === sp.protocol);
    if (!port) continue;
    for (const e of slice.endpoints) {
      const state = endpointState(e);
      if (!state) continue;
      for (const address of e.addresses) {
        if (ipFamilyOf(address) !== family) continue;
        const name = frontendName({ address, port: port.port, protocol: sp.protocol });
        const prev = out.get(name);
        // The same address in two slices: the more available state wins.
        if (prev && prev.state === 'active') continue;
        out.set(name, {
          name,
          address,
          port: port.port,
          protocol: sp.protocol,
          state,
          local: e.nodeName === nodeName,
        });
      }
    }
  }
  return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

interface PlannedFrontend extends Omit<LbFrontend, 'revNatIndex' | 'backends' | 'active'> {
  chosen: Candidate[];
}

export function computeLb(input: LbInput): LbOutput {
  const { config } = input;
  const derivedSlices = input.services.flatMap((s) => deriveSlices(s, input.pods));
  const slices = [...derivedSlices, ...input.slices];
  const planned: PlannedFrontend[] = [];
  for (const svc of input.services) {
    // Headless ('None') or not allocated: DNS only, no frontend.
    const ips = svc.clusterIPs.flatMap((ip) => {
      const family = ipFamilyOf(ip);
      return family ? [{ ip, family }] : [];
    });
    if (ips.length === 0) continue;
    for (const sp of svc.ports) {
      const base = {
        service: `${svc.namespace}/${svc.name}`,
        portName: sp.name,
        protocol: sp.protocol,
        affinityTimeout: svc.sessionAffinity === 'ClientIP' ? svc.affinityTimeoutSeconds : 0,
      };
      const flags =
        (svc.sessionAffinity === 'ClientIP' ? SVC_F_AFFINITY : 0) |
        (config.algorithm === 'maglev' ? SVC_F_MAGLEV : 0);
      for (const { ip, family } of ips)
        planned.push({
          ...base,
          type: 'ClusterIP',
          address: ip,
          port: sp.port,
          flags: flags | (svc.internalTrafficPolicy === 'Local' ? SVC_F_LOCAL : 0),
          chosen: choose(
            candidates(svc, sp, family, slices, config.nodeName),
            svc.internalTrafficPolicy === 'Local',
          ),
        });
      // The NodePort datapath (bpf/lib/nodeport.h) is IPv4-only: one frontend on the node's IPv4
      // address, over the IPv4 backends, also for a dual-stack service.
      if (svc.type === 'NodePort' && sp.nodePort !== undefined)
        planned.push({
          ...base,
          type: 'NodePort',
          address: config.nodeIP,
          port: sp.nodePort,
          flags: flags | SVC_F_NODEPORT | (svc.externalTrafficPolicy === 'Local' ? SVC_F_LOCAL : 0),
          chosen: choose(
            candidates(svc, sp, 'IPv4', slices, config.nodeName),
            svc.externalTrafficPolicy === 'Local',
          ),
        });
    }
  }

  const backendIds = assignIds(
    input.ids.backends,
    planned.flatMap((f) => f.chosen.map((c) => c.name)),
    MAX_BACKEND_ID,
    'backends',
  );
  const revNat = assignIds(input.ids.revNat, planned.map(frontendName), MAX_REV_NAT, 'service frontends');
  const backends = new Map<number, LbBackend>();
  const frontends: LbFrontend[] = [];
  const maglev = new Map<number, Uint32Array>();
  const used = new Map<string, Uint32Array>();
  for (const p of planned) {
    const { chosen, ...rest } = p;
    const ordered = [
      ...chosen.filter((c) => c.state === 'active'),
      ...chosen.filter((c) => c.state !== 'active'),
    ];
    for (const c of ordered) {
      const id = backendIds[c.name] as number;
      const prev = backends.get(id);
      if (!prev || prev.state !== 'active')
        backends.set(id, {
          id,
          name: c.name,
          address: c.address,
          port: c.port,
          protocol: c.protocol,
          state: c.state,
        });
    }
    const f: LbFrontend = {
      ...rest,
      revNatIndex: revNat[frontendName(p)] as number,
      backends: ordered.map((c) => backendIds[c.name] as number),
      active: ordered.filter((c) => c.state === 'active').length,
    };
    frontends.push(f);
    if (config.algorithm === 'maglev' && f.active > 0) {
      const active = ordered
        .slice(0, f.active)
        .map((c) => ({ id: backendIds[c.name] as number, name: c.name }));
      const key = `${config.maglevSize}|${config.maglevSeed}|${active.map((b) => `${b.id}=${b.name}`).join(',')}`;
      let table = input.maglevCache?.get(key);
      if (!table) table = maglevTable(active, config.maglevSize, config.maglevSeed);
      used.set(key, table);
      maglev.set(f.revNatIndex, table);
    }
  }
  if (input.maglevCache) {
    input.maglevCache.clear();
    for (const [k, t] of used) input.maglevCache.set(k, t);
  }
  frontends.sort((a, b) => a.revNatIndex - b.revNatIndex);
  return { frontends, backends, maglev, derivedSlices, ids: { backends: backendIds, revNat } };
}

/** Traffic policy Local keeps the node's own backends only. */
function choose(all: Candidate[], local: boolean): Candidate[] {
  return local ? all.filter((c) => c.local) : all;
}

/** One weir_lb_services entry (struct lb_key -> struct lb_service). */
export interface LbServiceEntry {
  key: { address: string; port: number; protocol: ServiceProtocol; slot: number; scope: number };
  value: { backendId: number; count: number; revNatIndex: number; active: number; flags: number };
}

/** LB_SCOPE_EXT: weir keeps one backend set per frontend (traffic policy already applied). */
export const LB_SCOPE_EXT = 0;

/**
 * Slot 0 (metadata: counts, rev-NAT, flags, affinity timeout), then one slot per backend naming
 * only its id, so a backend added or removed rewrites slot 0 and the slots that moved.
 */
export function serviceEntries(f: LbFrontend): LbServiceEntry[] {
  const key = (slot: number) => ({
    address: f.address,
    port: f.port,
    protocol: f.protocol,
    slot,
    scope: LB_SCOPE_EXT,
  });
  const meta = { count: f.backends.length, revNatIndex: f.revNatIndex, active: f.active, flags: f.flags };
  return [
    { key: key(0), value: { backendId: f.affinityTimeout, ...meta } },
    ...f.backends.map((id, i) => ({
      key: key(i + 1),
      value: { backendId: id, count: 0, revNatIndex: 0, active: 0, flags: 0 },
    })),
  ];
}

export const serviceEntryName = (k: LbServiceEntry['key']) =>
  `${k.address}:${k.port}/${k.protocol}#${k.slot}@${k.scope}`;
