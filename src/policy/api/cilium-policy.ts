// cilium.io/v2 CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy: L3/L4, and L7 HTTP rules
// (`toPorts[].rules.http`, enforced by the node proxy). Every field of the upstream API is either
// implemented or rejected by name as not supported yet; none is silently ignored (an ignored L7 or
// FQDN rule would widen or narrow access behind the user's back).
import { l7RegexProblem } from '../l7/regex.js';
import { Checker, type Path, type PolicyLocation } from './check.js';
import { parseCIDRMatch, parseMetadata, parsePort } from './common.js';
import { parseSelector, type SelectorOptions } from './selector.js';
import type { DnsRule, HeaderMatch, HttpRule } from '../l7/types.js';
import {
  entities,
  type CiliumPeerRule,
  type CiliumPolicy,
  type CiliumRule,
  type Entity,
  type PortMatch,
} from './types.js';

const ciliumSelector: SelectorOptions = { allowSource: true, defaultSource: 'any' };
type Kind = CiliumPolicy['kind'];
type Section = 'ingress' | 'ingressDeny' | 'egress' | 'egressDeny';

export function validateCiliumNetworkPolicy(obj: unknown, loc: PolicyLocation): CiliumPolicy {
  return validateCilium(obj, loc, 'CiliumNetworkPolicy');
}

export function validateCiliumClusterwideNetworkPolicy(obj: unknown, loc: PolicyLocation): CiliumPolicy {
  return validateCilium(obj, loc, 'CiliumClusterwideNetworkPolicy');
}

function validateCilium(obj: unknown, loc: PolicyLocation, kind: Kind): CiliumPolicy {
  const c = new Checker(loc);
  const top = c.object(obj, [], ['apiVersion', 'kind', 'metadata', 'spec', 'specs'], { ignored: ['status'] });
  if (top && top.apiVersion !== 'cilium.io/v2')
    c.fail(
      'ERR_POLICY_FIELD_INVALID',
      ['apiVersion'],
      `expected cilium.io/v2, got '${String(top.apiVersion)}'`,
    );
  if (top && top.kind !== kind)
    c.fail('ERR_POLICY_FIELD_INVALID', ['kind'], `expected ${kind}, got '${String(top.kind)}'`);
  const meta = parseMetadata(c, top?.metadata, kind === 'CiliumNetworkPolicy');
  const rules: CiliumRule[] = [];
  const hasSpec = top?.spec !== undefined && top.spec !== null;
  const specs = c.array(top?.specs, ['specs']);
  if (!hasSpec && !specs) c.fail('ERR_POLICY_FIELD_MISSING', ['spec'], 'a policy needs spec or specs');
  if (hasSpec) {
    const r = parseRule(c, top?.spec, ['spec'], kind);
    if (r) rules.push(r);
  }
  specs?.forEach((s, i) => {
    const r = parseRule(c, s, ['specs', i], kind);
    if (r) rules.push({ ...r, specIndex: i });
  });
  c.done();
  return kind === 'CiliumNetworkPolicy'
    ? { kind, namespace: meta.namespace ?? 'default', name: meta.name, rules }
    : { kind, name: meta.name, rules };
}

