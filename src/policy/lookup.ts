// The datapath's policy decision, in TypeScript, over the same entries the agent writes to the
// kernel (bpf/lib/policy.h does the same with two LPM lookups). Simulation and `policy trace`
// use this, so they test the entries rather than a separate evaluator.
import { DropReason } from '../datapath/drop-reasons.js';
import { entryMatches, type PolicyMapEntry } from './entry.js';

/** Drop codes of bpf/lib/drop_reasons.h that a policy lookup produces. */
export const DROP_POLICY = DropReason.POLICY;
export const DROP_POLICY_DENY = DropReason.POLICY_DENY;

export interface LookupResult {
  verdict: 'allow' | 'deny' | 'drop';
  /** 0 when allowed, else the drop code (181 deny entry, 133 no entry). */
  code: number;
  /** The entry the verdict is attributed to. */
  entry?: PolicyMapEntry;
  /** What each lookup found: L1 with the peer identity, L2 with identity 0. */
  l1?: PolicyMapEntry;
  l2?: PolicyMapEntry;
}

/** Longest-prefix match among entries for one identity key. */
function longest(
  entries: readonly PolicyMapEntry[],
  identity: number,
  direction: number,
  protocol: number,
  port: number,
) {
  let best: PolicyMapEntry | undefined;
  for (const e of entries)
    if (entryMatches(e, identity, direction, protocol, port) && (!best || e.prefixLen > best.prefixLen))
      best = e;
  return best;
}

/**
 * Verdict for a new connection: L1 = (identity, dir, proto, port), L2 = (0, dir, proto, port).
 * Any deny wins; otherwise a match allows, attributed to the longer L4 prefix (tie: L1).
 */
export function lookup(
  entries: readonly PolicyMapEntry[],
  identity: number,
  direction: number,
  protocol: number,
  port: number,
): LookupResult {
  const l1 = identity === 0 ? undefined : longest(entries, identity, direction, protocol, port);
  const l2 = longest(entries, 0, direction, protocol, port);
  const pick = (a?: PolicyMapEntry, b?: PolicyMapEntry) => (a && (!b || a.l4Prefix >= b.l4Prefix) ? a : b);
  const found = { ...(l1 ? { l1 } : {}), ...(l2 ? { l2 } : {}) };
  if (l1?.deny || l2?.deny) {
    const entry = l1?.deny && l2?.deny ? pick(l1, l2) : l1?.deny ? l1 : l2;
    return { verdict: 'deny', code: DROP_POLICY_DENY, ...(entry ? { entry } : {}), ...found };
  }
  const entry = pick(l1, l2);
  if (entry) return { verdict: 'allow', code: 0, entry, ...found };
  return { verdict: 'drop', code: DROP_POLICY, ...found };
}
