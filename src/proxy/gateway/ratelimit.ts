// Envoy's local rate limit as Envoy Gateway configures it: a token bucket per rule, refilled to
// `requests` every unit from its first use. Rules with clientSelectors are descriptors: a request
// counts in every rule one of whose selectors it matches (headers Exact / RegularExpression /
// Distinct, sourceCIDR Exact / Distinct — Distinct: a bucket per value); a request matching none
// counts in the rule without selectors (the default bucket), if there is one. No token in a
// bucket it counts in → 429.
import type { LocalRateLimit } from '../../gateway/api.js';
import { contains4, parseCidr4 } from '../../lab/cidr.js';
import { compileL7Regex, type L7Regex } from '../../policy/l7/regex.js';

export interface RateLimitVerdict {
  allowed: boolean;
  /** x-ratelimit-* of the bucket that decided (the emptiest one the request counts in). */
  limit: number;
  remaining: number;
  resetSeconds: number;
}

interface Bucket {
  tokens: number;
  windowStart: number;
}

const regexes = new Map<string, L7Regex>();
function regex(p: string): L7Regex {
  let r = regexes.get(p);
  if (!r) regexes.set(p, (r = compileL7Regex(p)));
  return r;
}

export class LocalRateLimiter {
  readonly #buckets = new Map<string, Bucket>();

  /**
   * One request of route rule `key` (policy, route, rule) under `rl`: the buckets it counts in
   * are checked, and all of them charged when each has a token; undefined when no rule applies.
   */
  take(
    key: string,
    rl: LocalRateLimit,
    headers: Record<string, string[]>,
    clientIp: string,
  ): RateLimitVerdict | undefined {
    const now = performance.now();
    const hits: { key: string; requests: number; unitMs: number }[] = [];
    rl.selectors.forEach((rule, ri) => {
      for (const sel of rule.clientSelectors) {
        const parts: string[] = [];
        let ok = true;
        for (const h of sel.headers) {
          const v = headers[h.name]?.join(',');
          if (v === undefined) ok = false;
          else if (h.type === 'Distinct') parts.push(v);
          else if (h.type === 'Exact') ok = v === h.value;
          else ok = regex(h.value ?? '').test(v);
          if (!ok) break;
        }
        if (ok && sel.sourceCIDR) {
          const cidr = parseCidr4(sel.sourceCIDR.value);
          ok = !!cidr && /^\d+\.\d+\.\d+\.\d+$/.test(clientIp) && contains4(cidr, clientIp);
          if (ok && sel.sourceCIDR.type === 'Distinct') parts.push(clientIp);
        }
        if (ok) {
          hits.push({ key: `${key}|${ri}|${parts.join('|')}`, requests: rule.requests, unitMs: rule.unitMs });
          return;
        }
      }
    });
    if (hits.length === 0 && rl.default) hits.push({ key: `${key}|default`, ...rl.default });
    if (hits.length === 0) return undefined;
    let decider: RateLimitVerdict | undefined;
    const buckets = hits.map((h) => {
      let b = this.#buckets.get(h.key);
      if (!b) this.#buckets.set(h.key, (b = { tokens: h.requests, windowStart: now }));
      if (now - b.windowStart >= h.unitMs) {
        b.tokens = h.requests;
        b.windowStart = now - ((now - b.windowStart) % h.unitMs);
      }
      const v: RateLimitVerdict = {
        allowed: b.tokens > 0,
        limit: h.requests,
        remaining: b.tokens,
        resetSeconds: Math.max(1, Math.ceil((b.windowStart + h.unitMs - now) / 1000)),
      };
      if (!decider || v.remaining < decider.remaining) decider = v;
      return b;
    });
    const d = decider as RateLimitVerdict;
    if (!d.allowed) return { ...d, remaining: 0 };
    for (const b of buckets) b.tokens--;
    return { ...d, remaining: d.remaining - 1 };
  }
}
