// Policies -> "sections": which endpoints a policy section applies to (subject), in which
// direction, whether it puts them into default-deny, and its rules with peers resolved to
// identity sets. Kind-specific scoping (NetworkPolicy namespaces, CNP vs CCNP) ends here.
import { NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX } from '../identity/pod-labels.js';
import { andSelectors, selectorMentions } from './api/selector.js';
import type {
  CiliumPeerRule,
  CiliumPolicy,
  LabelSelector,
  NetworkPolicy,
  NetworkPolicyPeer,
  Policy,
  PortMatch,
  RuleRef,
} from './api/types.js';
import { DIR_EGRESS, DIR_INGRESS, type Direction } from './entry.js';
import type { PeerSet, Universe } from './universe.js';

export interface CompiledRule {
  ref: RuleRef;
  cookie: number;
  /** Position in the sorted rule list: breaks ties between rules deterministically. */
  order: number;
  deny: boolean;
  /** `authentication: {mode: required}`: its entries carry the auth flag (POLICY_F_AUTH). */
  auth?: boolean;
  peers: PeerSet;
  /** 'any' = every port of every protocol. */
  ports: 'any' | PortMatch[];
}

export interface Section {
  subject: LabelSelector;
  direction: Direction;
  /** Does this section switch its endpoints to default-deny in this direction? */
  isolates: boolean;
  rules: CompiledRule[];
}

const nsIs = (ns: string): LabelSelector => ({
  requirements: [{ source: 'k8s', key: NAMESPACE_LABEL, operator: 'In', values: [ns] }],
});
const hasNs: LabelSelector = {
  requirements: [{ source: 'k8s', key: NAMESPACE_LABEL, operator: 'Exists', values: [] }],
};

/** The selector with its keys moved to the namespace-label copies pods carry. */
function asNamespaceSelector(sel: LabelSelector): LabelSelector {
  return {
    requirements: [
      ...hasNs.requirements,
      ...sel.requirements.map((r) => ({ ...r, source: 'k8s', key: NAMESPACE_LABELS_PREFIX + r.key })),
    ],
  };
}

export function ruleRefKey(r: RuleRef): string {
  return [
    r.kind,
    r.namespace ?? '',
    r.name,
    r.specIndex ?? '',
    r.direction,
    r.deny ? 'deny' : 'allow',
    r.ruleIndex,
  ].join('|');
}

/** Stable 32-bit cookie for a rule: FNV-1a of its key, so it survives unrelated policy changes. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export const LOCALHOST_REF: RuleRef = {
  kind: 'Builtin',
  name: 'allow-localhost',
  direction: 'ingress',
  ruleIndex: 0,
  deny: false,
};

/** Cookie 0 is "no rule" (the allow-all entry of an endpoint not enforced in a direction). */
export class CookieJar {
  readonly byCookie = new Map<number, RuleRef>();
  private readonly byKey = new Map<string, number>();

  cookie(ref: RuleRef): number {
    const key = ruleRefKey(ref);
    const have = this.byKey.get(key);
    if (have !== undefined) return have;
    let c = fnv1a(key) || 1;
    while (this.byCookie.has(c)) c = (c + 1) >>> 0 || 1;
    this.byCookie.set(c, ref);
    this.byKey.set(key, c);
    return c;
  }
}

export function compilePolicies(policies: readonly Policy[], u: Universe, jar: CookieJar): Section[] {
  // Sorted so that cookies collide and ties break the same way whatever the input order.
  const sorted = [...policies].sort((a, b) =>
    `${a.kind}|${'namespace' in a ? (a.namespace ?? '') : ''}|${a.name}`.localeCompare(
      `${b.kind}|${'namespace' in b ? (b.namespace ?? '') : ''}|${b.name}`,
    ),
  );
  // Cookies are assigned in a fixed order (sorted keys), so hash collisions resolve the same way.
  const sections: Section[] = [];
  for (const p of sorted)
    sections.push(...(p.kind === 'NetworkPolicy' ? compileNetworkPolicy(p, u) : compileCilium(p, u)));
  const rules = sections
    .flatMap((s) => s.rules)
    .sort((a, b) => ruleRefKey(a.ref).localeCompare(ruleRefKey(b.ref)));
  rules.forEach((r, i) => {
    r.order = i;
    r.cookie = jar.cookie(r.ref);
  });
  jar.cookie(LOCALHOST_REF);
  return sections;
}

