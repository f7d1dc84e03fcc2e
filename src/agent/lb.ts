// The agent's service load balancing: stored Service/EndpointSlice objects + the pods ->
// src/service's pure model -> the lb maps (datapath.lb), writing only what changed. Write order
// keeps every lookup consistent: backends before the services naming them, Maglev tables before
// the frontends that select through them, removed services before the backends they named.
import type { Logger as Pino } from 'pino';
import type { Datapath } from '../datapath/loader.js';
import type { ServiceEntry } from '../datapath/maps/lb/index.js';
import { refName, type DesiredObject } from '../cluster/objects.js';
import {
  allocateClusterIP,
  allocateNodePort,
  clusterFamilies,
  defaultServiceCIDRv6,
  type Taken,
  inCIDR,
  parseServiceCIDR,
  type ServiceCidr,
} from '../service/allocate.js';
import {
  isServiceKind,
  validateEndpointSlice,
  validateService,
  type EndpointSlice,
  type IPFamily,
  type Service,
} from '../service/api/index.js';
import { hostPort, ipFamilyOf } from '../service/ip.js';
import { maglevSeed } from '../service/maglev.js';
import {
  computeLb,
  frontendName,
  type LbAlgorithm,
  type LbBackend,
  type LbFrontend,
  type LbOutput,
  type LbPod,
} from '../service/model.js';
import { WeirError } from '../shared/errors.js';
import { objectKey } from '../cluster/keys.js';
import type { AgentPod } from './agent.js';

export interface LbSettings {
  lbAlgorithm: LbAlgorithm;
  maglevTableSize: number;
  maglevSeed: string;
  serviceCIDR: string;
  /** Where IPv6 ClusterIPs are allocated; '' = none (IPv4-only cluster). Absent: the default. */
  serviceCIDRv6?: string;
}

export interface LbWriteStats {
  upserts: number;
  deletes: number;
}

const proto = (p: string) => (p === 'UDP' ? 'udp' : 'tcp') as 'tcp' | 'udp';
const backendText = (b: { address: string; port: number; proto: string; state: string }) =>
  `${b.address}:${b.port}/${b.proto} ${b.state}`;
const serviceText = (e: ServiceEntry) =>
  `${e.meta.revNatIndex} ${e.meta.flags} ${e.meta.affinityTimeout} ${e.meta.active} [${e.backendIds.join(',')}]`;
const entryName = (e: ServiceEntry) =>
  frontendName({
    address: e.frontend.address,
    port: e.frontend.port,
    protocol: e.frontend.proto.toUpperCase(),
  });

export class ServiceLb {
  readonly cidr: ServiceCidr;
  /** Undefined: the cluster has no IPv6 service CIDR (IPv6 services are refused or degraded). */
  readonly cidr6: ServiceCidr | undefined;
  readonly seed: number;
  /** What the maps hold, as written or read back: frontend name -> entry; backend id -> backend. */
  private services = new Map<string, ServiceEntry>();
  private backends = new Map<number, string>();
  private maglev = new Map<number, Uint32Array | number[]>();
  private validated = new WeakMap<object, Service | EndpointSlice>();
  private readonly maglevCache = new Map<string, Uint32Array>();
  output: LbOutput | undefined;
  /** The services and every slice (derived and applied) of the last regeneration (cluster DNS). */
  lastServices: { services: Service[]; slices: EndpointSlice[] } = { services: [], slices: [] };

  constructor(
    readonly settings: LbSettings,
    readonly datapath: Datapath,
    readonly log: Pino,
  ) {
    this.cidr = parseServiceCIDR(settings.serviceCIDR);
    const v6 = settings.serviceCIDRv6 ?? defaultServiceCIDRv6;
    this.cidr6 = v6 ? parseServiceCIDR(v6, 'IPv6') : undefined;
    this.seed = maglevSeed(settings.maglevSeed);
    this.readBack();
  }

