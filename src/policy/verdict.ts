// The verdict on one new connection between two peers of a computed policy (EngineOutput): the
// egress of the source endpoint, then the ingress of the destination endpoint, each decided by
// lookup() over that endpoint's entries — the datapath's own decision (bpf/lib/policy.h). Unlike
// trace.ts this answers many connections fast: each endpoint's entries are indexed by identity
// once (an LPM key starts with the identity, so only that identity's entries and identity 0's can
// match), and the answer is small: allowed or denied, and the rule that decides.
import { formatRuleRef, type RuleRef } from './api/types.js';
import type { EndpointPolicy, EngineOutput } from './engine.js';
import { DIR_EGRESS, DIR_INGRESS, entryMatches, type Direction, type PolicyMapEntry } from './entry.js';

/** A connection's end: a local endpoint (its id) or a peer that enforces nothing (world, host). */
export interface VerdictPeer {
  identity: number;
  endpointId?: number;
}

export interface SideVerdict {
  allowed: boolean;
  /** The policy map of this side decided (false: the endpoint enforces nothing in this direction). */
  enforced: boolean;
  /** The rule of the deciding entry (absent: default deny, or not enforced). */
  rule?: RuleRef;
  /** Denied because the endpoint fails closed (its policy did not fit). */
  failClosed?: boolean;
  /** Allowed through the node proxy (L7 rules judge each request). */
  proxy?: boolean;
}

export interface ConnectionVerdict {
  allowed: boolean;
  egress?: SideVerdict;
  ingress?: SideVerdict;
}

/**
 * Entries by identity, built once per entry array (endpoints selected alike share one). With
 * `peers`, only the entries of those identities (and identity 0) are kept: a policy with thousands
 * of CIDR peers is scanned once, not indexed, when only pods are asked about.
 */
export class EntryIndex {
  readonly #byEntries = new WeakMap<readonly PolicyMapEntry[], Map<number, PolicyMapEntry[]>>();
  constructor(private readonly peers?: ReadonlySet<number>) {}

  of(entries: readonly PolicyMapEntry[]): Map<number, PolicyMapEntry[]> {
    let idx = this.#byEntries.get(entries);
    if (!idx) {
      idx = new Map();
      const peers = this.peers;
      for (const e of entries) {
        if (peers && e.identity !== 0 && !peers.has(e.identity)) continue;
        const list = idx.get(e.identity);
        if (list) list.push(e);
        else idx.set(e.identity, [e]);
      }
      this.#byEntries.set(entries, idx);
    }
    return idx;
  }
}

const anyPeer = new EntryIndex();

const none: PolicyMapEntry[] = [];

/** One side's verdict: `pol`'s lookup of `peer` in `dir`. */
export function sideVerdict(
  pol: EndpointPolicy,
  cookies: EngineOutput['cookies'],
  peer: number,
  dir: Direction,
  proto: number,
  port: number,
  index: EntryIndex = anyPeer,
): SideVerdict {
  const enforced = dir === DIR_INGRESS ? pol.ingressEnforced : pol.egressEnforced;
  if (pol.failClosed) return { allowed: false, enforced: true, failClosed: true };
  const idx = index.of(pol.entries);
  // lookup() over this identity's entries and identity 0's, without joining the two lists.
  const res = lookupSplit(
    peer === 0 ? none : (idx.get(peer) ?? none),
    idx.get(0) ?? none,
    peer,
    dir,
    proto,
    port,
  );
  const rule = res.entry ? cookies.get(res.entry.cookie) : undefined;
  const out: SideVerdict = { allowed: res.allowed, enforced };
  if (rule) out.rule = rule;
  if (res.allowed && res.entry?.proxyPort) out.proxy = true;
  return out;
}

function longestIn(
  list: readonly PolicyMapEntry[],
  identity: number,
  dir: Direction,
  proto: number,
  port: number,
): PolicyMapEntry | undefined {
  let best: PolicyMapEntry | undefined;
  for (const e of list)
    if (entryMatches(e, identity, dir, proto, port) && (!best || e.prefixLen > best.prefixLen)) best = e;
  return best;
}

/** lookup()'s precedence (lookup.ts, bpf/lib/policy.h) over L1 = `mine`, L2 = `any`. */
function lookupSplit(
  mine: readonly PolicyMapEntry[],
  any: readonly PolicyMapEntry[],
  peer: number,
  dir: Direction,
  proto: number,
  port: number,
): { allowed: boolean; entry?: PolicyMapEntry } {
  const l1 = peer === 0 ? undefined : longestIn(mine, peer, dir, proto, port);
  const l2 = longestIn(any, 0, dir, proto, port);
  const pick = (a?: PolicyMapEntry, b?: PolicyMapEntry) => (a && (!b || a.l4Prefix >= b.l4Prefix) ? a : b);
  if (l1?.deny || l2?.deny) {
    const entry = l1?.deny && l2?.deny ? pick(l1, l2) : l1?.deny ? l1 : l2;
    return entry ? { allowed: false, entry } : { allowed: false };
  }
  const entry = pick(l1, l2);
  return entry ? { allowed: true, entry } : { allowed: false };
}

function sideText(dir: 'egress' | 'ingress', s: SideVerdict): string {
  if (s.failClosed) return `${dir}: fail closed (policy map overflow)`;
  if (s.rule) return formatRuleRef(s.rule) + (s.proxy ? ' (L7: through the proxy)' : '');
  return s.allowed ? `${dir}: not enforced` : `${dir}: default deny`;
}

/** The verdict on a new connection from `src` to `dst` on proto/port (IPPROTO_*, host order). */
export function connectionVerdict(
  out: EngineOutput,
  src: VerdictPeer,
  dst: VerdictPeer,
  proto: number,
  port: number,
  index?: EntryIndex,
): ConnectionVerdict {
  const srcPol = src.endpointId === undefined ? undefined : out.endpoints.get(src.endpointId);
  const dstPol = dst.endpointId === undefined ? undefined : out.endpoints.get(dst.endpointId);
  const v: ConnectionVerdict = { allowed: true };
  if (srcPol) {
    v.egress = sideVerdict(srcPol, out.cookies, dst.identity, DIR_EGRESS, proto, port, index);
    if (!v.egress.allowed) {
      v.allowed = false;
      return v;
    }
  }
  if (dstPol) {
    v.ingress = sideVerdict(dstPol, out.cookies, src.identity, DIR_INGRESS, proto, port, index);
    if (!v.ingress.allowed) v.allowed = false;
  }
  return v;
}

/**
 * The deciding rule in words: the denying side's (egress is judged first), or for an allowed
 * connection the rules of the sides that enforce ("… + …"), or "not enforced".
 */
export function verdictRule(v: ConnectionVerdict): string {
  if (v.egress && !v.egress.allowed) return sideText('egress', v.egress);
  if (v.ingress && !v.ingress.allowed) return sideText('ingress', v.ingress);
  const parts: string[] = [];
  if (v.egress?.enforced) parts.push(sideText('egress', v.egress));
  if (v.ingress?.enforced) parts.push(sideText('ingress', v.ingress));
  return parts.length > 0 ? parts.join(' + ') : 'not enforced';
}
