// What the compiler reads, gathered from stored (or file) objects: the Gateway API kinds validated
// into their models, the Services' ports and ClusterIPs, the Namespaces' labels. Shared by the agent
// (desired state), `weir route trace -f` and the corpus replay.
import {
  isGatewayKind,
  validateGateway,
  validateGatewayClass,
  validateGRPCRoute,
  validateHTTPRoute,
  validateReferenceGrant,
  validateBackendTrafficPolicy,
} from './api.js';
import type { GatewayWorld, ServiceInfo } from './compile.js';

export interface WorldObject {
  kind: string;
  namespace?: string;
  name: string;
  file?: string;
  object: unknown;
}

/** The first address of the gateway range: 198.51.100.0/24 (TEST-NET-2), used by nothing else in a lab. */
export const gatewayAddressRange = { base: '198.51.100.', first: 10, last: 250 };

export function serviceInfo(o: WorldObject): ServiceInfo {
  const svc = o.object as {
    metadata?: { namespace?: string; name?: string };
    spec?: {
      clusterIP?: string;
      ports?: { name?: string; port: number; targetPort?: number | string; appProtocol?: string }[];
    };
  };
  const ip = svc.spec?.clusterIP;
  return {
    namespace: o.namespace ?? 'default',
    name: o.name,
    ...(ip && ip !== 'None' ? { clusterIP: ip } : {}),
    ports: (svc.spec?.ports ?? []).map((p) => ({
      ...(p.name ? { name: p.name } : {}),
      port: p.port,
      ...(p.targetPort !== undefined ? { targetPort: p.targetPort } : {}),
      ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
    })),
  };
}

/**
 * The compiler's input from objects (already validated when they were applied; validated again
 * here into their models). `addresses`: Gateway "ns/name" → address.
 */
export function worldOf(
  objects: WorldObject[],
  namespaces: Map<string, Record<string, string>>,
  addresses: Map<string, string> = new Map(),
): GatewayWorld {
  const w: GatewayWorld = {
    namespaces,
    services: [],
    classes: [],
    gateways: [],
    routes: [],
    grants: [],
    addresses,
    policies: [],
  };
  for (const o of objects) {
    const loc = {
      file: o.file ?? '(stored)',
      object: `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`,
    };
    if (o.kind === 'Service') w.services.push(serviceInfo(o));
    else if (o.kind === 'Namespace') {
      const labels = (o.object as { metadata?: { labels?: Record<string, string> } }).metadata?.labels ?? {};
      if (!namespaces.has(o.name))
        namespaces.set(o.name, { ...labels, 'kubernetes.io/metadata.name': o.name });
    } else if (!isGatewayKind(o.kind)) continue;
    else if (o.kind === 'GatewayClass') w.classes.push(validateGatewayClass(o.object, loc));
    else if (o.kind === 'Gateway') w.gateways.push(validateGateway(o.object, loc));
    else if (o.kind === 'HTTPRoute') w.routes.push(validateHTTPRoute(o.object, loc));
    else if (o.kind === 'GRPCRoute') w.routes.push(validateGRPCRoute(o.object, loc));
    else if (o.kind === 'ReferenceGrant') w.grants.push(validateReferenceGrant(o.object, loc));
    else if (o.kind === 'BackendTrafficPolicy') w.policies?.push(validateBackendTrafficPolicy(o.object, loc));
  }
  return w;
}

/**
 * Addresses for the Gateways that have none yet, from the gateway range, keeping the ones already
 * given (`current`). Deterministic: new Gateways in ns/name order take the lowest free addresses.
 */
export function assignAddresses(gateways: string[], current: Map<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  const used = new Set<string>();
  for (const g of gateways) {
    const a = current.get(g);
    if (a && !used.has(a)) {
      out.set(g, a);
      used.add(a);
    }
  }
  let next = gatewayAddressRange.first;
  for (const g of [...gateways].sort()) {
    if (out.has(g)) continue;
    while (next <= gatewayAddressRange.last && used.has(`${gatewayAddressRange.base}${next}`)) next++;
    if (next > gatewayAddressRange.last) break;
    const a = `${gatewayAddressRange.base}${next}`;
    used.add(a);
    out.set(g, a);
  }
  return out;
}