  /** What the pinned maps hold, so a restarted agent rewrites nothing that is still right. */
  private readBack(): void {
    const lb = this.datapath.lb;
    this.services = new Map(lb.listServices().map((e) => [entryName(e), e]));
    this.backends = new Map(lb.listBackends().map((b) => [b.id, backendText(b.backend)]));
    // A table written for another M reads back as M ids that differ from the new table's, so the
    // next regeneration rewrites it; a table that cannot be read stops the agent, naming the map.
    for (const e of this.services.values()) {
      const t = lb.getMaglevTable(e.meta.revNatIndex);
      if (t) this.maglev.set(e.meta.revNatIndex, t);
    }
  }

  validate(o: DesiredObject): Service | EndpointSlice {
    const key = o.object as object;
    let v = this.validated.get(key);
    if (!v) {
      // "Service ns/name": a Service without metadata.namespace is in the namespace named here.
      const loc = { file: o.file ?? '(agent store)', object: refName(o) };
      v = o.kind === 'Service' ? validateService(o.object, loc) : validateEndpointSlice(o.object, loc);
      if (key && typeof key === 'object') this.validated.set(key, v);
    }
    return v;
  }

  /**
   * An allocator for one request: fills what the API server would allocate — spec.clusterIPs (one
   * per family, unless headless) with spec.clusterIP, ipFamilies and ipFamilyPolicy, and the
   * nodePorts of a NodePort service — keeping those the stored copy already has.
   * The addresses and ports in use are indexed once, and each allocation updates the index, so a
   * request of N services costs O(N), and addresses given out earlier in it count as taken.
   */
  allocator(stored: DesiredObject[]): (o: DesiredObject) => DesiredObject {
    const services = new Map<string, Service>();
    const ipOwner = new Map<string, string>();
    const portOwner = new Map<string, string>();
    const add = (key: string, svc: Service) => {
      services.set(key, svc);
      for (const ip of svc.clusterIPs) if (ip !== 'None') ipOwner.set(ip, key);
      for (const p of svc.ports) if (p.nodePort) portOwner.set(`${p.nodePort}/${p.protocol}`, key);
    };
    const remove = (key: string) => {
      const svc = services.get(key);
      if (!svc) return;
      for (const ip of svc.clusterIPs) if (ipOwner.get(ip) === key) ipOwner.delete(ip);
      for (const p of svc.ports) {
        const k = `${p.nodePort}/${p.protocol}`;
        if (p.nodePort && portOwner.get(k) === key) portOwner.delete(k);
      }
      services.delete(key);
    };
    for (const s of stored) if (s.kind === 'Service') add(objectKey(s), this.validate(s) as Service);
    // What others hold: a service's own address and ports do not count against it.
    const othersOf = (owners: Map<string, string>, key: string): Taken => ({
      has: (v: string) => owners.has(v) && owners.get(v) !== key,
    });

    return (o) => {
      const v = this.validate(o);
      if (o.kind !== 'Service') return o;
      const svc = v as Service;
      const key = objectKey(o);
      const loc = { file: o.file ?? '(request)', object: `Service ${svc.namespace}/${svc.name}` };
      const old = services.get(key);
      const usedIPs = othersOf(ipOwner, key);
      const families = clusterFamilies(svc, this.cidr6 !== undefined, loc);
      const clusterIPs =
        svc.clusterIPs[0] === 'None'
          ? ['None']
          : families.map((family) => {
              const cidr = (family === 'IPv4' ? this.cidr : this.cidr6) as ServiceCidr;
              const i = svc.clusterIPs.findIndex((ip) => ipFamilyOf(ip) === family);
              const given = svc.clusterIPs[i];
              if (given) {
                const field = i === 0 ? 'spec.clusterIP' : `spec.clusterIPs[${i}]`;
                if (!inCIDR(given, cidr))
                  throw new WeirError(
                    'ERR_SERVICE_CLUSTERIP_RANGE',
                    `${given} is not in the service CIDR ${cidr.text}`,
                    { location: { ...loc, field } },
                  );
                if (usedIPs.has(given))
                  throw new WeirError(
                    'ERR_SERVICE_CLUSTERIP_TAKEN',
                    `${given} is already allocated to another service`,
                    { location: { ...loc, field } },
                  );
                return given;
              }
              const kept = old?.clusterIPs.find(
                (ip) => ipFamilyOf(ip) === family && inCIDR(ip, cidr) && !usedIPs.has(ip),
              );
              return kept ?? allocateClusterIP(key, cidr, usedIPs);
            });
      const usedPorts = othersOf(portOwner, key);
      const given = new Set<string>();
      const taken: Taken = { has: (k: string) => usedPorts.has(k) || given.has(k) };
      const raw = structuredClone(o.object) as {
        spec: {
          clusterIP?: string;
          clusterIPs?: string[];
          ipFamilies?: IPFamily[];
          ipFamilyPolicy?: string;
          ports?: { nodePort?: number }[];
        };
      };
      Object.assign(raw.spec, {
        clusterIP: clusterIPs[0],
        clusterIPs,
        ipFamilies: families,
        ipFamilyPolicy: svc.ipFamilyPolicy,
      });
      svc.ports.forEach((p, i) => {
        if (svc.type !== 'NodePort') return;
        const field = `spec.ports[${i}].nodePort`;
        if (p.nodePort !== undefined && taken.has(`${p.nodePort}/${p.protocol}`))
          throw new WeirError(
            'ERR_SERVICE_NODEPORT_TAKEN',
            `nodePort ${p.nodePort}/${p.protocol} is already allocated`,
            {
              location: { ...loc, field },
            },
          );
        const kept = old?.ports.find((q) => q.name === p.name && q.protocol === p.protocol)?.nodePort;
        const port =
          p.nodePort ??
          (kept && !taken.has(`${kept}/${p.protocol}`)
            ? kept
            : allocateNodePort(`${key}/${p.name}`, p.protocol, taken));
        given.add(`${port}/${p.protocol}`);
        const rp = raw.spec.ports?.[i];
        if (rp) rp.nodePort = port;
      });
      const out = { ...o, object: raw };
      remove(key);
      add(key, this.validate(out) as Service);
      return out;
    };
  }

