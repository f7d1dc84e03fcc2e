// The agent's part of the Gateway data plane: the stored Gateway API objects compiled (the same
// compiler `weir route trace` runs) into the proxy's tables, with the ready endpoints of every
// Service port a route sends to, read from the load balancer's frontends.
import type { DesiredObject, NamespaceInfo } from '../cluster/objects.js';
import { compile } from '../gateway/compile.js';
import { worldOf } from '../gateway/world.js';
import type { GatewaySnapshot } from '../proxy/gateway/server.js';
import type { FrontendView } from './lb.js';

const addressOf = (o: DesiredObject) =>
  (o.object as { status?: { addresses?: { value?: string }[] } }).status?.addresses?.[0]?.value;

export function gatewaySnapshotOf(
  objects: DesiredObject[],
  namespaces: NamespaceInfo[],
  frontends: FrontendView[],
): Omit<GatewaySnapshot, 'version'> {
  const addresses = new Map<string, string>();
  for (const o of objects) {
    const a = o.kind === 'Gateway' ? addressOf(o) : undefined;
    if (a) addresses.set(`${o.namespace}/${o.name}`, a);
  }
  const compiled = compile(worldOf(objects, new Map(namespaces.map((n) => [n.name, n.labels])), addresses));
  const ports = compiled.gatewayPorts.filter((p) => p.address);
  const wanted = new Set<string>();
  for (const p of ports)
    for (const l of p.listeners)
      for (const e of l.entries) {
        for (const b of e.backends) if (!b.invalid) wanted.add(`${b.namespace}/${b.name}:${b.port}`);
        for (const m of e.mirrors) if (!m.invalid) wanted.add(`${m.namespace}/${m.name}:${m.port}`);
      }
  const endpoints: Record<string, string[]> = {};
  for (const f of frontends) {
    if (f.type !== 'ClusterIP' || !f.frontend.endsWith('/TCP') || f.frontend.startsWith('[')) continue;
    const port = Number(/:(\d+)\//.exec(f.frontend)?.[1] ?? 0);
    const key = `${f.service}:${port}`;
    if (!wanted.has(key) || endpoints[key]) continue;
    // Backends are named "10.244.0.5:3000/TCP".
    endpoints[key] = f.backends
      .filter((b) => b.state === 'active')
      .map((b) => b.address.replace(/\/TCP$/, ''));
  }
  return { ports, endpoints };
}
