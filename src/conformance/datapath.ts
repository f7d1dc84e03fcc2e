// Datapath mode: each topology becomes a lab (node, pods and externals as network namespaces) with
// its own agent, so every probe is a real connection between two workloads, judged by weir's
// programs in the kernel. A case is put in force the way `weir apply` does it: namespaces, pods,
// Services and policies through the agent's API, whose answer comes once the node has reconciled
// them (pods running, maps written). A probe through a Service dials the ClusterIP
// the agent allocated from inside the source pod: the socket LB picks the backend at connect(), so
// policy judges the pod -> backend flow, as upstream's probes through kube-proxy do.
import { isIPv4 } from 'node:net';
import { agentClient } from '../agent/client.js';
import { startAgent, stopAgent } from '../agent/spawn.js';
import type { HostRouting } from '../datapath/loader.js';
import { objectKey } from '../cluster/keys.js';
import { toDesired, type DesiredObject, type PodInfo } from '../cluster/objects.js';
import { parseManifests, type Manifest } from '../k8s/index.js';
import { Lab, nodeOf, nodesOf, parseLabSpec, probe, type Logger, type ProbeResult } from '../lab/index.js';
import { WeirError } from '../shared/errors.js';
import type { ServiceSummary } from '../agent/lb.js';
import type { Addresses, ServedPort, Topology, TopologyService } from './case.js';
import type {
  CaseState,
  DnsObservation,
  HttpProbe,
  ProbeAnswer,
  ProbeRequest,
  ProberFactory,
  ProberSession,
} from './runner.js';

export interface DatapathProberOptions {
  /** Per probe: a connection not made within this is blocked (policy drops are silent). */
  timeoutMs?: number;
  /** HTTP probes: how long the answer may take once connected (default 5000 ms). */
  responseTimeoutMs?: number;
  /** Probes of one case in flight at once. */
  concurrency?: number;
  /** false: the agent runs with --socket-lb off, so Services are translated at tc only. */
  socketLB?: boolean;
  /** The agent's --host-routing (default: the agent's, bpf). */
  hostRouting?: HostRouting;
  /**
   * Nodes of each case's lab (default 1): more spread the topology's pods round-robin in file order
   * (pod i on node (i mod n) + 1), with an agent per node, etcd and the lab's default routing.
   */
  nodes?: number;
  log?: Logger;
}

/** Teardowns of the labs still up, so a signal handler can remove them. */
const openLabs = new Set<() => Promise<void>>();
let labCount = 0;

/** Stops the agent and removes the lab of every session still open (for SIGINT/SIGTERM). */
export async function closeDatapathSessions(): Promise<void> {
  await Promise.allSettled([...openLabs].map((close) => close()));
}

