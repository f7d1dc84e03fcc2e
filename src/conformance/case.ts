// Conformance case files (conformance/{netpol,cnp}/cases/*.json): topology (standard =
// the sibling topology.json, or inline), label changes (FULL label sets), policies with
// {podIP:NS/POD} placeholders, probes and the expected reachability table.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { nthAddress, parsePrefix } from '../identity/cidr.js';
import { WeirError } from '../shared/errors.js';

export type ProbeProtocol = 'TCP' | 'UDP' | 'SCTP';

export interface TopologyContainer {
  port: number;
  protocol: ProbeProtocol;
  portName?: string;
}

export interface TopologyPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  containers: TopologyContainer[];
  serviceAccount?: string;
  /** The pod's own ClusterIP Service ("ns/name"), when the topology gives it one. */
  service?: string;
}

export interface TopologyServicePort {
  name?: string;
  port: number;
  /** A number or a container port name; absent = `port`. */
  targetPort?: number | string;
  protocol: ProbeProtocol;
}

export interface TopologyService {
  namespace: string;
  name: string;
  selector: Record<string, string>;
  ports: TopologyServicePort[];
}

/** A port a non-pod peer (node, external) serves. */
export interface ServedPort {
  port: number;
  protocol: ProbeProtocol;
}

export interface Topology {
  /** Identifies the topology so a runner builds it once for all cases that share it. */
  key: string;
  namespaces: { name: string; labels: Record<string, string> }[];
  pods: TopologyPod[];
  /** "host/node" when the node is a peer (cnp model). */
  host?: string;
  hostServes?: ServedPort[];
  externals: { name: string; ip: string; serves?: ServedPort[] }[];
  podCIDR?: string;
  /** The pods' own Services (standard model: `s-<ns>-<pod>` selecting `pod: <name>`). */
  services: TopologyService[];
  /** Every peer name, in order: pods, host, externals. */
  peers: string[];
  /** L7 model: the cluster DNS's records for names outside the cluster (topology `dns`). */
  dns?: { ttl?: number; records: Record<string, string[]>; server?: string };
}

export interface CaseProbe {
  port: number;
  protocol: ProbeProtocol;
  target: string;
  service?: string;
  backendPort?: number;
  /**
   * L7 corpus (conformance/l7): a probe names its own id, step and peers and carries what it sends
   * (`http`, `dns`, `fqdn` + `resolveFirst`); `raw` is the probe object as written in the case.
   */
  id?: string;
  step?: number;
  from?: string;
  to?: string;
  raw?: Record<string, unknown>;
}

/** L7 probe outcomes (conformance/l7/topology.json probe.results). */
export type L7Result = 'allowed' | 'l7-denied' | 'dropped';

export interface CaseExpect {
  from: string;
  to: string;
  port: number;
  protocol: ProbeProtocol;
  allowed: boolean | null;
  loopback?: boolean;
  backendPort?: number;
  service?: string;
  /** L7 corpus: the probe id this expectation is for, its result and what the server must see. */
  probe?: string;
  result?: L7Result;
  upstreamSaw?: { headers?: Record<string, string>; absentHeaders?: string[] };
  /** L7 corpus, DNS probes: the answer expected (rcode; the A records when listed). */
  dns?: ExpectedDns;
  /** L7 corpus, resolve-then-connect probes: what the lookup must give. */
  resolve?: ExpectedDns & { result?: L7Result };
}

export interface ExpectedDns {
  rcode?: string;
  answers?: string[];
}

export interface ConformanceCase {
  id: string;
  name: string;
  file: string;
  topology: Topology;
  labelChanges: {
    pods: Record<string, Record<string, string>>;
    namespaces: Record<string, Record<string, string>>;
  };
  /** Services the case adds to its topology's (topologyAdditions.services). */
  services: TopologyService[];
  /** Raw policy objects, placeholders still in (substitute with the run's pod IPs). */
  policies: unknown[];
  probes: CaseProbe[];
  /** Peers probed when the case has no expect list. */
  peers?: { from: string[]; to: string[] };
  expect?: CaseExpect[];
}

/** Addresses as the lab assigns them: node .1, pods .2, .3, ... in topology order. */
export interface Addresses {
  nodeIP: string;
  pods: Map<string, string>;
  externals: Map<string, string>;
}

export function defaultAddresses(t: Topology): Addresses {
  const cidr = parsePrefix(t.podCIDR ?? '10.244.0.0/16');
  if (!cidr) throw new WeirError('ERR_CONFORMANCE_CASE', `invalid podCIDR '${t.podCIDR}'`);
  const pods = new Map(t.pods.map((p, i) => [`${p.namespace}/${p.name}`, nthAddress(cidr, i + 2)]));
  return { nodeIP: nthAddress(cidr, 1), pods, externals: new Map(t.externals.map((e) => [e.name, e.ip])) };
}

