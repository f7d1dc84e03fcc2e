// Validation shared by both policy kinds: object metadata, ports, CIDRs.
import { parsePrefix, prefixContains } from '../../identity/cidr.js';
import type { Checker, Path } from './check.js';
import type { CIDRMatch, L4Protocol, PortMatch } from './types.js';

const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** ObjectMeta fields that carry no policy meaning; accepted as they are. */
const metadataFields = [
  'name',
  'namespace',
  'labels',
  'annotations',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'ownerReferences',
  'finalizers',
  'generateName',
  'selfLink',
];

export function parseMetadata(
  c: Checker,
  value: unknown,
  namespaced: boolean,
): { name: string; namespace?: string } {
  const meta = c.object(value, ['metadata'], metadataFields, { what: 'metadata' });
  const name = c.string(meta?.name, ['metadata', 'name'], { required: true }) ?? '';
  if (name && (name.length > 253 || !dnsSubdomain.test(name)))
    c.fail(
      'ERR_POLICY_FIELD_INVALID',
      ['metadata', 'name'],
      `'${name}' is not a valid name (DNS-1123 subdomain)`,
    );
  if (!namespaced) return { name };
  const namespace = c.string(meta?.namespace, ['metadata', 'namespace']) ?? 'default';
  if (namespace.length > 63 || !dnsLabel.test(namespace))
    c.fail(
      'ERR_POLICY_FIELD_INVALID',
      ['metadata', 'namespace'],
      `'${namespace}' is not a valid namespace name`,
    );
  return { name, namespace };
}

/** IANA_SVC_NAME, the syntax of named container ports. */
export function isPortName(s: string): boolean {
  return s.length <= 15 && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(s) && /[a-z]/.test(s) && !s.includes('--');
}

function checkPortNumber(c: Checker, n: number, path: Path, allowZero: boolean): boolean {
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1) || n > 65535) {
    c.fail('ERR_POLICY_INVALID_PORT', path, `port ${n} is out of range (${allowZero ? 0 : 1}-65535)`);
    return false;
  }
  return true;
}

/**
 * One port entry. NetworkPolicy: numeric or named port, default protocol TCP, port absent = all.
 * Cilium: port is a string ("80", "http", "0"/"" = all) or number, default protocol ANY.
 */
export function parsePort(
  c: Checker,
  value: unknown,
  path: Path,
  flavor: 'k8s' | 'cilium',
): PortMatch | undefined {
  const obj = c.object(value, path, ['port', 'endPort', 'protocol'], { what: 'a port' });
  if (!obj) return undefined;
  let ok = true;
  const protocols = flavor === 'k8s' ? ['TCP', 'UDP', 'SCTP'] : ['TCP', 'UDP', 'SCTP', 'ANY'];
  let protocol: L4Protocol = flavor === 'k8s' ? 'TCP' : 'ANY';
  if (obj.protocol !== undefined && obj.protocol !== null) {
    const p = typeof obj.protocol === 'string' ? obj.protocol.toUpperCase() : undefined;
    if (p !== undefined && protocols.includes(p) && (flavor === 'cilium' || p === obj.protocol))
      protocol = p as L4Protocol;
    else if (flavor === 'cilium' && p !== undefined && ['ICMP', 'ICMPV6', 'VRRP', 'IGMP'].includes(p)) {
      c.fail(
        'ERR_POLICY_FIELD_UNSUPPORTED',
        [...path, 'protocol'],
        `protocol ${String(obj.protocol)} is not supported by weir yet`,
      );
      ok = false;
    } else {
      c.fail(
        'ERR_POLICY_INVALID_PROTOCOL',
        [...path, 'protocol'],
        `invalid protocol '${String(obj.protocol)}' (one of ${protocols.join(', ')})`,
      );
      ok = false;
    }
  }
  let port: number | string = 0;
  const raw = obj.port;
  if (typeof raw === 'number') {
    if (!checkPortNumber(c, raw, [...path, 'port'], flavor === 'cilium')) ok = false;
    else port = raw;
  } else if (typeof raw === 'string') {
    if (flavor === 'cilium' && /^\d+$/.test(raw)) {
      const n = Number(raw);
      if (!checkPortNumber(c, n, [...path, 'port'], true)) ok = false;
      else port = n;
    } else if (flavor === 'cilium' && raw === '') port = 0;
    else if (isPortName(raw)) port = raw;
    else {
      c.fail(
        'ERR_POLICY_INVALID_PORT',
        [...path, 'port'],
        `'${raw}' is neither a port number nor a valid port name`,
      );
      ok = false;
    }
  } else if (raw !== undefined && raw !== null) {
    c.fail('ERR_POLICY_INVALID_PORT', [...path, 'port'], 'port must be a number or a port name');
    ok = false;
  }
  let endPort: number | undefined;
  if (obj.endPort !== undefined && obj.endPort !== null) {
    const e = obj.endPort;
    if (typeof e !== 'number' || !checkPortNumber(c, e, [...path, 'endPort'], false)) {
      if (typeof e !== 'number')
        c.fail('ERR_POLICY_INVALID_PORT', [...path, 'endPort'], 'endPort must be a number');
      ok = false;
    } else if (typeof port !== 'number' || port === 0) {
      c.fail('ERR_POLICY_INVALID_PORT', [...path, 'endPort'], 'endPort needs a numeric port');
      ok = false;
    } else if (e < port) {
      c.fail('ERR_POLICY_INVALID_PORT', [...path, 'endPort'], `endPort ${e} is below port ${port}`);
      ok = false;
    } else if (e > port) endPort = e;
  }
  if (!ok) return undefined;
  return endPort === undefined ? { protocol, port } : { protocol, port, endPort };
}

/** A CIDR with excepts (NetworkPolicy ipBlock, Cilium CIDRSet); host bits are masked like Go. */
export function parseCIDRMatch(
  c: Checker,
  cidr: unknown,
  except: unknown,
  path: Path,
  cidrField: string | number,
  opts: { allowBareIP: boolean },
): CIDRMatch | undefined {
  const s = c.string(cidr, [...path, cidrField], { required: true });
  if (s === undefined) return undefined;
  const p = parsePrefix(s, opts);
  if (!p) {
    c.fail('ERR_POLICY_INVALID_CIDR', [...path, cidrField], `'${s}' is not a valid CIDR`);
    return undefined;
  }
  const out: string[] = [];
  let ok = true;
  (c.array(except, [...path, 'except']) ?? []).forEach((e, i) => {
    const es = c.string(e, [...path, 'except', i], { required: true });
    const ep = es === undefined ? undefined : parsePrefix(es, opts);
    if (!ep) {
      if (es !== undefined)
        c.fail('ERR_POLICY_INVALID_CIDR', [...path, 'except', i], `'${es}' is not a valid CIDR`);
      ok = false;
    } else if (!prefixContains(p, ep)) {
      c.fail('ERR_POLICY_INVALID_CIDR', [...path, 'except', i], `except '${es}' is not inside '${s}'`);
      ok = false;
    } else out.push(es ?? '');
  });
  return ok ? { cidr: s, except: out } : undefined;
}