export function datapathProberFactory(opts: DatapathProberOptions = {}): ProberFactory {
  const timeoutMs = opts.timeoutMs ?? 1000;
  const log = opts.log ?? (() => undefined);
  return async (topology: Topology): Promise<ProberSession> => {
    const name = `conf-${process.pid}-${++labCount}`;
    const extNames = labExternalNames(topology);
    const lab = await Lab.open(name);
    const nodeCount = opts.nodes ?? 1;
    const close = async () => {
      if (!openLabs.delete(close)) return;
      for (let k = nodeCount; k >= 2; k--) await stopAgent(name, undefined, `node${k}`);
      await stopAgent(name);
      await lab.down();
    };
    openLabs.add(close);
    try {
      const started = Date.now();
      const cfg = await lab.up(labSpec(name, topology, extNames, nodeCount));
      for (const [i, n] of nodesOf(cfg).entries())
        await startAgent({
          lab: name,
          ...(i > 0 ? { node: n.name } : {}),
          nodeNetns: n.netns,
          settings: {
            ...(opts.socketLB === false ? { socketLB: false } : {}),
            ...(opts.hostRouting ? { hostRouting: opts.hostRouting } : {}),
          },
        });
      await applyLab(name, topology, nodeCount, {
        file: topology.key,
        namespaces: topology.namespaces,
        pods: topology.pods,
      });
      const pods = (await agentClient(name).call<{ items: PodInfo[] }>('GET', '/v1/pods')).items;
      const addresses: Addresses = {
        nodeIP: nodeOf(cfg).ip,
        pods: new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p.ip])),
        externals: new Map(topology.externals.map((e) => [e.name, e.ip])),
      };
      const services = new Services(name);
      await services.sync(topology.services, topology.key);
      log(
        `lab ${name} up with ${nodeCount > 1 ? `${nodeCount} nodes and their agents` : 'its agent'}: ${addresses.pods.size} pods, ${services.count} services (${Date.now() - started} ms)`,
      );

      // The host peer is "the node that runs the pods": with several nodes, the node of the pod at
      // the other end (its local host, as on one node), else node1.
      const nodes = nodesOf(cfg);
      const podNode = new Map(topology.pods.map((p, i) => [`${p.namespace}/${p.name}`, i % nodeCount]));
      const hostOf = (other?: string) => nodes[(other && podNode.get(other)) || 0] ?? nodeOf(cfg);
      const source = (peer: string, other?: string): string => {
        if (addresses.pods.has(peer)) return peer;
        if (peer === topology.host) {
          const n = hostOf(other);
          return n.name === nodes[0]?.name ? 'node' : `node:${n.name}`;
        }
        const ext = extNames.get(peer);
        if (ext) return `ext:${ext}`;
        throw new WeirError('ERR_CONFORMANCE_PEER', `unknown peer '${peer}'`);
      };
      const address = (peer: string, other?: string): string => {
        const ip =
          addresses.pods.get(peer) ??
          (peer === topology.host ? hostOf(other).ip : addresses.externals.get(peer));
        if (!ip) throw new WeirError('ERR_CONFORMANCE_PEER', `unknown peer '${peer}'`);
        return ip;
      };

      const httpProbe = async (
        req: ProbeRequest,
        http: HttpProbe,
        ip = address(req.to),
      ): Promise<ProbeAnswer> => {
        const r = await probe(lab, source(req.from), { ip, port: req.port, protocol: 'TCP' }, timeoutMs, {
          request: {
            method: http.method,
            path: http.path,
            host: http.host ?? (req.port === 80 ? ip : `${ip}:${req.port}`),
            headers: Object.entries(http.headers ?? {}),
            responseTimeoutMs: opts.responseTimeoutMs ?? 5000,
          },
        });
        return httpAnswer(r);
      };

      /** One DNS query from inside `from`: an answer (any RCODE but REFUSED) is allowed. */
      const dnsQuery = async (
        from: string,
        to: { ip: string; port: number; protocol: 'TCP' | 'UDP' },
        query: { name: string; type: string },
      ): Promise<ProbeAnswer & { dns?: DnsObservation }> => {
        const r = await probe(lab, source(from), to, timeoutMs, { dns: query });
        return dnsAnswer(r);
      };

      const fqdnProbe = async (req: ProbeRequest): Promise<ProbeAnswer> => {
        const f = req.fqdn as NonNullable<ProbeRequest['fqdn']>;
        let ip = address(req.to);
        let resolve: ProbeAnswer['resolve'];
        if (f.resolveFirst && f.resolver) {
          const a = await dnsQuery(
            req.from,
            {
              ip: address(f.resolver.server),
              port: f.resolver.port,
              protocol: f.resolver.protocol === 'TCP' ? 'TCP' : 'UDP',
            },
            { name: f.name, type: f.resolver.type },
          );
          resolve = { result: a.result ?? 'error', ...(a.dns ?? {}) };
          // Connect to the answer; no address (refused, dropped): the topology's address of `to`.
          const first = a.dns?.answers?.find((x) => isIPv4(x));
          if (first) ip = first;
        }
        const answer = req.http
          ? await httpProbe({ ...req, to: req.to }, req.http, ip)
          : dialAnswer(await probe(lab, source(req.from), { ip, port: req.port, protocol: 'TCP' }, timeoutMs));
        const note = [
          resolve ? `resolved ${f.name} -> ${resolve.answers?.join(',') || resolve.rcode || resolve.result}` : '',
          `connected to ${ip}`,
          answer.note ?? '',
        ]
          .filter(Boolean)
          .join('; ');
        return { ...answer, ...(resolve ? { resolve } : {}), note };
      };

      return {
        addresses,
        lab: name,
        concurrency: opts.concurrency ?? 64,
        kinds: new Set(['http', 'dns', 'fqdn'] as const),
        async apply(state: CaseState) {
          await applyLab(name, topology, nodeCount, state);
          await services.sync(state.services, state.file);
          await replacePolicies(name, state);
          // Every case starts with nothing learned (the corpus' fqdnStatePerCase), as
          // `weir fqdn cache clean` does it.
          await agentClient(name).call('POST', '/v1/fqdn/clean', {});
        },
        async probe(req: ProbeRequest) {
          // Node has no SCTP sockets: the port is declared on the pod but never served or probed.
          if (req.protocol === 'SCTP') return null;
          if (req.kind === 'fqdn' && req.fqdn) return fqdnProbe(req);
          if (req.kind === 'dns' && req.dns)
            return dnsQuery(
              req.from,
              { ip: address(req.to), port: req.port, protocol: req.protocol === 'TCP' ? 'TCP' : 'UDP' },
              { name: req.dns.query, type: req.dns.type },
            );
          if (req.kind === 'http' && req.http) return httpProbe(req, req.http);
          if (req.service && req.servicePort !== undefined) {
            const ip = services.clusterIP(req.service);
            const r = await probe(
              lab,
              source(req.from, req.to),
              { ip, port: req.servicePort, protocol: req.protocol },
              timeoutMs,
            );
            return { allowed: r.ok, note: `via service ${req.service} (ClusterIP ${ip}:${req.servicePort})` };
          }
          const r = await probe(
            lab,
            source(req.from, req.to),
            { ip: address(req.to, req.from), port: req.port, protocol: req.protocol },
            timeoutMs,
          );
          return r.ok;
        },
        close,
      };
    } catch (err) {
      await close();
      throw err;
    }
  };
}