  /** Computes the LB state of `objects` and the pods, and writes what differs from the maps. */
  regenerate(
    objects: DesiredObject[],
    pods: AgentPod[],
    node: { name: string; ip: string },
    ids: { backends: Record<string, number>; revNat: Record<string, number> },
    mesh?: { nodeIP: string; ports: Map<string, Map<number, number>> },
  ): { output: LbOutput; stats: LbWriteStats } {
    const mine = objects.filter((o) => isServiceKind(o.kind)).map((o) => this.validate(o));
    let services = mine.filter((v): v is Service => 'type' in v);
    const slices = mine.filter((v): v is EndpointSlice => 'addressType' in v);
    // Gateway API mesh: a Service with routes has the node proxy's listeners as its only backend.
    if (mesh && mesh.ports.size > 0)
      services = services.map((s) => {
        const m = mesh.ports.get(`${s.namespace}/${s.name}`);
        if (!m) return s;
        slices.push({
          namespace: s.namespace,
          name: `${s.name}-weir-mesh`,
          serviceName: s.name,
          addressType: 'IPv4',
          endpoints: [
            { addresses: [mesh.nodeIP], conditions: { ready: true, serving: true, terminating: false } },
          ],
          ports: s.ports
            .filter((p) => m.has(p.port))
            .map((p) => ({ name: p.name, protocol: 'TCP' as const, port: m.get(p.port) as number })),
        });
        const { selector: _selector, ...rest } = s;
        return rest;
      });
    const lbPods: LbPod[] = pods.map((p) => ({
      namespace: p.namespace,
      name: p.name,
      labels: p.labels,
      ip: p.ip,
      ...(p.ip6 ? { ip6: p.ip6 } : {}),
      ports: p.ports,
      node: p.node,
      ready: p.ready,
      terminating: p.terminating === true,
    }));
    const output = computeLb({
      services,
      slices,
      pods: lbPods,
      ids,
      maglevCache: this.maglevCache,
      config: {
        algorithm: this.settings.lbAlgorithm,
        maglevSize: this.settings.maglevTableSize,
        maglevSeed: this.seed,
        nodeName: node.name,
        nodeIP: node.ip,
      },
    });
    const stats = this.write(output);
    this.output = output;
    this.lastServices = { services, slices: [...output.derivedSlices, ...slices] };
    return { output, stats };
  }