function parseRule(c: Checker, value: unknown, path: Path, kind: Kind): CiliumRule | undefined {
  const obj = c.object(
    value,
    path,
    [
      'endpointSelector',
      'ingress',
      'ingressDeny',
      'egress',
      'egressDeny',
      'enableDefaultDeny',
      'description',
      'labels',
    ],
    { unsupported: ['nodeSelector', 'log'], what: 'a rule' },
  );
  if (!obj) return undefined;
  if (obj.nodeSelector !== undefined) {
    // Replace the generic message: say why.
    c.problems.pop();
    c.fail(
      'ERR_POLICY_FIELD_UNSUPPORTED',
      [...path, 'nodeSelector'],
      kind === 'CiliumClusterwideNetworkPolicy'
        ? "'nodeSelector' (host firewall policies) is not supported by weir yet; use endpointSelector"
        : "'nodeSelector' is only valid in a CiliumClusterwideNetworkPolicy (and not supported by weir yet)",
    );
  }
  if (obj.endpointSelector === undefined && obj.nodeSelector === undefined)
    c.fail('ERR_POLICY_FIELD_MISSING', [...path, 'endpointSelector'], 'a rule needs an endpointSelector');
  const endpointSelector = parseSelector(
    c,
    obj.endpointSelector,
    [...path, 'endpointSelector'],
    ciliumSelector,
  );
  const edd =
    obj.enableDefaultDeny === undefined
      ? {}
      : (c.object(obj.enableDefaultDeny, [...path, 'enableDefaultDeny'], ['ingress', 'egress']) ?? {});
  const enableDefaultDeny = {
    ingress: c.boolean(edd.ingress, [...path, 'enableDefaultDeny', 'ingress']) ?? true,
    egress: c.boolean(edd.egress, [...path, 'enableDefaultDeny', 'egress']) ?? true,
  };
  const description = c.string(obj.description, [...path, 'description']);
  (c.array(obj.labels, [...path, 'labels']) ?? []).forEach((l, i) =>
    c.object(l, [...path, 'labels', i], ['key', 'value', 'source']),
  );
  const sections = Object.fromEntries(
    (['ingress', 'ingressDeny', 'egress', 'egressDeny'] as const).map((s) => [
      s,
      (c.array(obj[s], [...path, s]) ?? []).flatMap((r, i) => parsePeerRule(c, r, [...path, s, i], s) ?? []),
    ]),
  ) as Record<Section, CiliumPeerRule[]>;
  if (!endpointSelector) return undefined;
  return {
    endpointSelector,
    ...sections,
    enableDefaultDeny,
    ...(description === undefined ? {} : { description }),
  };
}

/**
 * `authentication: {mode}` (Cilium's mutual authentication): 'required' or 'disabled' (the
 * default); null when invalid. Cilium's 'test-always-fail' (a test hook of its own) is refused.
 */
function parseAuthentication(c: Checker, value: unknown, path: Path): 'required' | 'disabled' | null {
  const o = c.object(value, path, ['mode']);
  if (!o) return null;
  if (o.mode === 'required' || o.mode === 'disabled') return o.mode;
  c.fail(
    'ERR_POLICY_RULE_INVALID',
    [...path, 'mode'],
    o.mode === undefined
      ? "authentication needs a mode: 'required' or 'disabled'"
      : `authentication mode '${String(o.mode)}' is not 'required' or 'disabled'`,
  );
  return null;
}

