// The lab's cluster DNS, driven by the node's agent: after each regeneration it computes the zone
// (src/dns/zone.ts: Services, headless endpoints, pods, SRV, the lab's declared external names)
// and hands it to the DNS pod's server through the zone file it watches, and writes each
// namespace's resolv.conf (search path, the kube-dns ClusterIP) that pods' commands see. Files are
// replaced atomically and only when their content changes.
import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { privateDir, privateFileMode } from '../shared/private-fs.js';
import type { EndpointSlice, Service } from '../service/api/types.js';
import { clusterDnsService, computeZone, resolvConf, type Zone } from '../dns/zone.js';
import { dnsDir, dnsZoneFile, resolvConfFile } from '../lab/names.js';

export interface ClusterDnsInput {
  services: Service[];
  slices: EndpointSlice[];
  pods: { namespace: string; ip: string; ip6?: string; ready: boolean }[];
  namespaces: string[];
}

export interface LabDnsSpec {
  ttl: number;
  /** Addresses, or an alias (`{cname}`). */
  records: Record<string, string[] | { cname: string }>;
  externals: { ip: string; dnsNames: string[] }[];
}

export class ClusterDns {
  private written = new Map<string, string>();
  zone: Zone | undefined;

  constructor(
    private readonly lab: string,
    private readonly spec: LabDnsSpec,
  ) {}

  /** The declared external names -> addresses. */
  externals(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [name, ips] of Object.entries(this.spec.records))
      if (Array.isArray(ips)) (out[name] ??= []).push(...ips);
    for (const e of this.spec.externals) for (const n of e.dnsNames) (out[n] ??= []).push(e.ip);
    return out;
  }

  /** The declared aliases: name -> target (CNAME). */
  cnames(): Record<string, string> {
    return Object.fromEntries(
      Object.entries(this.spec.records).flatMap(([name, r]) => (Array.isArray(r) ? [] : [[name, r.cname]])),
    );
  }

  /** The kube-dns ClusterIP when the Service exists. */
  static nameserver(services: Service[]): string | undefined {
    const s = services.find(
      (x) => x.namespace === clusterDnsService.namespace && x.name === clusterDnsService.name,
    );
    const ip = s?.clusterIPs[0];
    return ip && ip !== 'None' ? ip : undefined;
  }

  async write(input: ClusterDnsInput): Promise<void> {
    const zone = computeZone({
      services: input.services.map((s) => ({
        namespace: s.namespace,
        name: s.name,
        clusterIPs: s.clusterIPs,
        ports: s.ports,
      })),
      slices: input.slices.map((s) => ({
        namespace: s.namespace,
        serviceName: s.serviceName,
        endpoints: s.endpoints.map((e) => ({ addresses: e.addresses, ready: e.conditions.ready })),
        ports: s.ports,
      })),
      pods: input.pods,
      externals: this.externals(),
      cnames: this.cnames(),
      externalTtl: this.spec.ttl,
    });
    this.zone = zone;
    await privateDir(dnsDir(this.lab));
    await this.put(dnsZoneFile(this.lab), JSON.stringify(zone));
    const ns = ClusterDns.nameserver(input.services);
    if (!ns) return;
    for (const n of new Set(input.namespaces)) await this.put(resolvConfFile(this.lab, n), resolvConf(n, ns));
  }

  private async put(file: string, text: string): Promise<void> {
    if (this.written.get(file) === text) return;
    if (!this.written.has(file)) {
      try {
        if (readFileSync(file, 'utf8') === text) return void this.written.set(file, text);
      } catch {
        // not there yet
      }
    }
    // Every node's agent of a lab writes these files (the same content once they have all
    // reconciled): a temporary file of this process's own, so renames never race.
    const tmp = `${file}.${process.pid}.tmp`;
    // Root's alone, like all of the lab's state (pods' commands run as root).
    await writeFile(tmp, text, { mode: privateFileMode });
    await rename(tmp, file);
    this.written.set(file, text);
  }
}
