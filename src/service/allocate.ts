// Address and id allocation for services: ClusterIPs from the service CIDR, NodePorts from
// 30000-32767, and the stable numeric ids of the datapath (backend ids, rev-NAT indexes). Pure:
// the caller keeps the tables (the agent persists them), so ids survive restarts.
import { isIPv4 } from 'node:net';
import { WeirError } from '../shared/errors.js';
import { nodePortRange } from './api/types.js';

export const defaultServiceCIDR = '10.96.0.0/16';

const ipNum = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const ipStr = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

export interface Cidr4 {
  base: number;
  size: number;
  text: string;
}

export function parseServiceCIDR(text: string): Cidr4 {
  const [addr = '', len = ''] = text.split('/');
  const bits = Number(len);
  if (!isIPv4(addr) || !/^\d+$/.test(len) || bits < 8 || bits > 30)
    throw new WeirError('ERR_SERVICE_CIDR', `service CIDR '${text}' must be an IPv4 prefix /8../30`, {
      location: { field: '--service-cidr' },
    });
  const size = 2 ** (32 - bits);
  const base = ipNum(addr) - (ipNum(addr) % size);
  return { base, size, text: `${ipStr(base)}/${bits}` };
}

export function inCIDR(ip: string, cidr: Cidr4): boolean {
  return isIPv4(ip) && ipNum(ip) >= cidr.base && ipNum(ip) < cidr.base + cidr.size;
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
 * A free ClusterIP for service `key`: not the network or broadcast address, nor .1 (Kubernetes
 * gives it to the `kubernetes` service), nor one in `used`.
 */
export function allocateClusterIP(key: string, cidr: Cidr4, used: Taken): string {
  const usable = cidr.size - 3;
  const start = hash(key) % usable;
  for (let i = 0; i < usable; i++) {
    const ip = ipStr(cidr.base + 2 + ((start + i) % usable));
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