function parsePeerRule(c: Checker, value: unknown, path: Path, section: Section): CiliumPeerRule | undefined {
  const ingress = section.startsWith('ingress');
  const deny = section.endsWith('Deny');
  const d = ingress ? 'from' : 'to';
  const known = [`${d}Endpoints`, `${d}Entities`, `${d}CIDR`, `${d}CIDRSet`, 'toPorts'];
  // toFQDNs: egress allows only (Cilium: deny policies do not support it).
  if (!ingress && !deny) known.splice(4, 0, 'toFQDNs');
  const unsupported = [`${d}Requires`, `${d}Nodes`, `${d}Groups`, 'icmps'];
  if (!ingress) unsupported.push('toServices');
  if (!ingress && deny) unsupported.push('toFQDNs');
  const fields = deny ? known : [...known, 'authentication'];
  const obj = c.object(value ?? {}, path, fields, { unsupported, what: `an ${section} rule` });
  if (!obj) return undefined;
  const present = known.filter((k) => k !== 'toPorts' && obj[k] !== undefined && obj[k] !== null);
  if (present.length > 1) {
    c.fail(
      'ERR_POLICY_RULE_INVALID',
      [...path, present[1] ?? ''],
      `${present.join(' and ')} cannot be combined in one rule; write separate rules`,
    );
    return undefined;
  }
  const rule: CiliumPeerRule = {};
  let ok = true;
  if (!deny && obj.authentication !== undefined && obj.authentication !== null) {
    const auth = parseAuthentication(c, obj.authentication, [...path, 'authentication']);
    if (auth === null) ok = false;
    else if (auth === 'required') rule.auth = 'required';
  }
  const eps = c.array(obj[`${d}Endpoints`], [...path, `${d}Endpoints`]);
  if (eps) {
    rule.endpoints = [];
    eps.forEach((e, i) => {
      const s = parseSelector(c, e ?? {}, [...path, `${d}Endpoints`, i], ciliumSelector);
      if (s) rule.endpoints?.push(s);
      else ok = false;
    });
  }
  const ents = c.array(obj[`${d}Entities`], [...path, `${d}Entities`]);
  if (ents) {
    rule.entities = [];
    ents.forEach((e, i) => {
      if (typeof e === 'string' && (entities as readonly string[]).includes(e))
        rule.entities?.push(e as Entity);
      else {
        c.fail(
          'ERR_POLICY_INVALID_ENTITY',
          [...path, `${d}Entities`, i],
          `unknown entity '${String(e)}' (one of ${entities.join(', ')})`,
        );
        ok = false;
      }
    });
  }
  const fqdns = ingress || deny ? undefined : c.array(obj.toFQDNs, [...path, 'toFQDNs']);
  if (fqdns) {
    rule.fqdns = [];
    fqdns.forEach((f, i) => {
      const r = parseDnsRule(c, f ?? {}, [...path, 'toFQDNs', i]);
      if (r) rule.fqdns?.push(r);
      else ok = false;
    });
  }
  const cidrs = c.array(obj[`${d}CIDR`], [...path, `${d}CIDR`]);
  if (cidrs) {
    rule.cidrs = [];
    cidrs.forEach((s, i) => {
      const m = parseCIDRMatch(c, s, undefined, [...path, `${d}CIDR`], i, { allowBareIP: true });
      if (m) rule.cidrs?.push(m);
      else ok = false;
    });
  }
  const sets = c.array(obj[`${d}CIDRSet`], [...path, `${d}CIDRSet`]);
  if (sets) {
    rule.cidrs = [];
    sets.forEach((s, i) => {
      const p = [...path, `${d}CIDRSet`, i];
      const so = c.object(s, p, ['cidr', 'except'], {
        unsupported: ['cidrGroupRef', 'cidrGroupSelector'],
        what: 'a CIDR set',
      });
      const m = so && parseCIDRMatch(c, so.cidr, so.except, p, 'cidr', { allowBareIP: true });
      if (m) rule.cidrs?.push(m);
      else ok = false;
    });
  }
  const toPorts = c.array(obj.toPorts, [...path, 'toPorts']);
  if (toPorts) {
    const ports: PortMatch[] = [];
    toPorts.forEach((pr, i) => {
      const p = [...path, 'toPorts', i];
      const po = c.object(pr ?? {}, p, ['ports', 'rules'], {
        unsupported: ['listener', 'originatingTLS', 'terminatingTLS', 'serverNames'],
        what: 'a port rule',
      });
      let http: HttpRule[] | undefined;
      let dns: DnsRule[] | undefined;
      if (po?.rules !== undefined && po.rules !== null) {
        if (deny) {
          c.fail('ERR_POLICY_L7_UNSUPPORTED', [...p, 'rules'], 'deny rules cannot carry L7 rules');
          ok = false;
        } else {
          const parsed = parseL7Rules(c, po.rules, [...p, 'rules']);
          if (parsed === null) ok = false;
          else {
            http = parsed?.http;
            dns = parsed?.dns;
          }
          if (dns && ingress) {
            c.fail(
              'ERR_POLICY_L7_UNSUPPORTED',
              [...p, 'rules', 'dns'],
              "DNS rules apply to egress (the DNS proxy sees the pod's own lookups); move them to egress",
            );
            ok = false;
          }
        }
      }
      const list = c.array(po?.ports, [...p, 'ports']) ?? [];
      // A port rule without ports matches every port.
      if (list.length === 0) {
        if (http || dns) {
          c.fail(
            'ERR_POLICY_L7_INVALID',
            [...p, 'ports'],
            http
              ? 'HTTP rules need the port they apply to: list it in ports (TCP, an exact or named port)'
              : 'DNS rules need the port they apply to: list it in ports (53, UDP, TCP or ANY)',
          );
          ok = false;
        }
        ports.push({ protocol: 'ANY', port: 0 });
      }
      list.forEach((pp, j) => {
        const m = parsePort(c, pp, [...p, 'ports', j], 'cilium');
        if (!m) ok = false;
        else if (http && !l7PortOk(c, m, [...p, 'ports', j])) ok = false;
        else if (dns && !dnsPortOk(c, m, [...p, 'ports', j])) ok = false;
        else ports.push(http ? { ...m, http } : dns ? { ...m, dns } : m);
      });
    });
    rule.ports = ports;
  }
  return ok ? rule : undefined;
}

/**
 * `toPorts[].rules`: HTTP rules (a list), or null when the rules are invalid or of a kind weir does
 * not enforce (each refused by name, never ignored). An empty list, or rules without any kind, is
 * no L7 rule at all (Cilium's L7Rules.IsEmpty): undefined, the port rule stays L4 only.
 */
