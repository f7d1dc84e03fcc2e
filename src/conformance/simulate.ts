// Simulate mode: answers each probe from the policy engine's entries with lookup(), the same
// decision the datapath makes: egress of the source endpoint, ingress of the destination
// endpoint. Non-pod peers (host, externals) enforce nothing. A probe through a Service is judged
// as the datapath sees it after translation: source pod -> backend pod on the backend port.
// An HTTP probe whose entry redirects to the proxy is judged by the proxy's matcher with the
// engine's L7 policy of that port (egress first, its header rewrites seen by the ingress side).
// A DNS probe: the L3/L4 decision of both ends; a query whose egress entry redirects to the DNS
// proxy is judged by the proxy's DNS rules (denied: REFUSED), then forwarded from the node (the
// server's ingress sees the host); the answer is the lab's DNS server's for the topology's records
// (src/dns: the same zone and responder). An allowed answer through the proxy teaches its
// addresses (the queried name and its CNAME chain) and the policy is computed again with them, as
// the agent does before the proxy releases the answer; a resolve-then-connect probe then connects
// to the first address of its answer. Each case starts with nothing learned.
import { isIPv4 } from 'node:net';
import dnsPacket, { type Packet } from 'dns-packet';
import { respond } from '../dns/server.js';
import { computeZone, type Zone } from '../dns/zone.js';
import { decodeMessage, rcodeOf } from '../dns/wire.js';
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
import { judgeDns } from '../policy/l7/dns-match.js';
import { applyHeaderOps, judgeHttp } from '../policy/l7/http-match.js';
import { learnItemsOf } from '../proxy/dns/learner.js';
import type { PortL7Policy } from '../policy/l7/types.js';
import { WeirError } from '../shared/errors.js';
import { defaultAddresses, type Topology } from './case.js';
import type {
  CaseState,
  DnsObservation,
  ProbeAnswer,
  ProbeRequest,
  ProberFactory,
  ProberSession,
} from './runner.js';

