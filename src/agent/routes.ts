// The agent API's routes: a table from method + path to a handler. Desired state changes only
// through /v1/apply and /v1/delete (the intake); reads come from the desired state, the pods'
// statuses and the agent's datapath.
import { isIP } from 'node:net';
import { isGatewayKind, isPolicyKind, isServiceKind } from '../cluster/kinds.js';
import { gatewayView } from '../gateway/stored.js';
import type { DesiredObject } from '../cluster/objects.js';
import { WeirError } from '../shared/errors.js';
import { trace, type TraceRequest, type TraceResult } from '../policy/trace.js';
import type { FlowObserver } from '../observe/stream.js';
import type { Agent } from './agent.js';
import type { ProxyManager } from './proxy-manager.js';
import type { Route } from './api-server.js';
import { flowRoutes } from './flow-routes.js';
import { policyDiff } from './policy-diff.js';
import type { DeleteRequest, Intake } from './intake.js';
import type { Reconciler } from './reconcile.js';

function objectsOf(body: unknown): unknown[] {
  const objects = (body as { objects?: unknown } | undefined)?.objects;
  if (!Array.isArray(objects)) throw new WeirError('ERR_API_BAD_REQUEST', 'body must be {"objects": [...]}');
  for (const [i, o] of objects.entries()) {
    const x = o as { kind?: unknown; name?: unknown } | null;
    if (!x || typeof x.kind !== 'string' || typeof x.name !== 'string')
      throw new WeirError('ERR_API_BAD_REQUEST', `objects[${i}] must have a kind and a name`);
  }
  return objects;
}

/** Endpoint options as `weir endpoint config` sends them: { PolicyAuditMode: Enabled|Disabled }. */
export function endpointOptions(body: unknown): { policyAuditMode?: boolean } {
  const b = (body ?? {}) as Record<string, unknown>;
  const out: { policyAuditMode?: boolean } = {};
  for (const [k, v] of Object.entries(b)) {
    if (k !== 'PolicyAuditMode')
      throw new WeirError(
        'ERR_API_BAD_REQUEST',
        `unknown endpoint option '${k}' (options: PolicyAuditMode)`,
        {
          location: { object: 'endpoint config', field: k },
        },
      );
    if (v !== 'Enabled' && v !== 'Disabled')
      throw new WeirError(
        'ERR_API_BAD_REQUEST',
        `PolicyAuditMode must be Enabled or Disabled, not '${String(v)}'`,
        {
          location: { object: 'endpoint config', field: k },
        },
      );
    out.policyAuditMode = v === 'Enabled';
  }
  if (out.policyAuditMode === undefined)
    throw new WeirError('ERR_API_BAD_REQUEST', 'no endpoint option given (e.g. PolicyAuditMode=Enabled)');
  return out;
}