/**
 * What an HTTP probe observed: no handshake = dropped; the proxy's 403 "Access denied" =
 * l7-denied; the lab server's own answer (200 with its echo of the request) = allowed; anything
 * else (a reset after the handshake, another status) = error, said in the note.
 */
export function httpAnswer(r: ProbeResult): ProbeAnswer {
  const http = {
    ...(r.status !== undefined ? { status: r.status } : {}),
    ...(r.body !== undefined ? { bodyPrefix: r.body.slice(0, 64) } : {}),
    ...(r.echo ? { upstreamSaw: r.echo } : {}),
  };
  const withHttp = Object.keys(http).length ? { http } : {};
  if (!r.connected)
    return { allowed: false, result: 'dropped', note: `no connection (${r.error ?? 'failed'})`, ...withHttp };
  if (r.status === 403 && (r.body ?? '').startsWith('Access denied'))
    return { allowed: false, result: 'l7-denied', ...withHttp };
  if (r.status === 200 && r.echo) return { allowed: true, result: 'allowed', ...withHttp };
  return {
    allowed: false,
    result: 'error',
    note:
      r.status !== undefined
        ? `HTTP ${r.status}${r.echo ? '' : ' not from the server'}`
        : `connected, then ${r.error ?? 'no answer'}`,
    ...withHttp,
  };
}

/**
 * What a DNS probe observed: no answer = dropped; REFUSED (only the DNS proxy answers it, the lab's
 * DNS server never does) = l7-denied; any other answer (NOERROR, NXDOMAIN) = allowed.
 */
