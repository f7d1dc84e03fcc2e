// The gateway view of stored objects: the Gateway API objects with their status as the compiler
// computes it (what `weir get gateways -o yaml` shows), and the compiled tables. Pure.
import { compile, type Compiled, type RouteStatus } from './compile.js';
import { isGatewayKind } from './api.js';
import { worldOf, type WorldObject } from './world.js';

export interface GatewayView {
  compiled: Compiled;
  /** The stored Gateway API objects, each with its computed status. */
  objects: (WorldObject & { apiVersion: string })[];
}

const addressOf = (o: WorldObject) =>
  (o.object as { status?: { addresses?: { value?: string }[] } }).status?.addresses?.[0]?.value;

/** Compiles the stored objects (Gateway API kinds, Services, Namespaces) and fills in statuses. */
export function gatewayView(
  objects: (WorldObject & { apiVersion: string })[],
  namespaces: Map<string, Record<string, string>>,
): GatewayView {
  const addresses = new Map<string, string>();
  for (const o of objects) {
    const a = o.kind === 'Gateway' ? addressOf(o) : undefined;
    if (a) addresses.set(`${o.namespace}/${o.name}`, a);
  }
  const compiled = compile(worldOf(objects, new Map(namespaces), addresses));
  const out: GatewayView['objects'] = [];
  for (const o of objects) {
    if (!isGatewayKind(o.kind)) continue;
    out.push({ ...o, object: { ...(o.object as object), status: statusOf(o, compiled) } });
  }
  return { compiled, objects: out };
}

function statusOf(o: WorldObject, c: Compiled): unknown {
  if (o.kind === 'GatewayClass') {
    const cls = c.classes.find((x) => x.name === o.name);
    return { conditions: cls?.conditions ?? [] };
  }
  if (o.kind === 'Gateway') {
    const g = c.gateways.find((x) => x.namespace === o.namespace && x.name === o.name);
    if (!g) return {};
    return {
      ...(g.address ? { addresses: [{ type: 'IPAddress', value: g.address }] } : {}),
      conditions: g.conditions,
      listeners: g.listeners,
    };
  }
  if (o.kind === 'HTTPRoute' || o.kind === 'GRPCRoute') {
    const r = c.routes.find(
      (x: RouteStatus) => x.kind === o.kind && x.namespace === o.namespace && x.name === o.name,
    );
    return { parents: r?.parents ?? [] };
  }
  return undefined;
}
