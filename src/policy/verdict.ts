// The verdict on one new connection between two peers of a computed policy (EngineOutput): the
// egress of the source endpoint, then the ingress of the destination endpoint, each decided by
// lookup() over that endpoint's entries — the datapath's own decision (bpf/lib/policy.h). Unlike
// trace.ts this answers many connections fast: each endpoint's entries are indexed by identity
// once (an LPM key starts with the identity, so only that identity's entries and identity 0's can
// match), and the answer is small: allowed or denied, and the rule that decides.
import { formatRuleRef, type RuleRef } from './api/types.js';
import type { EndpointPolicy, EngineOutput } from './engine.js';
import { DIR_EGRESS, DIR_INGRESS, type Direction, type PolicyMapEntry } from './entry.js';
import { lookup } from './lookup.js';

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
  /** The deciding rule in words: the denying side's, or the allowing rules of enforced sides. */
  rule: string;
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
  const mine = peer === 0 ? none : (idx.get(peer) ?? none);
  const any = idx.get(0) ?? none;
  const res = lookup(
    mine.length === 0 ? any : any.length === 0 ? mine : [...mine, ...any],
    peer,
    dir,
    proto,
    port,
  );
  const rule = res.entry ? cookies.get(res.entry.cookie) : undefined;
  return {
    allowed: res.verdict === 'allow',
    enforced,
    ...(rule ? { rule } : {}),
    ...(res.verdict === 'allow' && res.entry?.proxyPort ? { proxy: true } : {}),
  };
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
  const egress = srcPol && sideVerdict(srcPol, out.cookies, dst.identity, DIR_EGRESS, proto, port, index);
  if (egress && !egress.allowed) return { allowed: false, egress, rule: sideText('egress', egress) };
  const ingress = dstPol && sideVerdict(dstPol, out.cookies, src.identity, DIR_INGRESS, proto, port, index);
  if (ingress && !ingress.allowed)
    return { allowed: false, ...(egress ? { egress } : {}), ingress, rule: sideText('ingress', ingress) };
  // Allowed: the rules of the sides that enforce (a side that does not names no rule).
  const parts: string[] = [];
  if (egress?.enforced) parts.push(sideText('egress', egress));
  if (ingress?.enforced) parts.push(sideText('ingress', ingress));
  return {
    allowed: true,
    ...(egress ? { egress } : {}),
    ...(ingress ? { ingress } : {}),
    rule: parts.length > 0 ? parts.join(' + ') : 'not enforced',
  };
}