export function dnsAnswer(r: ProbeResult): ProbeAnswer {
  if (!r.ok)
    return r.error === 'ETIMEDOUT'
      ? { allowed: false, result: 'dropped', note: 'no answer (ETIMEDOUT)' }
      : { allowed: false, result: 'error', note: `no answer (${r.error ?? 'failed'})` };
  const dns = { ...(r.rcode ? { rcode: r.rcode } : {}), answers: r.answers ?? [] };
  if (r.rcode === 'REFUSED') return { allowed: false, result: 'l7-denied', dns };
  return { allowed: true, result: 'allowed', dns };
}

/** A bare TCP dial (a resolve-then-connect probe without a request): connected = allowed. */
function dialAnswer(r: ProbeResult): ProbeAnswer {
  return r.ok
    ? { allowed: true, result: 'allowed' }
    : { allowed: false, result: 'dropped', note: `no connection (${r.error ?? 'failed'})` };
}

/** Lab names for the externals ("world/ext1" -> "ext1"): DNS labels, unique. */
function labExternalNames(t: Topology): Map<string, string> {
  const out = new Map<string, string>();
  const used = new Set<string>();
  t.externals.forEach((e, i) => {
    let n = (e.name.split('/').at(-1) ?? '')
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 16);
    if (!n || used.has(n)) n = `ext${i}`;
    used.add(n);
    out.set(e.name, n);
  });
  return out;
}

function labSpec(name: string, t: Topology, extNames: Map<string, string>, nodeCount: number) {
  // A peer that lists nothing serves every TCP/UDP port some pod serves.
  const podPorts = new Map<string, ServedPort>();
  for (const p of t.pods) for (const c of p.containers) podPorts.set(`${c.port}/${c.protocol}`, c);
  const served = (list: ServedPort[] | undefined) =>
    (list ?? [...podPorts.values()])
      .filter((s) => s.protocol !== 'SCTP')
      .map((s) => ({ port: s.port, protocol: s.protocol }));
  return parseLabSpec(
    {
      name,
      // Every node serves the host peer's ports: each is the host of its own pods.
      nodes: Array.from({ length: nodeCount }, (_, i) => ({
        name: `node${i + 1}`,
        ...(t.podCIDR && i === 0 ? { podCIDR: t.podCIDR } : {}),
        ...(t.host ? { serves: served(t.hostServes) } : {}),
      })),
      externals: t.externals.map((e) => ({ name: extNames.get(e.name), ip: e.ip, serves: served(e.serves) })),
      // The L7 model's zone: the lab's cluster DNS answers these names (outside the cluster).
      ...(t.dns ? { dns: { ...(t.dns.ttl !== undefined ? { ttl: t.dns.ttl } : {}), records: t.dns.records } } : {}),
    },
    t.key,
  );
}

/** Namespaces and pods with the labels in force; pods keep their topology ports. */
async function applyLab(
  lab: string,
  t: Topology,
  nodeCount: number,
  state: Pick<CaseState, 'file' | 'namespaces' | 'pods'>,
): Promise<void> {
  const podLabels = new Map(state.pods.map((p) => [`${p.namespace}/${p.name}`, p.labels]));
  const nsLabels = new Map(state.namespaces.map((n) => [n.name, n.labels]));
  const items = [
    ...t.namespaces.map((n) => ({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: n.name, labels: nsLabels.get(n.name) ?? n.labels },
    })),
    ...t.pods.map((p, i) => {
      const ports = p.containers.map((c) => ({
        containerPort: c.port,
        protocol: c.protocol,
        ...(c.portName ? { name: c.portName } : {}),
      }));
      return {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          namespace: p.namespace,
          name: p.name,
          labels: podLabels.get(`${p.namespace}/${p.name}`) ?? p.labels,
        },
        spec: {
          ...(nodeCount > 1 ? { nodeName: `node${(i % nodeCount) + 1}` } : {}),
          containers: [{ name: 'workload', ...(ports.length ? { ports } : {}) }],
        },
      };
    }),
  ];
  const manifests: Manifest[] = parseManifests(
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
    state.file,
  );
  await agentClient(lab).call('POST', '/v1/apply', { objects: manifests.map(toDesired) });
}

