// The agent's part of the Gateway data plane: the stored Gateway API objects compiled (the same
// compiler `weir route trace` runs) into the proxy's tables, with the ready endpoints of every
// Service port a route sends to.
//
// Mesh (GAMMA): a Service that a route names as its parent is redirected to the node proxy — its
// frontends' only backend becomes a proxy listener on the node (one per Service port, from the
// proxy port range + 100), so the socket LB sends pods' connections to the proxy, which routes them
// and connects to the Service's own pods (their endpoints computed here from the pods, as the
// EndpointSlice controller would). Services without routes are never redirected.
import type { DesiredObject, NamespaceInfo } from '../cluster/objects.js';
import { compile, type Compiled } from '../gateway/compile.js';
import { worldOf } from '../gateway/world.js';
import type { GatewaySnapshot } from '../proxy/gateway/server.js';
import { validateService, type Service } from '../service/api/index.js';
import { deriveSlices, type LbPod } from '../service/model.js';
import type { AgentPod } from './agent.js';
import type { FrontendView } from './lb.js';

const addressOf = (o: DesiredObject) =>
  (o.object as { status?: { addresses?: { value?: string }[] } }).status?.addresses?.[0]?.value;

/** Mesh listeners start this far above the proxy's first port (its ingress listener). */
export const meshPortOffset = 100;

export interface MeshRedirects {
  nodeIP: string;
  /** Service "ns/name" → its port → the proxy listener port that serves it. */
  ports: Map<string, Map<number, number>>;
}

export function compileStored(objects: DesiredObject[], namespaces: NamespaceInfo[]): Compiled {
  const addresses = new Map<string, string>();
  for (const o of objects) {
    const a = o.kind === 'Gateway' ? addressOf(o) : undefined;
    if (a) addresses.set(`${o.namespace}/${o.name}`, a);
  }
  return compile(worldOf(objects, new Map(namespaces.map((n) => [n.name, n.labels])), addresses));
}

const services = (objects: DesiredObject[]): Map<string, Service> => {
  const out = new Map<string, Service>();
  for (const o of objects)
    if (o.kind === 'Service') {
      const s = validateService(o.object, {
        file: o.file ?? '(stored)',
        object: `Service ${o.namespace}/${o.name}`,
      });
      out.set(`${s.namespace}/${s.name}`, s);
    }
  return out;
};

/** Which Services the mesh redirects, and to which proxy port (every TCP port of a routed Service). */
export function meshRedirects(
  compiled: Compiled,
  objects: DesiredObject[],
  nodeIP: string,
  firstProxyPort: number,
): MeshRedirects {
  const svcs = services(objects);
  const routed = [...new Set(compiled.meshPorts.map((t) => t.service))].sort();
  const ports = new Map<string, Map<number, number>>();
  let next = firstProxyPort + meshPortOffset;
  for (const key of routed) {
    const s = svcs.get(key);
    if (!s || s.clusterIPs[0] === 'None') continue;
    const m = new Map<number, number>();
    for (const p of s.ports) if (p.protocol === 'TCP') m.set(p.port, next++);
    ports.set(key, m);
  }
  return { nodeIP, ports };
}

export function gatewaySnapshotOf(
  compiled: Compiled,
  objects: DesiredObject[],
  pods: AgentPod[],
  frontends: FrontendView[],
  mesh: MeshRedirects,
): Omit<GatewaySnapshot, 'version'> {
  const ports = compiled.gatewayPorts.filter((p) => p.address);
  const meshTables: GatewaySnapshot['mesh'] = [];
  for (const [service, m] of mesh.ports)
    for (const [port, listenPort] of m) {
      const t = compiled.meshPorts.find((x) => x.service === service && x.port === port);
      meshTables.push({ service, port, address: mesh.nodeIP, listenPort, entries: t?.entries ?? [] });
    }
  const wanted = new Set<string>();
  const want = (b: { namespace: string; name: string; port: number; invalid?: string }) => {
    if (!b.invalid) wanted.add(`${b.namespace}/${b.name}:${b.port}`);
  };
  for (const e of [
    ...ports.flatMap((p) => p.listeners.flatMap((l) => l.entries)),
    ...meshTables.flatMap((t) => t.entries),
  ]) {
    e.backends.forEach(want);
    e.mirrors.forEach(want);
  }
  for (const t of meshTables) wanted.add(`${t.service}:${t.port}`);
  const endpoints: Record<string, string[]> = {};
  // Redirected Services: their own pods (their frontends lead to the proxy).
  const svcs = services(objects);
  const lbPods: LbPod[] = pods.map((p) => ({
    namespace: p.namespace,
    name: p.name,
    labels: p.labels,
    ip: p.ip,
    ports: p.ports,
    node: p.node,
    ready: p.ready,
    terminating: p.terminating === true,
  }));
  for (const key of mesh.ports.keys()) {
    const s = svcs.get(key);
    if (!s) continue;
    for (const slice of deriveSlices(s, lbPods)) {
      if (slice.addressType !== 'IPv4') continue;
      for (const sp of s.ports) {
        const k = `${key}:${sp.port}`;
        if (!wanted.has(k)) continue;
        const target = slice.ports.find((p) => p.name === sp.name);
        if (!target) continue;
        const list = (endpoints[k] ??= []);
        for (const e of slice.endpoints)
          if (e.conditions.ready && !e.conditions.terminating)
            for (const a of e.addresses) list.push(`${a}:${target.port}`);
      }
    }
  }
  for (const f of frontends) {
    if (f.type !== 'ClusterIP' || !f.frontend.endsWith('/TCP') || f.frontend.startsWith('[')) continue;
    if (mesh.ports.has(f.service)) continue;
    const port = Number(/:(\d+)\//.exec(f.frontend)?.[1] ?? 0);
    const key = `${f.service}:${port}`;
    if (!wanted.has(key) || endpoints[key]) continue;
    // Backends are named "10.244.0.5:3000/TCP".
    endpoints[key] = f.backends
      .filter((b) => b.state === 'active')
      .map((b) => b.address.replace(/\/TCP$/, ''));
  }
  const podNamespaces: Record<string, string> = {};
  for (const p of pods) if (p.ip) podNamespaces[p.ip] = p.namespace;
  return { ports, mesh: meshTables, endpoints, pods: podNamespaces };
}
