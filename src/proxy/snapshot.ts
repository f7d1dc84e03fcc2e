// The proxy's copy of the L7 policy (ProxySnapshot, src/policy/l7/types.ts), as the agent last
// pushed it, indexed for the two questions asked per connection and per request: which local
// endpoint owns an address, and what policy a port of that endpoint has in a direction.
// Versions only grow: an older one is refused (the agent re-reads the running version), the
// same one again changes nothing.
import { z } from 'zod';
import { WeirError } from '../shared/errors.js';
import type { EndpointL7Policy, PortL7Policy, ProxySnapshot } from '../policy/l7/types.js';

const headerMatch = z
  .object({
    name: z.string().min(1),
    value: z.string().optional(),
    mismatch: z.enum(['LOG', 'ADD', 'DELETE', 'REPLACE']).optional(),
  })
  .strict();
const httpRule = z
  .object({
    method: z.string().optional(),
    path: z.string().optional(),
    host: z.string().optional(),
    headers: z.array(z.string()).optional(),
    headerMatches: z.array(headerMatch).optional(),
  })
  .strict();
const port = z.number().int().min(1).max(65535);
const portPolicy = z
  .object({
    protocol: z.enum(['TCP', 'UDP']),
    port,
    parser: z.enum(['http', 'dns']),
    proxyPort: port,
    ruleSets: z.array(
      z
        .object({
          identities: z.array(z.number().int().nonnegative()).optional(),
          http: z.array(httpRule).optional(),
          dns: z
            .array(
              z.object({ matchName: z.string().optional(), matchPattern: z.string().optional() }).strict(),
            )
            .optional(),
          origin: z
            .object({
              kind: z.enum(['CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy']),
              namespace: z.string().optional(),
              name: z.string(),
              cookie: z.number().int().nonnegative(),
            })
            .strict(),
        })
        .strict(),
    ),
  })
  .strict();
const snapshotSchema = z
  .object({
    version: z.number().int().nonnegative(),
    endpoints: z.array(
      z
        .object({
          endpointId: z.number().int().positive(),
          namespace: z.string(),
          pod: z.string(),
          identity: z.number().int().nonnegative(),
          ips: z.array(z.string()),
          ingress: z.array(portPolicy),
          egress: z.array(portPolicy),
        })
        .strict(),
    ),
  })
  .strict();

/** A snapshot as pushed: validated, or ERR_PROXY_SNAPSHOT_INVALID naming the field. */
export function parseSnapshot(body: unknown): ProxySnapshot {
  const r = snapshotSchema.safeParse(body);
  if (r.success) return r.data as ProxySnapshot;
  const issue = r.error.issues[0];
  throw new WeirError('ERR_PROXY_SNAPSHOT_INVALID', `snapshot: ${issue?.message ?? 'invalid'}`, {
    location: { object: 'ProxySnapshot', field: issue?.path.join('.') ?? '' },
  });
}

export class SnapshotStore {
  #snapshot: ProxySnapshot | undefined;
  #byIp = new Map<string, EndpointL7Policy>();
  #ports = new Map<string, PortL7Policy>();

  get version(): number | undefined {
    return this.#snapshot?.version;
  }

  get loaded(): boolean {
    return this.#snapshot !== undefined;
  }

  /** Replaces the snapshot (an older version is refused with ERR_PROXY_SNAPSHOT_STALE). */
  apply(s: ProxySnapshot): void {
    const have = this.#snapshot?.version;
    if (have !== undefined && s.version < have)
      throw new WeirError(
        'ERR_PROXY_SNAPSHOT_STALE',
        `snapshot version ${s.version} is older than the running version ${have}`,
        { details: { version: have } },
      );
    const byIp = new Map<string, EndpointL7Policy>();
    const ports = new Map<string, PortL7Policy>();
    for (const ep of s.endpoints) {
      for (const ip of ep.ips) byIp.set(ip, ep);
      for (const p of ep.ingress) ports.set(`${ep.endpointId}/ingress/${p.protocol}/${p.port}`, p);
      for (const p of ep.egress) ports.set(`${ep.endpointId}/egress/${p.protocol}/${p.port}`, p);
    }
    this.#snapshot = s;
    this.#byIp = byIp;
    this.#ports = ports;
  }

  endpointByIp(ip: string): EndpointL7Policy | undefined {
    return this.#byIp.get(ip);
  }

  portPolicy(
    endpointId: number,
    direction: 'ingress' | 'egress',
    port: number,
    protocol: 'TCP' | 'UDP' = 'TCP',
  ): PortL7Policy | undefined {
    return this.#ports.get(`${endpointId}/${direction}/${protocol}/${port}`);
  }
}