/**
 * The Services of the lab's agent: each sync leaves exactly the given ones in force (only what
 * changed is applied or deleted) and reads back the ClusterIPs the agent allocated.
 */
class Services {
  private applied = new Map<string, string>();
  private clusterIPs = new Map<string, string>();

  constructor(private readonly lab: string) {}

  get count(): number {
    return this.applied.size;
  }

  clusterIP(service: string): string {
    const ip = this.clusterIPs.get(service);
    if (!ip)
      throw new WeirError(
        'ERR_CONFORMANCE_SERVICE',
        `Service ${service} has no ClusterIP in lab ${this.lab}`,
      );
    return ip;
  }

  /** `file` names the case (or topology) the Services come from, in the agent's errors. */
  async sync(services: TopologyService[], file: string): Promise<void> {
    const want = new Map<string, DesiredObject>();
    for (const s of services) {
      // The socket LB translates TCP and UDP only; SCTP ports are declared but never probed.
      const ports = s.ports
        .filter((p) => p.protocol !== 'SCTP')
        .map((p) => ({
          ...(p.name ? { name: p.name } : {}),
          port: p.port,
          ...(p.targetPort !== undefined ? { targetPort: p.targetPort } : {}),
          protocol: p.protocol,
        }));
      if (ports.length === 0) continue;
      const object = {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { namespace: s.namespace, name: s.name },
        spec: { type: 'ClusterIP', selector: s.selector, ports },
      };
      want.set(`${s.namespace}/${s.name}`, {
        apiVersion: 'v1',
        kind: 'Service',
        name: s.name,
        namespace: s.namespace,
        file,
        object,
      });
    }
    const client = agentClient(this.lab);
    const stale = [...this.applied.keys()].filter((k) => !want.has(k));
    const changed = [...want].filter(([k, o]) => this.applied.get(k) !== JSON.stringify(o.object));
    if (stale.length === 0 && changed.length === 0) return;
    if (stale.length > 0)
      await client.call('POST', '/v1/delete', {
        objects: stale.map((k) => {
          const [namespace, name] = k.split('/') as [string, string];
          return { kind: 'Service', namespace, name };
        }),
      });
    if (changed.length > 0) await client.call('POST', '/v1/apply', { objects: changed.map(([, o]) => o) });
    this.applied = new Map([...want].map(([k, o]) => [k, JSON.stringify(o.object)]));
    const items = (await client.call<{ items: ServiceSummary[] }>('GET', '/v1/services')).items;
    // Headless ('None') or not yet allocated ('<pending>') Services have no address to dial.
    this.clusterIPs = new Map(
      items.filter((i) => isIPv4(i.clusterIP)).map((i) => [`${i.namespace}/${i.name}`, i.clusterIP]),
    );
  }
}

/** The agent ends up holding exactly the case's policies; it answers once the maps are written. */
async function replacePolicies(labName: string, state: CaseState): Promise<void> {
  const client = agentClient(labName);
  const want: DesiredObject[] = state.objects.map((o) => {
    const obj = o as { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string } };
    return {
      apiVersion: String(obj.apiVersion ?? ''),
      kind: String(obj.kind ?? ''),
      name: String(obj.metadata?.name ?? ''),
      ...(obj.metadata?.namespace ? { namespace: obj.metadata.namespace } : {}),
      file: state.file,
      object: o,
    };
  });
  const wanted = new Set(want.map(objectKey));
  const have = (await client.call<{ items: DesiredObject[] }>('GET', '/v1/policies')).items;
  const stale = have.filter((o) => !wanted.has(objectKey(o)));
  if (stale.length > 0) await client.call('POST', '/v1/delete', { objects: stale });
  if (want.length > 0) await client.call('POST', '/v1/apply', { objects: want });
}
