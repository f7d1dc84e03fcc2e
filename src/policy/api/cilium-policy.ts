// cilium.io/v2 CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy at L3/L4. Every field of
// the upstream API is either implemented or rejected by name as not supported yet; none is
// silently ignored (an ignored L7 or FQDN rule would widen or narrow access behind the user's back).
import { Checker, type Path, type PolicyLocation } from './check.js';
import { parseCIDRMatch, parseMetadata, parsePort } from './common.js';
import { parseSelector, type SelectorOptions } from './selector.js';
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

function parsePeerRule(c: Checker, value: unknown, path: Path, section: Section): CiliumPeerRule | undefined {
  const ingress = section.startsWith('ingress');
  const deny = section.endsWith('Deny');
  const d = ingress ? 'from' : 'to';
  const known = [`${d}Endpoints`, `${d}Entities`, `${d}CIDR`, `${d}CIDRSet`, 'toPorts'];
  const unsupported = [`${d}Requires`, `${d}Nodes`, `${d}Groups`, 'icmps'];
  if (!deny) unsupported.push('authentication');
  if (!ingress) unsupported.push('toServices', 'toFQDNs');
  const obj = c.object(value ?? {}, path, known, { unsupported, what: `an ${section} rule` });
  if (!obj) return undefined;
  const present = known.slice(0, 4).filter((k) => obj[k] !== undefined && obj[k] !== null);
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
      const po = c.object(pr ?? {}, p, ['ports'], {
        unsupported: ['rules', 'listener', 'originatingTLS', 'terminatingTLS', 'serverNames'],
        what: 'a port rule',
      });
      if (po?.rules !== undefined) {
        c.problems.pop();
        c.fail(
          'ERR_POLICY_L7_UNSUPPORTED',
          [...p, 'rules'],
          deny
            ? 'deny rules cannot carry L7 rules'
            : 'L7 rules (http, kafka, dns, l7) are not supported by weir yet; remove `rules` for an L4-only policy',
        );
      }
      const list = c.array(po?.ports, [...p, 'ports']) ?? [];
      // A port rule without ports matches every port.
      if (list.length === 0) ports.push({ protocol: 'ANY', port: 0 });
      list.forEach((pp, j) => {
        const m = parsePort(c, pp, [...p, 'ports', j], 'cilium');
        if (m) ports.push(m);
        else ok = false;
      });
    });
    rule.ports = ports;
  }
  return ok ? rule : undefined;
}
