// The lab's cluster DNS zone, computed (pure) from what the agent holds: Kubernetes' DNS records
// (the DNS-based service discovery spec, as CoreDNS's kubernetes plugin serves them) under the
// cluster domain, plus the names the lab spec declares for its externals. The DNS server workload
// (server.ts) answers from it; nothing is forwarded outside.
//
//   <svc>.<ns>.svc.<domain>                 A/AAAA: the ClusterIPs; headless: the ready endpoints
//   <a-b-c-d>.<svc>.<ns>.svc.<domain>       headless: one name per ready endpoint (dashed address)
//   _<port>._<proto>.<svc>.<ns>.svc.<domain> SRV per named port (headless: one per endpoint)
//   <a-b-c-d>.<ns>.pod.<domain>             A: the pod's address
//   declared external names                 A: as declared; an alias: CNAME to its target
import { isIPv4, isIPv6 } from 'node:net';

export const clusterDomain = 'cluster.local';
/** Kubernetes' kube-dns address: the tenth of the service range. */
export const clusterDnsService = { namespace: 'kube-system', name: 'kube-dns' } as const;
export const clusterDnsPod = { namespace: 'kube-system', name: 'coredns' } as const;
export const defaultTtl = 30;

export interface SrvTarget {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

export interface ZoneEntry {
  a: string[];
  aaaa: string[];
  srv: SrvTarget[];
  /** An alias: the canonical name (no other records then). */
  cname?: string;
  /** Seconds; the zone's TTL when absent. */
  ttl?: number;
}

/** The zone as the server loads it (JSON): lower-case names without the trailing dot. */
export interface Zone {
  domain: string;
  ttl: number;
  /** Names the server is authoritative for (NXDOMAIN below them when a name is unknown). */
  origins: string[];
  names: Record<string, ZoneEntry>;
}

export interface ZoneService {
  namespace: string;
  name: string;
  /** ['None'] when headless. */
  clusterIPs: string[];
  ports: { name: string; protocol: string; port: number }[];
}

export interface ZoneSlice {
  namespace: string;
  serviceName: string;
  endpoints: { addresses: string[]; ready: boolean }[];
  ports: { name: string; protocol: string; port: number }[];
}

export interface ZoneInput {
  services: ZoneService[];
  slices: ZoneSlice[];
  pods: { namespace: string; ip: string; ip6?: string }[];
  /** Declared external names -> addresses (the lab spec's `dns.records` and externals' dnsNames). */
  externals: Record<string, string[]>;
  /** Declared aliases (the lab spec's `dns.records` with `{cname}`): name -> target. */
  cnames?: Record<string, string>;
  ttl?: number;
  externalTtl?: number;
}

/** A name as compared: lower case, no trailing dot (DNS names are case-insensitive, RFC 4343). */
export function canonicalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** 10.0.0.1 -> 10-0-0-1; 2001:db8::1 -> 2001-db8--1 (Kubernetes' dashed form). */
export function dashed(ip: string): string {
  return ip.replace(/[.:]/g, '-');
}

export function computeZone(input: ZoneInput): Zone {
  const ttl = input.ttl ?? defaultTtl;
  const names: Record<string, ZoneEntry> = {};
  const entry = (name: string): ZoneEntry => (names[canonicalName(name)] ??= { a: [], aaaa: [], srv: [] });
  const addAddr = (name: string, ip: string) => {
    const e = entry(name);
    const list = isIPv4(ip) ? e.a : isIPv6(ip) ? e.aaaa : undefined;
    if (list && !list.includes(ip)) list.push(ip);
  };
  const d = clusterDomain;
  for (const svc of input.services) {
    const base = `${svc.name}.${svc.namespace}.svc.${d}`;
    const headless = svc.clusterIPs[0] === 'None';
    const slices = input.slices.filter((s) => s.namespace === svc.namespace && s.serviceName === svc.name);
    entry(base);
    if (!headless) {
      for (const ip of svc.clusterIPs) addAddr(base, ip);
      for (const p of svc.ports)
        if (p.name)
          entry(`_${p.name}._${p.protocol.toLowerCase()}.${base}`).srv.push({
            priority: 0,
            weight: 100,
            port: p.port,
            target: base,
          });
      continue;
    }
    for (const slice of slices)
      for (const ep of slice.endpoints) {
        if (!ep.ready) continue;
        for (const ip of ep.addresses) {
          addAddr(base, ip);
          const host = `${dashed(ip)}.${base}`;
          addAddr(host, ip);
          for (const p of slice.ports)
            if (p.name)
              entry(`_${p.name}._${p.protocol.toLowerCase()}.${base}`).srv.push({
                priority: 0,
                weight: 100,
                port: p.port,
                target: host,
              });
        }
      }
  }
  for (const pod of input.pods) {
    addAddr(`${dashed(pod.ip)}.${pod.namespace}.pod.${d}`, pod.ip);
    if (pod.ip6) addAddr(`${dashed(pod.ip6)}.${pod.namespace}.pod.${d}`, pod.ip6);
  }
  const origins = new Set([d]);
  for (const [name, ips] of Object.entries(input.externals)) {
    const e = entry(name);
    if (input.externalTtl !== undefined) e.ttl = input.externalTtl;
    for (const ip of ips) addAddr(name, ip);
  }
  for (const [name, target] of Object.entries(input.cnames ?? {})) {
    // An alias has no records of its own (RFC 1034 3.6.2): addresses declared for it are dropped.
    const e: ZoneEntry = { a: [], aaaa: [], srv: [], cname: canonicalName(target) };
    names[canonicalName(name)] = e;
    if (input.externalTtl !== undefined) e.ttl = input.externalTtl;
  }
  for (const e of Object.values(names)) {
    e.a.sort();
    e.aaaa.sort();
  }
  return { domain: d, ttl, origins: [...origins], names };
}

/** The resolver configuration of a pod in `namespace` (Kubernetes' ClusterFirst policy). */
export function resolvConf(namespace: string, nameserver: string): string {
  const d = clusterDomain;
  return (
    `# weir: the lab's cluster DNS (${clusterDnsService.namespace}/${clusterDnsService.name})\n` +
    `search ${namespace}.svc.${d} svc.${d} ${d}\n` +
    `nameserver ${nameserver}\n` +
    `options ndots:5\n`
  );
}
