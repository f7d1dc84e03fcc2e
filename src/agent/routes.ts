// The agent API's routes: a table from method + path to a handler on the Agent.
import { WeirError } from '../shared/errors.js';
import { trace, type TraceRequest } from '../policy/trace.js';
import type { PodState } from '../lab/index.js';
import type { FlowObserver } from '../observe/stream.js';
import type { Agent } from './agent.js';
import type { ProxyManager } from './proxy-manager.js';
import type { Route } from './api-server.js';
import { flowRoutes } from './flow-routes.js';
import type { StoredObject } from './store.js';

function objectsOf(body: unknown): StoredObject[] {
  const objects = (body as { objects?: unknown } | undefined)?.objects;
  if (!Array.isArray(objects)) throw new WeirError('ERR_API_BAD_REQUEST', 'body must be {"objects": [...]}');
  return objects as StoredObject[];
}

export function agentRoutes(agent: Agent, observer?: FlowObserver, proxy?: ProxyManager): Route[] {
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
      }),
    },
    {
      method: 'POST',
      pattern: '/v1/endpoints',
      handler: (req) => {
        const pod = (req.body as { pod?: PodState } | undefined)?.pod;
        if (!pod?.namespace || !pod.name || !pod.hostIfindex)
          throw new WeirError(
            'ERR_API_BAD_REQUEST',
            'body must be {"pod": {namespace, name, hostIfindex, ...}}',
          );
        return agent.serialize(async () => ({ endpointId: await agent.attachPod(pod) }));
      },
    },
    {
      method: 'POST',
      pattern: '/v1/sync',
      handler: () => agent.serialize(() => agent.sync()).then(() => ({})),
    },
    {
      method: 'POST',
      pattern: '/v1/apply',
      handler: (req) => {
        const objects = objectsOf(req.body);
        return agent.serialize(async () => ({ results: await agent.apply(objects) }));
      },
    },
    {
      method: 'POST',
      pattern: '/v1/delete',
      handler: (req) => {
        const objects = objectsOf(req.body);
        return agent.serialize(async () => ({ results: await agent.delete(objects) }));
      },
    },
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
    { method: 'GET', pattern: '/v1/policies', handler: () => ({ items: agent.objects() }) },
    {
      method: 'GET',
      pattern: '/v1/services',
      handler: () =>
        agent.serialize(() => ({
          items: agent.lb.summaries(agent.serviceObjects()),
          frontends: agent.lb.frontends(),
          objects: agent.serviceObjects(),
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
    { method: 'GET', pattern: '/v1/identities', handler: () => ({ items: agent.identities() }) },
    {
      method: 'POST',
      pattern: '/v1/trace',
      handler: (req) => {
        const b = req.body as TraceRequest & { datapath?: boolean };
        return agent.serialize(() => {
          const engine = trace(agent.engineView(), b);
          return b.datapath ? { engine, datapath: trace(agent.datapathView(), b) } : { engine };
        });
      },
    },
  ];
}
