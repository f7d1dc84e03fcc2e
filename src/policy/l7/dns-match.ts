// DNS rules (toPorts[].rules.dns) and toFQDNs selectors: Cilium's name matching. Pure.
//
// Names compare case-insensitively with the trailing dot implied on both sides. `matchName` is an
// exact name. `matchPattern`: `*` alone matches every name; a leading `**.` matches one or more
// whole labels; any other `*` matches zero or more of [-a-z0-9_] inside one label; everything else
// is literal (conformance/l7/README.md, semantics 10).
import type { DnsRule, L7RuleOrigin, PortL7Policy } from './types.js';

export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

const cache = new Map<string, RegExp>();

/** The pattern as an anchored regular expression over normalized names. */
export function patternRegex(pattern: string): RegExp {
  const p = normalizeName(pattern);
  let re = cache.get(p);
  if (re) return re;
  if (p === '*') re = /^.*$/;
  else {
    const multi = p.startsWith('**.');
    const rest = (multi ? p.slice(3) : p)
      .split('')
      .map((ch) => (ch === '*' ? '[-a-z0-9_]*' : ch.replace(/[.+?^${}()|[\]\\]/g, '\\$&')))
      .join('');
    re = new RegExp(`^${multi ? '[-a-z0-9_]+(?:\\.[-a-z0-9_]+)*\\.' : ''}${rest}$`);
  }
  if (cache.size > 4096) cache.clear();
  cache.set(p, re);
  return re;
}

/** Whether `name` matches a DNS rule or toFQDNs selector. */
export function nameMatches(rule: DnsRule, name: string): boolean {
  const n = normalizeName(name);
  if (rule.matchName !== undefined && normalizeName(rule.matchName) === n) return true;
  if (rule.matchPattern !== undefined && patternRegex(rule.matchPattern).test(n)) return true;
  return false;
}

export interface DnsVerdict {
  allowed: boolean;
  /** The rule that allowed the query (absent: an L4-only allow, or denied). */
  rule?: DnsRule;
  origin?: L7RuleOrigin;
}

/**
 * The verdict on a query for `name` from a peer of `remoteIdentity` through a DNS port: the rule
 * sets that apply to the peer; any without DNS rules allows everything (L4 only); otherwise one
 * matching rule allows. No applicable set: denied.
 */
export function judgeDns(policy: PortL7Policy, remoteIdentity: number, name: string): DnsVerdict {
  const sets = policy.ruleSets.filter((s) => !s.identities || s.identities.includes(remoteIdentity));
  const open = sets.find((s) => !s.dns);
  if (open) return { allowed: true, origin: open.origin };
  for (const s of sets)
    for (const rule of s.dns ?? [])
      if (nameMatches(rule, name)) return { allowed: true, rule, origin: s.origin };
  return { allowed: false };
}