function compileNetworkPolicy(p: NetworkPolicy, u: Universe): Section[] {
  const subject = andSelectors(nsIs(p.namespace), p.podSelector);
  const peerSet = (peer: NetworkPolicyPeer): readonly number[] => {
    if (peer.ipBlock) return u.ipBlock(peer.ipBlock);
    // podSelector alone: the policy's namespace; namespaceSelector: pods of matching namespaces.
    const ns = peer.namespaceSelector ? asNamespaceSelector(peer.namespaceSelector) : nsIs(p.namespace);
    return u.select(andSelectors(ns, peer.podSelector ?? { requirements: [] }));
  };
  const out: Section[] = [];
  for (const [type, direction, list] of [
    ['Ingress', DIR_INGRESS, p.ingress],
    ['Egress', DIR_EGRESS, p.egress],
  ] as const) {
    // Rules of a direction missing from policyTypes are ignored, as the API defines.
    if (!p.policyTypes.includes(type)) continue;
    out.push({
      subject,
      direction,
      isolates: true,
      rules: list.map((r, i) => ({
        ref: {
          kind: 'NetworkPolicy',
          namespace: p.namespace,
          name: p.name,
          direction: type === 'Ingress' ? 'ingress' : 'egress',
          ruleIndex: i,
          deny: false,
        },
        cookie: 0,
        order: 0,
        deny: false,
        peers: r.peers ? union(r.peers.map(peerSet)) : 'any',
        ports: r.ports.length === 0 ? 'any' : r.ports,
      })),
    });
  }
  return out;
}

function compileCilium(p: CiliumPolicy, u: Universe): Section[] {
  const namespaced = p.kind === 'CiliumNetworkPolicy';
  const ns = p.namespace ?? 'default';
  // A CNP applies to its own namespace only; a namespace named in its endpointSelector is
  // overwritten (Cilium logs a warning and does the same).
  // As Cilium (k8s/apis/cilium.io/utils getEndpointSelector): a selector of reserved:init (an
  // endpoint whose labels are not known yet, so no namespace label either) is not scoped.
  const scopeSubject = (sel: LabelSelector) =>
    sel.requirements.some((r) => r.source === 'reserved' && r.key === 'init')
      ? sel
      : namespaced
        ? andSelectors(nsIs(ns), { requirements: sel.requirements.filter((r) => r.key !== NAMESPACE_LABEL) })
        : andSelectors(hasNs, sel);
  // Peer selectors: CNP ones are namespace-local unless they name the namespace; an empty CCNP
  // one means "every pod" (not the host or world).
  const scopePeer = (sel: LabelSelector) => {
    // Selectors naming reserved labels (reserved:host) are not pod selectors: no scoping.
    if (selectorMentions(sel, NAMESPACE_LABEL) || sel.requirements.some((r) => r.source === 'reserved'))
      return sel;
    if (namespaced) return andSelectors(nsIs(ns), sel);
    return sel.requirements.length === 0 ? hasNs : sel;
  };
  const peersOf = (r: CiliumPeerRule): PeerSet => {
    if (r.endpoints) return union(r.endpoints.map((s) => u.select(scopePeer(s))));
    if (r.entities)
      return r.entities.includes('all')
        ? 'any'
        : union(r.entities.map((e) => u.entity(e) as readonly number[]));
    if (r.cidrs) return union(r.cidrs.map((m) => u.cidr(m)));
    if (r.fqdns) return union(r.fqdns.map((f) => u.fqdn(f)));
    // Only toPorts: no L3 restriction. Nothing at all: the rule selects nothing.
    return r.ports ? 'any' : [];
  };
  const out: Section[] = [];
  for (const rule of p.rules) {
    const subject = scopeSubject(rule.endpointSelector);
    for (const [dir, direction, allow, deny] of [
      ['ingress', DIR_INGRESS, rule.ingress, rule.ingressDeny],
      ['egress', DIR_EGRESS, rule.egress, rule.egressDeny],
    ] as const) {
      if (allow.length === 0 && deny.length === 0) continue;
      const mk = (r: CiliumPeerRule, i: number, isDeny: boolean): CompiledRule => ({
        ref: {
          kind: p.kind,
          ...(namespaced ? { namespace: ns } : {}),
          name: p.name,
          direction: dir,
          ...(rule.specIndex !== undefined ? { specIndex: rule.specIndex } : {}),
          ruleIndex: i,
          deny: isDeny,
        },
        cookie: 0,
        order: 0,
        deny: isDeny,
        ...(r.auth === 'required' && !isDeny ? { auth: true } : {}),
        peers: peersOf(r),
        ports: r.ports ?? 'any',
      });
      out.push({
        subject,
        direction,
        isolates: rule.enableDefaultDeny[dir],
        rules: [...allow.map((r, i) => mk(r, i, false)), ...deny.map((r, i) => mk(r, i, true))],
      });
    }
  }
  return out;
}

function union(sets: readonly (readonly number[])[]): number[] {
  return [...new Set(sets.flat())].sort((a, b) => a - b);
}