function parseL7Rules(
  c: Checker,
  value: unknown,
  path: Path,
): { http?: HttpRule[]; dns?: DnsRule[] } | undefined | null {
  const before = c.problems.length;
  const obj = c.object(value, path, ['http', 'kafka', 'dns', 'l7proto', 'l7'], { what: 'L7 rules' });
  if (!obj) return null;
  const refuse = (field: string, message: string) =>
    c.fail('ERR_POLICY_L7_UNSUPPORTED', [...path, field], message);
  if (obj.kafka !== undefined && obj.kafka !== null)
    refuse('kafka', 'Kafka rules are not supported by weir (Cilium deprecated its Kafka parser)');
  for (const f of ['l7proto', 'l7'])
    if (obj[f] !== undefined && obj[f] !== null)
      refuse(f, 'generic L7 rules (l7proto, l7) are not supported by weir yet');
  const list = c.array(obj.http, [...path, 'http']);
  const rules: HttpRule[] = [];
  list?.forEach((r, i) => {
    const rule = parseHttpRule(c, r ?? {}, [...path, 'http', i]);
    if (rule) rules.push(rule);
  });
  const dnsList = c.array(obj.dns, [...path, 'dns']);
  const dns: DnsRule[] = [];
  dnsList?.forEach((r, i) => {
    const rule = parseDnsRule(c, r ?? {}, [...path, 'dns', i]);
    if (rule) dns.push(rule);
  });
  if (rules.length > 0 && dns.length > 0)
    c.fail(
      'ERR_POLICY_L7_INVALID',
      path,
      'one port rule carries one kind of L7 rules: http or dns, not both',
    );
  if (c.problems.length > before) return null;
  if (rules.length > 0) return { http: rules };
  if (dns.length > 0) return { dns };
  return undefined;
}

/** A DNS name or pattern: letters, digits, '-', '_', '.', and (patterns) '*'. */
const dnsMatchName = /^[-a-zA-Z0-9_]+(\.[-a-zA-Z0-9_]+)*\.?$/;
const dnsMatchPattern = /^(\*\*\.)?[-a-zA-Z0-9_*]+(\.[-a-zA-Z0-9_*]+)*\.?$|^\*$/;

function parseDnsRule(c: Checker, value: unknown, path: Path): DnsRule | undefined {
  const o = c.object(value, path, ['matchName', 'matchPattern'], { what: 'a DNS rule' });
  if (!o) return undefined;
  const name = o.matchName === undefined ? undefined : c.string(o.matchName, [...path, 'matchName']);
  const pattern =
    o.matchPattern === undefined ? undefined : c.string(o.matchPattern, [...path, 'matchPattern']);
  if (!name && !pattern) {
    c.fail('ERR_POLICY_L7_INVALID', path, 'a DNS rule needs matchName or matchPattern');
    return undefined;
  }
  if (name && !dnsMatchName.test(name)) {
    c.fail('ERR_POLICY_L7_INVALID', [...path, 'matchName'], `'${name}' is not a DNS name`);
    return undefined;
  }
  if (pattern && !dnsMatchPattern.test(pattern)) {
    c.fail(
      'ERR_POLICY_L7_INVALID',
      [...path, 'matchPattern'],
      `'${pattern}' is not a DNS name pattern (letters, digits, '-', '_', '.', '*', a leading '**.')`,
    );
    return undefined;
  }
  return { ...(name ? { matchName: name } : {}), ...(pattern ? { matchPattern: pattern } : {}) };
}

function dnsPortOk(c: Checker, m: PortMatch, path: Path): boolean {
  if (m.port === 0 || m.endPort !== undefined || typeof m.port !== 'number') {
    c.fail(
      'ERR_POLICY_L7_INVALID',
      [...path, 'port'],
      'DNS rules need one exact port number (usually 53), not a range, a name or every port',
    );
    return false;
  }
  if (m.protocol !== 'UDP' && m.protocol !== 'TCP' && m.protocol !== 'ANY') {
    c.fail(
      'ERR_POLICY_L7_INVALID',
      [...path, 'protocol'],
      `DNS rules apply to UDP and TCP, not ${m.protocol}`,
    );
    return false;
  }
  return true;
}