/** Replaces {podIP:NS/POD} everywhere in `value`. */
export function substitutePlaceholders(value: unknown, addrs: Addresses, file: string): unknown {
  if (typeof value === 'string')
    return value.replace(/\{podIP:([^}]+)\}/g, (_, pod: string) => {
      const ip = addrs.pods.get(pod);
      if (!ip) throw new WeirError('ERR_CONFORMANCE_CASE', `${file}: placeholder names unknown pod '${pod}'`);
      return ip;
    });
  if (Array.isArray(value)) return value.map((v) => substitutePlaceholders(v, addrs, file));
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, substitutePlaceholders(v, addrs, file)]),
    );
  return value;
}

type Json = Record<string, unknown>;

function readJson(file: string): Json {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Json;
  } catch (err) {
    throw new WeirError('ERR_CONFORMANCE_CASE', `${file}: cannot read JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function parseService(s: Json, namespace: string): TopologyService {
  return {
    namespace,
    name: String(s.name),
    selector: (s.selector as Record<string, string>) ?? {},
    ports: ((s.ports as Json[]) ?? []).map((p) => ({
      ...(typeof p.name === 'string' ? { name: p.name } : {}),
      port: Number(p.port),
      ...(typeof p.targetPort === 'string' || typeof p.targetPort === 'number'
        ? { targetPort: p.targetPort }
        : {}),
      protocol: String(p.protocol ?? 'TCP') as ProbeProtocol,
    })),
  };
}

/** The pod port a Service port translates to on `pod` (a named targetPort resolves per pod). */
export function backendPortOf(sp: TopologyServicePort, pod: TopologyPod | undefined): number | undefined {
  if (sp.targetPort === undefined) return sp.port;
  if (typeof sp.targetPort === 'number') return sp.targetPort;
  if (/^\d+$/.test(sp.targetPort)) return Number(sp.targetPort);
  return pod?.containers.find((c) => c.portName === sp.targetPort && c.protocol === sp.protocol)?.port;
}

function parseTopology(raw: Json, key: string): Topology {
  const namespaces = ((raw.namespaces as Json[]) ?? []).map((n) => ({
    name: String(n.name),
    labels: (n.labels as Record<string, string>) ?? {},
  }));
  const services: TopologyService[] = [];
  const pods = ((raw.pods as Json[]) ?? []).map((p) => ({
    namespace: String(p.namespace),
    name: String(p.name),
    labels: (p.labels as Record<string, string>) ?? {},
    containers: ((p.containers as Json[]) ?? []).map((c) => ({
      port: Number(c.port),
      protocol: String(c.protocol ?? 'TCP') as ProbeProtocol,
      ...(typeof c.portName === 'string' ? { portName: c.portName } : {}),
    })),
    ...(typeof p.serviceAccount === 'string' ? { serviceAccount: p.serviceAccount } : {}),
    ...(() => {
      const svc = p.service as Json | undefined;
      if (!svc || typeof svc !== 'object') return {};
      services.push(parseService(svc, String(p.namespace)));
      return { service: `${String(p.namespace)}/${String(svc.name)}` };
    })(),
  }));
  // The L7 model's DNS server (dns.server) is a pod of its own namespace, selected by policies.
  const dnsServer = (raw.dns as Json | undefined)?.server as Json | undefined;
  if (dnsServer && typeof dnsServer.namespace === 'string' && typeof dnsServer.podName === 'string')
    pods.push({
      namespace: dnsServer.namespace,
      name: dnsServer.podName,
      labels: (dnsServer.labels as Record<string, string>) ?? {},
      containers: ((dnsServer.serves as Json[]) ?? []).map((c) => ({
        port: Number(c.port),
        protocol: String(c.protocol ?? 'UDP') as ProbeProtocol,
      })),
    });
  const served = (v: unknown): ServedPort[] | undefined =>
    Array.isArray(v)
      ? (v as Json[]).map((s) => ({
          port: Number(s.port),
          protocol: String(s.protocol ?? 'TCP') as ProbeProtocol,
        }))
      : undefined;
  const host = (raw.host as Json | undefined)?.name as string | undefined;
  const hostServes = served((raw.host as Json | undefined)?.serves);
  const externals = ((raw.externals as Json[]) ?? []).map((e) => {
    const serves = served(e.serves);
    return { name: String(e.name), ip: String(e.ip), ...(serves ? { serves } : {}) };
  });
  const peers = [
    ...pods.map((p) => `${p.namespace}/${p.name}`),
    ...(host ? [host] : []),
    ...externals.map((e) => e.name),
  ];
  return {
    key,
    namespaces,
    pods,
    ...(host ? { host } : {}),
    ...(hostServes ? { hostServes } : {}),
    externals,
    ...(typeof raw.podCIDR === 'string' ? { podCIDR: raw.podCIDR } : {}),
    services,
    peers,
    ...(() => {
      const d = raw.dns as Json | undefined;
      if (!d || typeof d.records !== 'object' || d.records === null) return {};
      return {
        dns: {
          ...(typeof d.ttl === 'number' ? { ttl: d.ttl } : {}),
          records: d.records as Record<string, string[]>,
          // The pod that answers DNS ("ns/name"), added to the pods above.
          ...(dnsServer && typeof dnsServer.namespace === 'string' && typeof dnsServer.podName === 'string'
            ? { server: `${dnsServer.namespace}/${dnsServer.podName}` }
            : {}),
        },
      };
    })(),
  };
}

const topologyCache = new Map<string, Topology>();

export function loadCase(file: string): ConformanceCase {
  const raw = readJson(file);
  let topology: Topology;
  if (raw.topology === 'standard' || raw.topology === undefined) {
    const tfile = join(dirname(dirname(file)), 'topology.json');
    topology = topologyCache.get(tfile) ?? parseTopology(readJson(tfile), tfile);
    topologyCache.set(tfile, topology);
  } else if (typeof raw.topology === 'object' && raw.topology !== null) {
    topology = parseTopology(raw.topology as Json, `${file}#topology:${JSON.stringify(raw.topology)}`);
  } else throw new WeirError('ERR_CONFORMANCE_CASE', `${file}: topology must be "standard" or an object`);
  const lc = (raw.labelChanges as Json | undefined) ?? {};
  const services = (((raw.topologyAdditions as Json | undefined)?.services as Json[]) ?? []).map((s) =>
    parseService(s, String(s.namespace)),
  );
  const peers = raw.peers as { from?: string[]; to?: string[] } | undefined;
  return {
    id: String(raw.id ?? basename(file, '.json')),
    name: String(raw.name ?? ''),
    file,
    topology,
    labelChanges: {
      pods: (lc.pods as Record<string, Record<string, string>>) ?? {},
      namespaces: (lc.namespaces as Record<string, Record<string, string>>) ?? {},
    },
    services,
    policies: (raw.policies as unknown[]) ?? [],
    probes: ((raw.probes as Json[]) ?? []).map((p) => ({
      port: Number(p.port),
      protocol: String(p.protocol) as ProbeProtocol,
      target: String(p.target ?? 'ip'),
      ...(typeof p.service === 'string' ? { service: p.service } : {}),
      ...(p.backendPort !== undefined ? { backendPort: Number(p.backendPort) } : {}),
      ...(typeof p.id === 'string' && typeof p.from === 'string' && typeof p.to === 'string'
        ? { id: p.id, step: Number(p.step ?? 1), from: p.from, to: p.to, raw: p }
        : {}),
    })),
    ...(peers?.from && peers.to ? { peers: { from: peers.from, to: peers.to } } : {}),
    ...(Array.isArray(raw.expect)
      ? {
          expect: (raw.expect as Json[]).map((e) => ({
            from: String(e.from),
            to: String(e.to),
            port: Number(e.port),
            protocol: String(e.protocol) as ProbeProtocol,
            allowed: e.allowed === null || e.allowed === undefined ? null : Boolean(e.allowed),
            ...(e.loopback === true ? { loopback: true } : {}),
            ...(e.backendPort !== undefined ? { backendPort: Number(e.backendPort) } : {}),
            ...(typeof e.service === 'string' ? { service: e.service } : {}),
            ...(typeof e.probe === 'string' ? { probe: e.probe } : {}),
            ...(typeof e.result === 'string' ? { result: e.result as L7Result } : {}),
            ...(e.upstreamSaw && typeof e.upstreamSaw === 'object'
              ? { upstreamSaw: e.upstreamSaw as NonNullable<CaseExpect['upstreamSaw']> }
              : {}),
            ...(e.dns && typeof e.dns === 'object' ? { dns: e.dns as ExpectedDns } : {}),
            ...(e.resolve && typeof e.resolve === 'object'
              ? { resolve: e.resolve as NonNullable<CaseExpect['resolve']> }
              : {}),
          })),
        }
      : {}),
  };
}

/** Case files of a directory (or a single file), sorted by name. */
export function listCaseFiles(path: string): string[] {
  if (path.endsWith('.json')) return [path];
  const dir = readdirSync(path).some((f) => f === 'cases') ? join(path, 'cases') : path;
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => join(dir, f));
}
