// Simulate mode: answers each probe from the policy engine's entries with lookup(), the same
// decision the datapath makes: egress of the source endpoint, ingress of the destination
// endpoint. Non-pod peers (host, externals) enforce nothing. A probe through a Service is judged
// as the datapath sees it after translation: source pod -> backend pod on the backend port.
// An HTTP probe whose entry redirects to the proxy is judged by the proxy's matcher with the
// engine's L7 policy of that port (egress first, its header rewrites seen by the ingress side).
import { lookupIpcache } from '../identity/cidr.js';
import { IDENTITY_HOST, IDENTITY_WORLD } from '../identity/reserved.js';
import {
  computePolicy,
  type EngineConfig,
  type EngineEndpoint,
  type EngineOutput,
} from '../policy/engine.js';
import { DIR_EGRESS, DIR_INGRESS, protocolNumbers } from '../policy/entry.js';
import { lookup } from '../policy/lookup.js';
import { applyHeaderOps, judgeHttp } from '../policy/l7/http-match.js';
import type { PortL7Policy } from '../policy/l7/types.js';
import { WeirError } from '../shared/errors.js';
import { defaultAddresses, type Topology } from './case.js';
import type { CaseState, ProbeAnswer, ProbeRequest, ProberFactory, ProberSession } from './runner.js';

export function simulateProberFactory(config: Partial<EngineConfig> = {}): ProberFactory {
  return async (topology: Topology): Promise<ProberSession> => {
    const addresses = defaultAddresses(topology);
    const endpointIds = new Map(topology.pods.map((p, i) => [`${p.namespace}/${p.name}`, i + 1]));
    let out: EngineOutput | undefined;

    const identityOf = (peer: string): number => {
      const epId = endpointIds.get(peer);
      if (epId !== undefined) return out?.endpoints.get(epId)?.identity ?? 0;
      if (peer === topology.host) return IDENTITY_HOST;
      const ip = addresses.externals.get(peer);
      if (ip && out) return lookupIpcache(out.ipcache, ip)?.identity ?? IDENTITY_WORLD;
      throw new WeirError('ERR_CONFORMANCE_PEER', `unknown peer '${peer}'`);
    };

    return {
      addresses,
      kinds: new Set(['http'] as const),
      async apply(state: CaseState) {
        const endpoints: EngineEndpoint[] = topology.pods.map((p) => {
          const name = `${p.namespace}/${p.name}`;
          return {
            id: endpointIds.get(name) ?? 0,
            namespace: p.namespace,
            pod: p.name,
            labels: state.pods.find((s) => `${s.namespace}/${s.name}` === name)?.labels ?? p.labels,
            ips: [addresses.pods.get(name) ?? ''],
            namedPorts: p.containers.flatMap((c) =>
              c.portName ? [{ name: c.portName, port: c.port, protocol: c.protocol }] : [],
            ),
            ...(p.serviceAccount ? { serviceAccount: p.serviceAccount } : {}),
          };
        });
        out = computePolicy({
          namespaces: state.namespaces,
          endpoints,
          nodeIPs: [addresses.nodeIP],
          policies: state.policies,
          config,
        });
      },
      async probe(req: ProbeRequest) {
        if (req.kind === 'http') return decideHttp(req);
        const allowed = decide(req);
        return req.service
          ? {
              allowed,
              note: `via service ${req.service} (port ${req.servicePort} translated to ${req.to}:${req.port} by the simulation)`,
            }
          : allowed;
      },
      async close() {},
    };

    function l7Port(ep: number | undefined, dir: 'ingress' | 'egress', port: number): PortL7Policy | undefined {
      const pol = out?.l7.find((e) => e.endpointId === ep);
      return pol?.[dir].find((p) => p.port === port);
    }

    /** An HTTP probe: the L3/L4 decision of each end, then the proxy's matcher where it redirects. */
    function decideHttp(req: ProbeRequest): ProbeAnswer {
      if (!out || !req.http) throw new WeirError('ERR_CONFORMANCE_STATE', 'probe before apply');
      const proto = protocolNumbers[req.protocol] ?? 0;
      const src = identityOf(req.from);
      const dst = identityOf(req.to);
      const srcEp = endpointIds.get(req.from);
      const dstEp = endpointIds.get(req.to);
      const ip = addresses.pods.get(req.to) ?? addresses.externals.get(req.to) ?? addresses.nodeIP;
      const host = req.http.host ?? (req.port === 80 ? ip : `${ip}:${req.port}`);
      let headers: readonly string[] = Object.entries(req.http.headers ?? {}).flat();
      const ends = [
        { ep: srcEp, dir: 'egress' as const, code: DIR_EGRESS, peer: dst },
        { ep: dstEp, dir: 'ingress' as const, code: DIR_INGRESS, peer: src },
      ];
      // Both connections' L3/L4 verdicts come first: a drop at either end means no connection.
      const redirects: { policy: PortL7Policy | undefined; peer: number }[] = [];
      for (const end of ends) {
        if (end.ep === undefined) continue;
        const r = lookup(out.endpoints.get(end.ep)?.entries ?? [], end.peer, end.code, proto, req.port);
        if (r.verdict !== 'allow')
          return { allowed: false, result: 'dropped', note: `${end.dir} of ${end.dir === 'egress' ? req.from : req.to}: ${r.verdict}` };
        if ((r.entry?.proxyPort ?? 0) !== 0) redirects.push({ policy: l7Port(end.ep, end.dir, req.port), peer: end.peer });
      }
      for (const { policy, peer } of redirects) {
        const v = judgeHttp(policy, peer, { method: req.http.method, path: req.http.path, host, headers });
        if (!v.allowed)
          return { allowed: false, result: 'l7-denied', http: { status: 403, bodyPrefix: 'Access denied\r\n' } };
        headers = applyHeaderOps(headers, v.ops);
      }
      const seen: Record<string, string> = { host };
      for (let i = 0; i + 1 < headers.length; i += 2) {
        const name = (headers[i] as string).toLowerCase();
        seen[name] = name in seen && name !== 'host' ? `${seen[name]}, ${headers[i + 1]}` : (headers[i + 1] as string);
      }
      return {
        allowed: true,
        result: 'allowed',
        http: { status: 200, upstreamSaw: { method: req.http.method, path: req.http.path, host, headers: seen } },
      };
    }

    function decide(req: ProbeRequest): boolean {
      if (!out) throw new WeirError('ERR_CONFORMANCE_STATE', 'probe before apply');
      const proto = protocolNumbers[req.protocol] ?? 0;
      const src = identityOf(req.from);
      const dst = identityOf(req.to);
      const srcEp = endpointIds.get(req.from);
      const dstEp = endpointIds.get(req.to);
      if (srcEp !== undefined) {
        const entries = out.endpoints.get(srcEp)?.entries ?? [];
        if (lookup(entries, dst, DIR_EGRESS, proto, req.port).verdict !== 'allow') return false;
      }
      if (dstEp !== undefined) {
        const entries = out.endpoints.get(dstEp)?.entries ?? [];
        if (lookup(entries, src, DIR_INGRESS, proto, req.port).verdict !== 'allow') return false;
      }
      return true;
    }
  };
}