export function agentRoutes(
  agent: Agent,
  intake: Intake,
  reconciler: Reconciler,
  observer?: FlowObserver,
  proxy?: ProxyManager,
): Route[] {
  return [
    ...(observer ? flowRoutes(observer) : []),
    {
      method: 'GET',
      pattern: '/v1/proxy/status',
      handler: async () => {
        if (!proxy) throw new WeirError('ERR_AGENT_NO_PROXY', 'this agent manages no node proxy');
        return proxy.status();
      },
    },
    {
      method: 'GET',
      pattern: '/v1/status',
      handler: () => ({
        lab: agent.cfg.lab,
        pid: process.pid,
        endpoints: agent.endpoints().length,
        identities: agent.identities().length,
        policies: agent.objects().length,
        regenerations: agent.regen,
        policyMapMax: agent.cfg.policyMapMax,
        services: agent.lb.frontends().length,
        lbAlgorithm: agent.cfg.lbAlgorithm,
        socketLB: agent.cfg.socketLB !== false,
        node: agent.node.name,
        reconcile: {
          passes: reconciler.passes,
          ...(reconciler.lastError ? { error: reconciler.lastError } : {}),
        },
      }),
    },
    {
      method: 'POST',
      pattern: '/v1/apply',
      handler: async (req) => ({ results: await intake.apply(objectsOf(req.body) as DesiredObject[]) }),
    },
    {
      method: 'POST',
      pattern: '/v1/delete',
      handler: async (req) => {
        const ignoreNotFound = (req.body as { ignoreNotFound?: unknown }).ignoreNotFound === true;
        return { results: await intake.delete(objectsOf(req.body) as DeleteRequest[], { ignoreNotFound }) };
      },
    },
    {
      method: 'GET',
      pattern: '/v1/pods',
      handler: (req) => ({ items: intake.pods(req.query.get('namespace') ?? undefined) }),
    },
    { method: 'GET', pattern: '/v1/namespaces', handler: () => ({ items: intake.namespaces() }) },
    { method: 'GET', pattern: '/v1/nodes', handler: () => ({ items: intake.nodeStatuses() }) },
    {
      method: 'GET',
      pattern: '/metrics',
      handler: async (_req, res) => {
        // The node proxy's own metrics (weir_proxy_*) follow the agent's, read at scrape time.
        const text = (await agent.metrics.registry.metrics()) + ((await proxy?.metricsText()) ?? '');
        res.writeHead(200, { 'content-type': agent.metrics.registry.contentType });
        res.end(text);
      },
    },
    { method: 'GET', pattern: '/v1/policies', handler: () => ({ items: intake.objects(isPolicyKind) }) },
    {
      method: 'GET',
      pattern: '/v1/gateway',
      handler: () => {
        const objects = intake.objects((k) => isGatewayKind(k) || k === 'Service');
        const namespaces = new Map(intake.namespaces().map((n) => [n.name, n.labels]));
        return gatewayView(objects, namespaces);
      },
    },
    {
      method: 'GET',
      pattern: '/v1/services',
      handler: () =>
        agent.serialize(() => ({
          items: agent.lb.summaries(agent.serviceObjects()),
          frontends: agent.lb.frontends(),
          objects: intake.objects(isServiceKind),
          algorithm: agent.cfg.lbAlgorithm,
        })),
    },
    {
      method: 'GET',
      pattern: '/v1/services/:namespace/:name/maglev',
      handler: (req) =>
        agent.serialize(() => ({
          items: agent.lb.maglevTables(`${req.params.namespace}/${req.params.name}`),
        })),
    },
    { method: 'GET', pattern: '/v1/endpoints', handler: () => ({ items: agent.endpoints() }) },
    {
      // The DNS proxy, with allowed answers (a batch): answered once their addresses are in force
      // (toFQDNs), with what the node holds for each endpoint and name.
      method: 'POST',
      pattern: '/v1/fqdn/learn',
      handler: async (req) => {
        const items = (req.body as { items?: unknown } | undefined)?.items;
        const good = (x: unknown) => {
          const b = x as { endpointId?: unknown; name?: unknown; answers?: unknown };
          return (
            typeof b === 'object' &&
            b !== null &&
            typeof b.endpointId === 'number' &&
            typeof b.name === 'string' &&
            Array.isArray(b.answers) &&
            (b.answers as { ip?: unknown; ttl?: unknown }[]).every(
              (a) => typeof a.ip === 'string' && isIP(a.ip) && typeof a.ttl === 'number' && a.ttl >= 0,
            )
          );
        };
        if (!Array.isArray(items) || !items.every(good))
          throw new WeirError(
            'ERR_API_BAD_REQUEST',
            'body must be {"items": [{"endpointId": n, "name": "...", "answers": [{"ip", "ttl"}]}]}',
          );
        const t0 = performance.now();
        const r = await agent.learnFqdn(
          items as { endpointId: number; name: string; answers: { ip: string; ttl: number }[] }[],
        );
        return { ...r, ms: performance.now() - t0 };
      },
    },
    {
      method: 'GET',
      pattern: '/v1/fqdn/cache',
      handler: () => ({
        items: agent.fqdn.list(),
        evicted: agent.fqdn.evicted,
        expired: agent.fqdn.expired,
      }),
    },
    {
      method: 'POST',
      pattern: '/v1/fqdn/clean',
      handler: async (req) => {
        const pattern = (req.body as { matchPattern?: unknown } | undefined)?.matchPattern;
        if (pattern !== undefined && typeof pattern !== 'string')
          throw new WeirError('ERR_API_BAD_REQUEST', 'matchPattern must be a string');
        return { removed: await agent.cleanFqdn(pattern) };
      },
    },
    {
      method: 'POST',
      pattern: '/v1/endpoints/:namespace/:name/config',
      handler: async (req) => ({
        results: await intake.configureEndpoint(
          req.params.namespace as string,
          req.params.name as string,
          endpointOptions(req.body),
        ),
      }),
    },
    { method: 'GET', pattern: '/v1/identities', handler: () => ({ items: agent.identities() }) },
    {
      method: 'POST',
      pattern: '/v1/policy/diff',
      handler: (req) => {
        const body = req.body as { objects?: unknown } | undefined;
        objectsOf(body);
        return agent.serialize(() => policyDiff(agent, intake, body));
      },
    },
    {
      method: 'POST',
      pattern: '/v1/trace',
      handler: (req) => {
        const b = req.body as TraceRequest & { datapath?: boolean };
        return agent.serialize(() => {
          // toFQDNs: which lookup taught the destination's address, and until when.
          const learned = agent.fqdn.list().filter((e) => e.ip === b.to);
          const withExpiry = (r: TraceResult): TraceResult =>
            r.fqdn
              ? {
                  ...r,
                  fqdn: learned.map((e) => ({
                    name: e.name,
                    endpointId: e.endpointId,
                    ttl: e.ttl,
                    expiresAt: e.expiresAt,
                  })),
                }
              : r;
          const engine = withExpiry(trace(agent.engineView(), b));
          return b.datapath ? { engine, datapath: withExpiry(trace(agent.datapathView(), b)) } : { engine };
        });
      },
    },
  ];
}
