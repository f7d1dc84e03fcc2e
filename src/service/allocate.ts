// Address and id allocation for services: ClusterIPs from the service CIDRs (one per family),
// NodePorts from 30000-32767, and the stable numeric ids of the datapath (backend ids, rev-NAT
// indexes). Pure: the caller keeps the tables (the agent persists them), so ids survive restarts.
import { ipBytes, ipText } from '../datapath/packet/addr.js';
import { WeirError } from '../shared/errors.js';
import { nodePortRange, type IPFamily, type Service } from './api/types.js';
import { ipFamilyOf } from './ip.js';

export const defaultServiceCIDR = '10.96.0.0/16';
/** Kubernetes-like; the kube-apiserver takes IPv6 service ranges of at most 2^20 addresses (/108). */
export const defaultServiceCIDRv6 = 'fd00:10:96::/112';

const limits = {
  IPv4: { bits: 32, min: 8, max: 30, field: '--service-cidr' },
  IPv6: { bits: 128, min: 108, max: 126, field: '--service-cidr-v6' },
} as const;

const ipBig = (ip: string) => [...ipBytes(ip)].reduce((n, b) => (n << 8n) | BigInt(b), 0n);

function bigIp(n: bigint, family: IPFamily): string {
  const len = family === 'IPv4' ? 4 : 16;
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = Number((n >> BigInt(8 * (len - 1 - i))) & 0xffn);
  return ipText(out);
}

export interface ServiceCidr {
  family: IPFamily;
  base: bigint;
  size: number;
  text: string;
}

/** An IPv4 (/8../30) or IPv6 (/108../126) service CIDR; host bits are cleared. */
export function parseServiceCIDR(text: string, family: IPFamily = 'IPv4'): ServiceCidr {
  const lim = limits[family];
  const slash = text.lastIndexOf('/');
  const addr = text.slice(0, slash);
  const len = text.slice(slash + 1);
  const bits = Number(len);
  if (slash < 0 || ipFamilyOf(addr) !== family || !/^\d+$/.test(len) || bits < lim.min || bits > lim.max)
    throw new WeirError(
      'ERR_SERVICE_CIDR',
      `service CIDR '${text}' must be an ${family} prefix /${lim.min}../${lim.max}`,
      { location: { field: lim.field } },
    );
  const size = 2 ** (lim.bits - bits);
  const base = ipBig(addr) - (ipBig(addr) % BigInt(size));
  return { family, base, size, text: `${bigIp(base, family)}/${bits}` };
}

export function inCIDR(ip: string, cidr: ServiceCidr): boolean {
  if (ipFamilyOf(ip) !== cidr.family) return false;
  const n = ipBig(ip);
  return n >= cidr.base && n < cidr.base + BigInt(cidr.size);
}

/**
 * The families a service gets on this cluster (Kubernetes' rules): ipFamilies as given, else
 * IPv4; a dual-stack policy adds the other family when the cluster has an IPv6 service CIDR.
 * Without one, RequireDualStack and IPv6 are refused and PreferDualStack keeps IPv4 only.
 */
export function clusterFamilies(
  svc: Pick<Service, 'clusterIPs' | 'ipFamilies' | 'ipFamilyPolicy'>,
  hasIPv6: boolean,
  loc: { file?: string; object?: string } = {},
): IPFamily[] {
  const fail = (field: string, message: string) =>
    new WeirError('ERR_SERVICE_IPFAMILY_UNAVAILABLE', message, { location: { ...loc, field } });
  const noV6 = 'this cluster has no IPv6 service CIDR (agent option --service-cidr-v6)';
  const fams: IPFamily[] = svc.ipFamilies.length > 0 ? [...svc.ipFamilies] : ['IPv4'];
  if (hasIPv6) {
    if (svc.ipFamilyPolicy !== 'SingleStack' && fams.length === 1)
      fams.push(fams[0] === 'IPv4' ? 'IPv6' : 'IPv4');
    return fams;
  }
  if (svc.ipFamilyPolicy === 'RequireDualStack')
    throw fail('spec.ipFamilyPolicy', `RequireDualStack needs IPv4 and IPv6, but ${noV6}`);
  const givenV6 = svc.clusterIPs.findIndex((ip) => ipFamilyOf(ip) === 'IPv6');
  if (givenV6 >= 0)
    throw fail(
      givenV6 === 0 ? 'spec.clusterIP' : `spec.clusterIPs[${givenV6}]`,
      `IPv6 requested, but ${noV6}`,
    );
  if (!fams.includes('IPv6')) return fams;
  if (svc.ipFamilyPolicy === 'PreferDualStack' && fams.includes('IPv4')) return ['IPv4'];
  throw fail('spec.ipFamilies', `IPv6 requested, but ${noV6}`);
}

/** FNV-1a: where a name starts looking for a free address or port (stable, spread out). */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** What is in use (a Set will do). */
export interface Taken {
  has(value: string): boolean;
}

/**
 * A free ClusterIP for service `key`: not the network address (IPv6: the subnet-router anycast),
 * nor the first host (Kubernetes gives it to the `kubernetes` service), nor the IPv4 broadcast, nor
 * one in `used` (canonical text). The search starts where the name hashes to, so an address is
 * stable for a name and the cost is O(addresses in use) while the range is not nearly full.
 */
export function allocateClusterIP(key: string, cidr: ServiceCidr, used: Taken): string {
  const usable = cidr.size - (cidr.family === 'IPv4' ? 3 : 2);
  const start = hash(key) % usable;
  for (let i = 0; i < usable; i++) {
    const ip = bigIp(cidr.base + 2n + BigInt((start + i) % usable), cidr.family);
    if (!used.has(ip)) return ip;
  }
  throw new WeirError('ERR_SERVICE_CIDR_EXHAUSTED', `the service CIDR ${cidr.text} has no free address`);
}

/** A free NodePort ("port/PROTO" keys in `used`) for `key`. */
export function allocateNodePort(key: string, protocol: string, used: Taken): number {
  const span = nodePortRange.max - nodePortRange.min + 1;
  const start = hash(key) % span;
  for (let i = 0; i < span; i++) {
    const port = nodePortRange.min + ((start + i) % span);
    if (!used.has(`${port}/${protocol}`)) return port;
  }
  throw new WeirError('ERR_SERVICE_NODEPORT_EXHAUSTED', `no free NodePort for ${protocol}`);
}

/**
 * Stable ids for `names`: a name keeps its id; new names get the lowest free ids in 1..max; ids of
 * names no longer wanted are released. Returns the new table (the old one is not changed).
 */
export function assignIds(
  previous: Readonly<Record<string, number>>,
  names: Iterable<string>,
  max: number,
  what: string,
): Record<string, number> {
  const wanted = [...new Set(names)].sort();
  const out: Record<string, number> = {};
  const taken = new Set<number>();
  for (const n of wanted) {
    const id = previous[n];
    if (id !== undefined) {
      out[n] = id;
      taken.add(id);
    }
  }
  let next = 1;
  for (const n of wanted) {
    if (out[n] !== undefined) continue;
    while (taken.has(next)) next++;
    if (next > max) throw new WeirError('ERR_SERVICE_IDS_EXHAUSTED', `more than ${max} ${what}`);
    out[n] = next;
    taken.add(next);
  }
  return out;
}
