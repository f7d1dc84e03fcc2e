// Simulate mode: answers each probe from the policy engine's entries with lookup(), the same
// decision the datapath makes: egress of the source endpoint, ingress of the destination
// endpoint. Non-pod peers (host, externals) enforce nothing. A probe through a Service is judged
// as the datapath sees it after translation: source pod -> backend pod on the backend port.
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
import { WeirError } from '../shared/errors.js';
import { defaultAddresses, type Topology } from './case.js';
import type { CaseState, ProbeRequest, ProberFactory, ProberSession } from './runner.js';

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