/** An HTTP header name (RFC 9110 token). */
const headerToken = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function regexField(c: Checker, value: unknown, path: Path): string | undefined {
  const s = c.string(value, path);
  if (!s) return undefined; // absent or empty: no constraint
  // Checked with the proxy's own RE2 compiler: what is accepted here is what the proxy runs.
  const problem = l7RegexProblem(s);
  if (problem !== undefined) {
    c.fail('ERR_POLICY_L7_REGEX', path, `'${s}' is not a valid RE2 regular expression: ${problem}`);
    return undefined;
  }
  return s;
}

function parseHttpRule(c: Checker, value: unknown, path: Path): HttpRule | undefined {
  const obj = c.object(value, path, ['method', 'path', 'host', 'headers', 'headerMatches'], {
    what: 'an HTTP rule',
  });
  if (!obj) return undefined;
  const rule: HttpRule = {};
  for (const f of ['method', 'path', 'host'] as const) {
    const re = regexField(c, obj[f], [...path, f]);
    if (re !== undefined) rule[f] = re;
  }
  const headers = c.array(obj.headers, [...path, 'headers']);
  if (headers) {
    rule.headers = [];
    headers.forEach((h, i) => {
      const s = c.string(h, [...path, 'headers', i], { required: true });
      if (s === undefined) return;
      const colon = s.indexOf(':');
      const name = (colon < 0 ? s : s.slice(0, colon)).trim();
      if (!headerToken.test(name))
        c.fail(
          'ERR_POLICY_L7_INVALID',
          [...path, 'headers', i],
          `'${s}' is not "Name" or "Name: value" with a valid header name`,
        );
      else rule.headers?.push(s);
    });
  }
  const matches = c.array(obj.headerMatches, [...path, 'headerMatches']);
  if (matches) {
    rule.headerMatches = [];
    matches.forEach((m, i) => {
      const p = [...path, 'headerMatches', i];
      const mo = c.object(m ?? {}, p, ['name', 'value', 'mismatch'], {
        what: 'a header match',
        ignored: ['secret'],
      });
      if (!mo) return;
      if (mo.secret !== undefined && mo.secret !== null) {
        c.fail(
          'ERR_POLICY_L7_UNSUPPORTED',
          [...p, 'secret'],
          "'secret' (a header value read from a Kubernetes Secret) is not supported by weir yet; write the value in 'value'",
        );
      }
      const name = c.string(mo.name, [...p, 'name'], { required: true });
      if (name !== undefined && !headerToken.test(name)) {
        c.fail('ERR_POLICY_L7_INVALID', [...p, 'name'], `'${name}' is not a valid header name`);
        return;
      }
      const v = c.string(mo.value, [...p, 'value']);
      const mismatch = c.string(mo.mismatch, [...p, 'mismatch']);
      const actions = ['LOG', 'ADD', 'DELETE', 'REPLACE'] as const;
      if (mismatch !== undefined && !(actions as readonly string[]).includes(mismatch)) {
        c.fail(
          'ERR_POLICY_L7_INVALID',
          [...p, 'mismatch'],
          `'${mismatch}' is not a mismatch action (one of ${actions.join(', ')})`,
        );
        return;
      }
      if (name === undefined) return;
      const hm: HeaderMatch = { name };
      if (v !== undefined) hm.value = v;
      if (mismatch !== undefined) hm.mismatch = mismatch as HeaderMatch['mismatch'];
      rule.headerMatches?.push(hm);
    });
  }
  return rule;
}

/** A port carrying HTTP rules: TCP, one exact or named port (the proxy listens per port). */
function l7PortOk(c: Checker, m: PortMatch, path: Path): boolean {
  if (m.protocol !== 'TCP') {
    c.fail(
      'ERR_POLICY_L7_INVALID',
      [...path, 'protocol'],
      `HTTP rules apply to TCP: write protocol TCP (not ${m.protocol})`,
    );
    return false;
  }
  if (m.port === 0) {
    c.fail(
      'ERR_POLICY_L7_INVALID',
      [...path, 'port'],
      'HTTP rules need an exact (or named) port, not every port',
    );
    return false;
  }
  if (m.endPort !== undefined) {
    c.fail(
      'ERR_POLICY_L7_UNSUPPORTED',
      [...path, 'endPort'],
      'HTTP rules on a port range are not supported by weir yet; list the ports',
    );
    return false;
  }
  return true;
}
