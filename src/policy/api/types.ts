// The policy kinds weir enforces, after validation and defaulting. Validation (network-policy.ts,
// cilium-policy.ts) turns manifests into these; the engine only ever sees these shapes.
import type { DnsRule, HttpRule } from '../l7/types.js';

/** One requirement of a label selector. `source` 'any' matches labels of every source. */
export interface SelectorRequirement {
  source: string;
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values: string[];
}

/** A label selector: all requirements must hold; none = matches everything. */
export interface LabelSelector {
  requirements: SelectorRequirement[];
}

export type L4Protocol = 'TCP' | 'UDP' | 'SCTP' | 'ANY';

/** A port match: `port` 0 = every port; a string is a named port (resolved per destination pod). */
export interface PortMatch {
  protocol: L4Protocol;
  port: number | string;
  endPort?: number;
  /**
   * CNP `toPorts[].rules.http` of the port rule this port came from: the port's traffic goes
   * through the node proxy, which allows the requests these rules match (TCP, one exact or named
   * port). Undefined: L4 only.
   */
  http?: HttpRule[];
  /**
   * CNP `toPorts[].rules.dns` (egress): the port's lookups go through the node's DNS proxy, which
   * forwards the queries these rules match and answers the others REFUSED. Undefined: L4 only.
   */
  dns?: DnsRule[];
}

export interface CIDRMatch {
  cidr: string;
  except: string[];
}

export const entities = [
  'all',
  'world',
  'world-ipv4',
  'world-ipv6',
  'cluster',
  'host',
  'remote-node',
  'kube-apiserver',
  'health',
  'init',
  'unmanaged',
  'ingress',
  'none',
] as const;
export type Entity = (typeof entities)[number];

// ---- networking.k8s.io/v1 NetworkPolicy

export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: CIDRMatch;
}

export interface NetworkPolicyRule {
  /** Undefined = every peer (field absent or empty list). */
  peers?: NetworkPolicyPeer[];
  /** Empty = every port. */
  ports: PortMatch[];
}

export interface NetworkPolicy {
  kind: 'NetworkPolicy';
  namespace: string;
  name: string;
  podSelector: LabelSelector;
  policyTypes: ('Ingress' | 'Egress')[];
  ingress: NetworkPolicyRule[];
  egress: NetworkPolicyRule[];
}

// ---- cilium.io/v2 CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy

/** One ingress/egress (deny) rule. At most one L3 member is set; none set = no L3 restriction
 * when `ports` is given, and nothing selected when it is not. */
export interface CiliumPeerRule {
  endpoints?: LabelSelector[];
  entities?: Entity[];
  cidrs?: CIDRMatch[];
  /**
   * toFQDNs (egress): the addresses the DNS proxy learned for names these selectors match
   * (matchName / matchPattern, as DNS rules).
   */
  fqdns?: DnsRule[];
  /** Undefined = every port (no toPorts). */
  ports?: PortMatch[];
  /**
   * `authentication: {mode: required}` (allow rules): what the rule allows passes only once the
   * two identities authenticated each other (mTLS with their SVIDs; the datapath's weir_auth).
   */
  auth?: 'required';
}

export interface CiliumRule {
  /** Undefined for `spec`, the index for `specs[i]`. */
  specIndex?: number;
  endpointSelector: LabelSelector;
  ingress: CiliumPeerRule[];
  ingressDeny: CiliumPeerRule[];
  egress: CiliumPeerRule[];
  egressDeny: CiliumPeerRule[];
  enableDefaultDeny: { ingress: boolean; egress: boolean };
  description?: string;
}

export interface CiliumPolicy {
  kind: 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy';
  /** Set for CiliumNetworkPolicy only. */
  namespace?: string;
  name: string;
  rules: CiliumRule[];
}

export type Policy = NetworkPolicy | CiliumPolicy;
export type PolicyKind = Policy['kind'];

/** Which rule of which policy produced a policy-map entry (the datapath carries its cookie). */
export interface RuleRef {
  kind: PolicyKind | 'Builtin';
  namespace?: string;
  name: string;
  direction: 'ingress' | 'egress';
  /** Index in `specs` (Cilium policies); undefined for `spec` and NetworkPolicies. */
  specIndex?: number;
  /** Index in the ingress/egress (or ingressDeny/egressDeny) list. */
  ruleIndex: number;
  deny: boolean;
}

export function formatRuleRef(r: RuleRef): string {
  const obj = r.namespace ? `${r.namespace}/${r.name}` : r.name;
  const section = r.deny ? `${r.direction}Deny` : r.direction;
  const spec = r.specIndex !== undefined ? `specs[${r.specIndex}].` : '';
  return r.kind === 'Builtin'
    ? `${r.name} (${r.direction})`
    : `${r.kind} ${obj} ${spec}${section}[${r.ruleIndex}]`;
}
