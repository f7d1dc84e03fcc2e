// L7 in the policy engine: which policy-map entries redirect to the node proxy, and the L7 policy
// the proxy judges those connections with (src/policy/l7/types.ts). Pure.
//
// Cilium's semantics (conformance/l7/README.md): an allow with HTTP rules for a peer and port
// sends that peer's connections to the port through the proxy, which allows the requests the
// rules match (the union of every such allow's rules). If any allow that matches the peer and
// port is L4 only, the port is unfiltered for that peer: its entry carries no proxy port, and it
// is not redirected at all. Deny entries never redirect (deny wins before any proxy).
import type { RuleRef } from './api/types.js';
import {
  l4Contains,
  PREFIX_FULL,
  PROTO_TCP,
  PROTO_UDP,
  type L4Prefix,
  type PolicyMapEntry,
} from './entry.js';
import type { DnsRule, HttpRule, L7RuleSet, PortL7Policy } from './l7/types.js';

/** One allow the engine added for an endpoint and direction, with the HTTP rules of its port. */
export interface L7Add {
  identity: number;
  l4: L4Prefix;
  rule: { order: number; cookie: number; ref?: RuleRef };
  http?: HttpRule[];
  dns?: DnsRule[];
}

type Space = Map<number, PolicyMapEntry>;

/** An L4-only allow of `space` (not the direction's default allow-all) containing `e`'s key. */
function l4OnlyCover(
  space: Space | undefined,
  e: PolicyMapEntry,
  isBase: (a: PolicyMapEntry) => boolean,
): PolicyMapEntry | undefined {
  if (!space) return undefined;
  let best: PolicyMapEntry | undefined;
  for (const a of space.values()) {
    if (a === e || a.deny || a.proxyPort !== 0 || isBase(a) || !l4Contains(a, e)) continue;
    if (!best || a.prefixLen > best.prefixLen) best = a;
  }
  return best;
}

/**
 * Settles the proxy ports of an endpoint's raw entries of one direction (identity -> L4 key ->
 * entry, before precedence resolution), in place:
 *  1. an L7 entry (proxy port set) whose peer also has an L4-only allow covering its port (in
 *     its own identity's entries or in identity 0's) loses its proxy port: unfiltered;
 *  2. for an identity-0 L7 entry, every peer with a covering L4-only allow of its own gets an
 *     explicit entry at that key without proxy port: the datapath prefers the exact identity on
 *     a tie, so that peer is not redirected while every other peer is.
 * `keyOf` gives an entry's key in the spaces; `isBase` tells the default allow-all of a direction
 * that is not enforced (it is no rule: it never makes a port unfiltered).
 */
export function redirectDecisions(
  raw: Map<number, Space>,
  isBase: (a: PolicyMapEntry) => boolean,
  keyOf: (protocol: number, port: number, prefixLen: number) => number,
): void {
  const any = raw.get(0);
  for (const [id, space] of raw)
    for (const [k, e] of space) {
      if (e.proxyPort === 0) continue;
      const cover = l4OnlyCover(space, e, isBase) ?? (id !== 0 ? l4OnlyCover(any, e, isBase) : undefined);
      if (cover) space.set(k, { ...e, proxyPort: 0, cookie: cover.cookie });
    }
  if (!any) return;
  for (const z of any.values()) {
    if (z.proxyPort === 0) continue;
    const k = keyOf(z.protocol, z.port, z.prefixLen);
    for (const [id, space] of raw) {
      if (id === 0 || space.has(k)) continue;
      const cover = l4OnlyCover(space, z, isBase);
      if (cover) space.set(k, { ...z, identity: id, proxyPort: 0, cookie: cover.cookie });
    }
  }
}

/**
 * The PortL7Policy of every port an entry of `entries` (one endpoint, one direction, resolved)
 * redirects, with the rule sets of every CNP/CCNP allow covering the port: those with HTTP rules,
 * and L4-only ones (every request allowed) for peers the datapath might still send through.
 */
export function l7PortPolicies(
  entries: readonly PolicyMapEntry[],
  adds: readonly L7Add[],
  proxyPort: number,
  parser: 'http' | 'dns' = 'http',
): PortL7Policy[] {
  const keys = new Map<string, L4Prefix>();
  for (const e of entries)
    if (e.proxyPort === proxyPort && !e.deny) {
      const protocol = parser === 'http' ? PROTO_TCP : e.protocol;
      keys.set(`${protocol}/${e.port}`, { protocol, port: e.port, prefixLen: PREFIX_FULL });
    }
  const out: PortL7Policy[] = [];
  const sorted = [...keys.values()].sort((a, b) => a.port - b.port || a.protocol - b.protocol);
  for (const key of sorted) {
    // rule order -> its L7 rule list (undefined: L4 only) -> peer identities
    type Rules = HttpRule[] | DnsRule[] | undefined;
    const sets = new Map<number, Map<Rules, { add: L7Add; ids: Set<number> }>>();
    for (const a of adds) {
      const ref = a.rule.ref;
      if (!ref || (ref.kind !== 'CiliumNetworkPolicy' && ref.kind !== 'CiliumClusterwideNetworkPolicy'))
        continue;
      if (!l4Contains(a.l4, key)) continue;
      // An allow with rules of the other parser's kind does not filter this port.
      const rules: Rules = parser === 'http' ? a.http : a.dns;
      let byRules = sets.get(a.rule.order);
      if (!byRules) sets.set(a.rule.order, (byRules = new Map()));
      let set = byRules.get(rules);
      if (!set) byRules.set(rules, (set = { add: a, ids: new Set() }));
      set.ids.add(a.identity);
    }
    const ruleSets: L7RuleSet[] = [];
    for (const [, byRules] of [...sets].sort((x, y) => x[0] - y[0]))
      for (const [rules, { add, ids }] of byRules) {
        const ref = add.rule.ref as RuleRef;
        ruleSets.push({
          ...(ids.has(0) ? {} : { identities: [...ids].sort((x, y) => x - y) }),
          ...(rules ? (parser === 'http' ? { http: rules as HttpRule[] } : { dns: rules as DnsRule[] }) : {}),
          origin: {
            kind: ref.kind as 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy',
            ...(ref.namespace ? { namespace: ref.namespace } : {}),
            name: ref.name,
            cookie: add.rule.cookie,
          },
        });
      }
    out.push({
      protocol: key.protocol === PROTO_UDP ? 'UDP' : 'TCP',
      port: key.port,
      parser,
      proxyPort,
      ruleSets,
    });
  }
  return out;
}
