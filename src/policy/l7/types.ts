// L7 policy as the node proxy enforces it: the contract between the policy engine (which computes
// it from CiliumNetworkPolicy `toPorts[].rules`), the agent (which sends it to the proxy in
// versioned snapshots) and the proxy (which judges every request with it). Pure data, JSON-safe.
//
// Semantics (Cilium's, conformance/l7/README.md "Semantics exercised"):
// - A connection to (or from) a local endpoint on a port whose policy-map entry carries a proxy
//   port is redirected to the node proxy. The proxy finds the endpoint's PortL7Policy for the
//   connection's direction and port, then the rule sets that apply to the peer's security identity
//   (those whose `identities` include it, and those with `identities` undefined = every peer).
// - If any applicable rule set has no `http` (an L4-only allow for that peer and port), every request
//   is allowed. Otherwise a request is allowed when at least one HTTP rule of an applicable set
//   matches (rules are OR'ed, the fields of a rule AND'ed). No applicable set: denied.
// - A denied request is answered 403 "Access denied\r\n"; the connection stays usable.

/** toPorts[].rules.http[] of a CiliumNetworkPolicy, as written (validated). */
export interface HttpRule {
  /** Extended regular expression matched against the whole method (Envoy safe_regex: anchored). */
  method?: string;
  /** Extended regular expression matched against the whole path (the request target). */
  path?: string;
  /** Extended regular expression matched against the whole Host / :authority. */
  host?: string;
  /** "Name: value" (exact value) or "Name" (presence); names case-insensitive. */
  headers?: string[];
  headerMatches?: HeaderMatch[];
}

export interface HeaderMatch {
  name: string;
  /** Exact value; absent = presence only. */
  value?: string;
  /** What to do on a mismatch; absent = the rule does not match. */
  mismatch?: 'LOG' | 'ADD' | 'DELETE' | 'REPLACE';
}

/**
 * toPorts[].rules.dns[] of a CiliumNetworkPolicy (egress), as written (validated): the query name
 * must match `matchName` exactly or `matchPattern` (Cilium's wildcards: `*` alone = every name, a
 * leading `**.` = one or more labels, any other `*` = zero or more of [-a-z0-9_] within a label),
 * case-insensitively, the trailing dot implied on both sides (src/policy/l7/dns-match.ts).
 */
export interface DnsRule {
  matchName?: string;
  matchPattern?: string;
}

/** Which policy rule produced a rule set (shown in flows: "allowed by CNP ns/name ingress[0]"). */
export interface L7RuleOrigin {
  kind: 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy';
  namespace?: string;
  name: string;
  /** The policy-map cookie of the L3/L4 part (EngineOutput.cookies), for flow attribution. */
  cookie: number;
}

/** The L7 rules one allow contributes for some peers on one port. */
export interface L7RuleSet {
  /** Security identities of the peers this set applies to; undefined = every peer. */
  identities?: number[];
  /** Undefined: an L4-only allow for these peers (every request allowed). */
  http?: HttpRule[];
  /** DNS ports (parser 'dns'): undefined = an L4-only allow (every query allowed). */
  dns?: DnsRule[];
  origin: L7RuleOrigin;
}

/** One port of one endpoint in one direction whose traffic goes through the proxy. */
export interface PortL7Policy {
  /** HTTP: TCP; DNS: UDP or TCP (one policy per protocol). */
  protocol: 'TCP' | 'UDP';
  port: number;
  /** The parser the proxy runs on it: HTTP (the HTTP engine) or DNS (the DNS proxy). */
  parser: 'http' | 'dns';
  /** The proxy listener (policy-map entries of this port carry it as their proxy port). */
  proxyPort: number;
  ruleSets: L7RuleSet[];
}

export interface EndpointL7Policy {
  endpointId: number;
  namespace: string;
  pod: string;
  identity: number;
  /** The endpoint's addresses: the proxy finds the endpoint of a connection by them. */
  ips: string[];
  ingress: PortL7Policy[];
  egress: PortL7Policy[];
}

/** What the agent sends the proxy. Versions only grow; the proxy acknowledges the one it runs. */
export interface ProxySnapshot {
  version: number;
  endpoints: EndpointL7Policy[];
}