  /** The services as stored, with what the model derived for them. */
  summaries(objects: DesiredObject[]): ServiceSummary[] {
    const out = this.output;
    return objects
      .filter((o) => o.kind === 'Service')
      .map((o) => {
        const s = this.validate(o) as Service;
        const key = `${s.namespace}/${s.name}`;
        const fes = out?.frontends.filter((f) => f.service === key) ?? [];
        const endpoints = new Set(
          fes.flatMap((f) =>
            f.backends.slice(0, f.active).map((id) => {
              const b = out?.backends.get(id);
              return b ? hostPort(b.address, b.port) : String(id);
            }),
          ),
        );
        // A headless service has no frontend: its endpoints are the ready pods themselves.
        if (s.clusterIP === 'None')
          for (const slice of out?.derivedSlices ?? [])
            if (slice.namespace === s.namespace && slice.serviceName === s.name)
              for (const e of slice.endpoints)
                if (e.conditions.ready) for (const a of e.addresses) endpoints.add(a);
        return {
          namespace: s.namespace,
          name: s.name,
          type: s.type,
          clusterIP: s.clusterIP ?? '<pending>',
          clusterIPs: s.clusterIPs,
          ipFamilies: s.ipFamilies,
          ipFamilyPolicy: s.ipFamilyPolicy,
          ports: s.ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol}`),
          ...(s.selector ? { selector: s.selector } : {}),
          sessionAffinity: s.sessionAffinity,
          endpoints: [...endpoints].sort(),
        };
      })
      .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  }

  /** Frontends -> backends with their state, like `cilium service list`. */
  frontends(): FrontendView[] {
    const out = this.output;
    if (!out) return [];
    return out.frontends.map((f) => ({
      id: f.revNatIndex,
      frontend: frontendName(f),
      type: f.type,
      service: f.service,
      flags: f.flags,
      backends: f.backends.map((id, i) => {
        const b = out.backends.get(id);
        return {
          id,
          address: b ? b.name : String(id),
          state: i < f.active ? 'active' : 'terminating',
        };
      }),
    }));
  }

  /** The Maglev tables of a service's frontends, read back from the kernel. */
  maglevTables(service: string): MaglevView[] {
    const out = this.output;
    const fes = out?.frontends.filter((f) => f.service === service) ?? [];
    if (fes.length === 0)
      throw new WeirError('ERR_SERVICE_NOT_FOUND', `no service ${service} with a frontend`, {
        location: { object: `Service ${service}` },
      });
    return fes.map((f) => {
      const table = this.datapath.lb.getMaglevTable(f.revNatIndex);
      if (!table)
        throw new WeirError(
          'ERR_SERVICE_NO_MAGLEV',
          `frontend ${frontendName(f)} has no Maglev table (algorithm ${this.settings.lbAlgorithm}, ${f.active} active backends)`,
          { location: { object: `Service ${service}` } },
        );
      const counts = new Map<number, number>();
      for (const id of table) counts.set(id, (counts.get(id) ?? 0) + 1);
      return {
        frontend: frontendName(f),
        revNatIndex: f.revNatIndex,
        tableSize: table.length,
        backends: [...counts]
          .sort((a, b) => a[0] - b[0])
          .map(([id, entries]) => ({
            id,
            address: out?.backends.get(id)?.name ?? String(id),
            entries,
            share: entries / table.length,
          })),
      };
    });
  }

  private write(out: LbOutput): LbWriteStats {
    const lb = this.datapath.lb;
    let upserts = 0;
    let deletes = 0;
    const wantBackends = new Map<number, string>();
    for (const b of out.backends.values()) {
      wantBackends.set(b.id, backendText(backendValue(b)));
    }
    for (const [id, text] of wantBackends) {
      if (this.backends.get(id) === text) continue;
      const b = out.backends.get(id) as LbBackend;
      lb.upsertBackend(id, backendValue(b));
      this.backends.set(id, text);
      upserts++;
    }
    const want = new Map<string, { f: LbFrontend; entry: ServiceEntry }>();
    for (const f of out.frontends) {
      want.set(frontendName(f), {
        f,
        entry: {
          frontend: { address: f.address, port: f.port, proto: proto(f.protocol), scope: 'ext' },
          meta: {
            revNatIndex: f.revNatIndex,
            flags: f.flags,
            affinityTimeout: f.affinityTimeout,
            active: f.active,
          },
          backendIds: f.backends,
        },
      });
    }
    for (const [rev, table] of out.maglev) {
      const old = this.maglev.get(rev);
      if (old === table || (old && old.length === table.length && old.every((v, i) => v === table[i])))
        continue;
      lb.setMaglevTable(rev, [...table]);
      this.maglev.set(rev, table);
      upserts++;
    }
    for (const [name, { entry }] of want) {
      const old = this.services.get(name);
      if (old && serviceText(old) === serviceText(entry)) continue;
      lb.upsertService(entry.frontend, entry.meta, entry.backendIds);
      this.services.set(name, entry);
      upserts++;
    }
    for (const [name, old] of this.services) {
      if (want.has(name)) continue;
      lb.deleteService(old.frontend);
      this.services.delete(name);
      deletes++;
    }
    for (const rev of this.maglev.keys()) {
      if (out.maglev.has(rev)) continue;
      lb.deleteMaglevTable(rev);
      this.maglev.delete(rev);
      deletes++;
    }
    for (const id of this.backends.keys()) {
      if (wantBackends.has(id)) continue;
      lb.deleteBackend(id);
      this.backends.delete(id);
      deletes++;
    }
    if (upserts + deletes > 0) this.log.info({ upserts, deletes }, 'load-balancing maps written');
    return { upserts, deletes };
  }
}

export interface ServiceSummary {
  namespace: string;
  name: string;
  type: string;
  /** kubectl's CLUSTER-IP: the primary (first) address. */
  clusterIP: string;
  /** One per family, primary first (['None'] when headless). */
  clusterIPs: string[];
  ipFamilies: string[];
  ipFamilyPolicy: string;
  /** "80/TCP" or "80:30080/TCP" (NodePort), kubectl's PORT(S). */
  ports: string[];
  selector?: Record<string, string>;
  sessionAffinity: string;
  /** Ready backends ("address:port"); for a headless service, the ready pods' addresses. */
  endpoints: string[];
}

export interface FrontendView {
  id: number;
  frontend: string;
  type: string;
  service: string;
  flags: number;
  backends: { id: number; address: string; state: string }[];
}

export interface MaglevView {
  frontend: string;
  revNatIndex: number;
  tableSize: number;
  /** Backends and the entries of the table (as the kernel holds it) that name each. */
  backends: { id: number; address: string; entries: number; share: number }[];
}

function backendValue(b: LbBackend) {
  return { address: b.address, port: b.port, proto: proto(b.protocol), state: b.state } as const;
}