export function simulateProberFactory(config: Partial<EngineConfig> = {}): ProberFactory {
  return async (topology: Topology): Promise<ProberSession> => {
    const addresses = defaultAddresses(topology);
    const endpointIds = new Map(topology.pods.map((p, i) => [`${p.namespace}/${p.name}`, i + 1]));
    let out: EngineOutput | undefined;
    let compute: (() => void) | undefined;
    /** What allowed answers taught (name -> addresses), node-wide as the agent's FQDN cache. */
    const learned = new Map<string, Set<string>>();
    const zone: Zone = computeZone({
      services: [],
      slices: [],
      pods: [],
      externals: topology.dns?.records ?? {},
      ...(topology.dns?.ttl !== undefined ? { externalTtl: topology.dns.ttl } : {}),
    });

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
      kinds: new Set(['http', 'dns', 'fqdn'] as const),
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
        learned.clear();
        compute = () => {
          out = computePolicy({
            namespaces: state.namespaces,
            endpoints,
            nodeIPs: [addresses.nodeIP],
            policies: state.policies,
            config,
            fqdns: [...learned].map(([name, ips]) => ({ name, ips: [...ips].sort() })),
          });
        };
        compute();
      },
      async probe(req: ProbeRequest) {
        if (req.kind === 'http') return decideHttp(req);
        if (req.kind === 'dns' && req.dns)
          return decideDns(req.from, req.to, req.port, req.protocol, req.dns.query, req.dns.type);
        if (req.kind === 'fqdn' && req.fqdn) return decideFqdn(req);
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

    function l7Port(
      ep: number | undefined,
      dir: 'ingress' | 'egress',
      port: number,
      protocol = 'TCP',
    ): PortL7Policy | undefined {
      const pol = out?.l7.find((e) => e.endpointId === ep);
      return pol?.[dir].find((p) => p.port === port && p.protocol === protocol);
    }

    /** The pod with this address, if any. */
    function podOfIp(ip: string): string | undefined {
      for (const [name, a] of addresses.pods) if (a === ip) return name;
      return undefined;
    }

    /** An identity by address: a pod's, the node's, else the ipcache's (a learned FQDN's CIDR). */
    function identityOfIp(ip: string): number {
      const pod = podOfIp(ip);
      if (pod) return identityOf(pod);
      if (ip === addresses.nodeIP) return IDENTITY_HOST;
      return (out && lookupIpcache(out.ipcache, ip)?.identity) ?? IDENTITY_WORLD;
    }

    /**
     * One DNS query from `from` to the DNS server `to`: dropped at either end, REFUSED by the DNS
     * proxy, or the server's answer (an answer through the proxy teaches its addresses first).
     */
    function decideDns(
      from: string,
      to: string,
      port: number,
      protocol: string,
      name: string,
      type: string,
    ): ProbeAnswer & { dns?: DnsObservation } {
      if (!out) throw new WeirError('ERR_CONFORMANCE_STATE', 'probe before apply');
      const proto = protocolNumbers[protocol] ?? 0;
      const srcEp = endpointIds.get(from);
      const dstEp = endpointIds.get(to);
      const dst = identityOf(to);
      let redirect: PortL7Policy | undefined;
      if (srcEp !== undefined) {
        const r = lookup(out.endpoints.get(srcEp)?.entries ?? [], dst, DIR_EGRESS, proto, port);
        if (r.verdict !== 'allow') return { allowed: false, result: 'dropped', note: `egress of ${from}: ${r.verdict}` };
        if ((r.entry?.proxyPort ?? 0) !== 0) redirect = l7Port(srcEp, 'egress', port, protocol);
      }
      if (redirect && !judgeDns(redirect, dst, name).allowed)
        return { allowed: false, result: 'l7-denied', dns: { rcode: 'REFUSED', answers: [] }, note: 'REFUSED by the DNS proxy' };
      // The DNS proxy forwards from the node: the server's ingress sees the host.
      const src = redirect ? IDENTITY_HOST : identityOf(from);
      if (dstEp !== undefined) {
        const r = lookup(out.endpoints.get(dstEp)?.entries ?? [], src, DIR_INGRESS, proto, port);
        if (r.verdict !== 'allow') return { allowed: false, result: 'dropped', note: `ingress of ${to}: ${r.verdict}` };
      }
      // Only the topology's DNS server answers, on a port it serves (else: no answer at all).
      const serves = topology.pods
        .find((p) => `${p.namespace}/${p.name}` === to)
        ?.containers.some((c) => c.port === port && c.protocol === protocol);
      if (to !== topology.dns?.server || !serves)
        return { allowed: false, result: 'dropped', note: `no DNS server answers on ${to} ${port}/${protocol}` };
      const query = dnsPacket.encode({
        id: 1,
        type: 'query',
        flags: dnsPacket.RECURSION_DESIRED,
        questions: [{ name, type: type as 'A', class: 'IN' }],
      });
      const r = respond(zone, query);
      const decoded = r && 'packet' in r ? decodeMessage(dnsPacket.encode(r.packet)) : undefined;
      if (!decoded?.ok) return { allowed: false, result: 'error', note: 'the DNS server gave no answer' };
      const answer: Packet = decoded.packet;
      if (redirect && srcEp !== undefined) {
        const items = learnItemsOf(srcEp, name, answer);
        let changed = false;
        for (const it of items)
          for (const a of it.answers) {
            let ips = learned.get(it.name);
            if (!ips) learned.set(it.name, (ips = new Set()));
            if (!ips.has(a.ip)) {
              ips.add(a.ip);
              changed = true;
            }
          }
        if (changed) compute?.();
      }
      const answers = (answer.answers ?? [])
        .filter((a) => a.type === 'A' || a.type === 'AAAA')
        .map((a) => String((a as { data: unknown }).data));
      return { allowed: true, result: 'allowed', dns: { rcode: rcodeOf(answer), answers } };
    }

    /** Resolve (through the DNS rules), then connect to the first address of the answer. */
    function decideFqdn(req: ProbeRequest): ProbeAnswer {
      const f = req.fqdn as NonNullable<ProbeRequest['fqdn']>;
      let ip = addresses.pods.get(req.to) ?? addresses.externals.get(req.to) ?? addresses.nodeIP;
      let resolve: ProbeAnswer['resolve'];
      if (f.resolveFirst && f.resolver) {
        const a = decideDns(req.from, f.resolver.server, f.resolver.port, f.resolver.protocol, f.name, f.resolver.type);
        resolve = { result: a.result ?? 'error', ...(a.dns ?? {}) };
        const first = a.dns?.answers?.find((x) => isIPv4(x));
        if (first) ip = first;
      }
      const answer = req.http ? decideHttp(req, ip) : dial(req, ip);
      const note = [
        resolve ? `resolved ${f.name} -> ${resolve.answers?.join(',') || resolve.rcode || resolve.result}` : '',
        `connected to ${ip}`,
        answer.note ?? '',
      ]
        .filter(Boolean)
        .join('; ');
      return { ...answer, ...(resolve ? { resolve } : {}), note };
    }

    /** A bare connection to `ip`: the L3/L4 decision of both ends. */
    function dial(req: ProbeRequest, ip: string): ProbeAnswer {
      if (!out) throw new WeirError('ERR_CONFORMANCE_STATE', 'probe before apply');
      const proto = protocolNumbers[req.protocol] ?? 0;
      const srcEp = endpointIds.get(req.from);
      const dstPod = podOfIp(ip);
      const dstEp = dstPod ? endpointIds.get(dstPod) : undefined;
      if (srcEp !== undefined) {
        const r = lookup(out.endpoints.get(srcEp)?.entries ?? [], identityOfIp(ip), DIR_EGRESS, proto, req.port);
        if (r.verdict !== 'allow') return { allowed: false, result: 'dropped', note: `egress of ${req.from}: ${r.verdict}` };
      }
      if (dstEp !== undefined) {
        const r = lookup(out.endpoints.get(dstEp)?.entries ?? [], identityOf(req.from), DIR_INGRESS, proto, req.port);
        if (r.verdict !== 'allow') return { allowed: false, result: 'dropped', note: `ingress of ${dstPod}: ${r.verdict}` };
      }
      return { allowed: true, result: 'allowed' };
    }

    /** An HTTP probe: the L3/L4 decision of each end, then the proxy's matcher where it redirects. */
    function decideHttp(req: ProbeRequest, toIp?: string): ProbeAnswer {
      if (!out || !req.http) throw new WeirError('ERR_CONFORMANCE_STATE', 'probe before apply');
      const proto = protocolNumbers[req.protocol] ?? 0;
      const src = identityOf(req.from);
      const ip = toIp ?? addresses.pods.get(req.to) ?? addresses.externals.get(req.to) ?? addresses.nodeIP;
      // A resolve-then-connect probe goes where its answer points (the peer owning that address).
      const dstPod = toIp !== undefined ? podOfIp(toIp) : req.to;
      const dst = toIp !== undefined ? identityOfIp(toIp) : identityOf(req.to);
      const srcEp = endpointIds.get(req.from);
      const dstEp = dstPod !== undefined ? endpointIds.get(dstPod) : undefined;
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
