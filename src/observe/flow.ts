// The Flow record (JSON), mirroring Hubble's flow.Flow (api/v1/flow/flow.proto) field for field where
// weir has the data, plus `weir` extras. Plain types only: the web UI bundles this file.

/**
 * Every verdict a flow carries, declared once (Hubble's flow.Verdict names), with the `action`
 * label of weir_policy_verdict_total and the word of a policy verdict's compact line. Filters,
 * `weir observe --verdict`, metrics and the UI read this table.
 *   REDIRECTED  a new connection sent to the node proxy (L7 rules)
 *   AUDIT       policy denies it but the endpoint is in policy audit mode: it passed
 *   ERROR       the proxy failed a request
 */
export const VERDICTS = {
  FORWARDED: { action: 'forwarded', word: 'ALLOWED' },
  DROPPED: { action: 'dropped', word: 'DENIED' },
  AUDIT: { action: 'audit', word: 'AUDIT' },
  REDIRECTED: { action: 'redirected', word: 'REDIRECTED' },
  ERROR: { action: 'error', word: 'ERROR' },
} as const;
export type Verdict = keyof typeof VERDICTS;
export const verdictNames = Object.keys(VERDICTS) as Verdict[];
export type TrafficDirection = 'INGRESS' | 'EGRESS' | 'TRAFFIC_DIRECTION_UNKNOWN';
export type ObservationPoint = 'FROM_ENDPOINT' | 'TO_ENDPOINT' | 'UNKNOWN_POINT';
/** Hubble's `hubble observe --type` names of the event kinds weir emits. */
export type FlowKind = 'drop' | 'policy-verdict' | 'trace' | 'l7';

export interface FlowEndpoint {
  /** Endpoint id (0: not a local endpoint). */
  ID: number;
  identity: number;
  namespace?: string;
  /** "k8s:key=value", "reserved:world", "cidr:1.2.3.4/32". */
  labels: string[];
  pod_name?: string;
}

export interface TcpFlags {
  SYN?: boolean;
  ACK?: boolean;
  FIN?: boolean;
  RST?: boolean;
  PSH?: boolean;
}

export interface FlowL4 {
  TCP?: { source_port: number; destination_port: number; flags?: TcpFlags };
  UDP?: { source_port: number; destination_port: number };
  SCTP?: { source_port: number; destination_port: number };
  ICMPv4?: { type: number; code: number };
  ICMPv6?: { type: number; code: number };
}

/** Hubble's flow.Layer7: one HTTP request or response the node proxy saw. */
export interface FlowL7 {
  type: 'REQUEST' | 'RESPONSE';
  /** Responses: from the request's first byte to the response's headers. */
  latency_ns: number;
  http?: {
    /** Responses only (0 on requests). */
    code: number;
    method: string;
    url: string;
    protocol: string;
    headers: { key: string; value: string }[];
  };
  /** Hubble's flow.DNS: a query the DNS proxy saw, or its answer. */
  dns?: {
    /** The name with its trailing dot. */
    query: string;
    /** Answers: the A/AAAA addresses. */
    ips: string[];
    /** Answers: the smallest TTL. */
    ttl: number;
    cnames: string[];
    observation_source: 'proxy';
    /** Answers: the DNS response code (0 NOERROR, 3 NXDOMAIN, 5 REFUSED, ...). */
    rcode: number;
    qtypes: string[];
    rrtypes: string[];
  };
}

/** A policy that allowed or denied the flow (Hubble's flow.Policy). */
export interface FlowPolicy {
  name: string;
  namespace?: string;
  kind: string;
  /** The rule inside the policy, e.g. "CiliumNetworkPolicy app/p ingressDeny[0]". */
  rule: string;
}

export interface Flow {
  /** RFC 3339 with nanoseconds. */
  time: string;
  uuid: string;
  verdict: Verdict;
  drop_reason?: number;
  drop_reason_desc?: string;
  /** Absent when the packet was dropped before its IP header was parsed. */
  /**
   * `encrypted` (Hubble's field): the connection travels between the nodes inside the node
   * proxies' mTLS tunnel (--encryption mtls), authenticated with the SVIDs of its identities.
   */
  IP?: { source: string; destination: string; ipVersion: 'IPv4' | 'IPv6'; encrypted?: true };
  l4?: FlowL4;
  source: FlowEndpoint;
  destination: FlowEndpoint;
  Type: 'L3_L4' | 'L7';
  /** Type L7: the request or response. */
  l7?: FlowL7;
  /** A connection redirected to the node proxy: its listener port. */
  proxy_port?: number;
  node_name: string;
  /** Monitor message type (1 drop, 4 trace, 9 policy verdict) and subtype, like Cilium's. */
  event_type: { type: number; sub_type: number };
  traffic_direction: TrafficDirection;
  trace_observation_point: ObservationPoint;
  is_reply: boolean;
  Summary: string;
  ingress_allowed_by?: FlowPolicy[];
  egress_allowed_by?: FlowPolicy[];
  ingress_denied_by?: FlowPolicy[];
  egress_denied_by?: FlowPolicy[];
  /**
   * Hubble's auth_type: the mutual authentication a dropped connection lacked (189). Hubble names
   * its SPIFFE-certificate handshake SPIRE; weir's is the same kind with its own CA.
   */
  auth_type?: 'SPIRE';
  interface?: { index: number };
  weir: {
    type: FlowKind;
    trace_subtype?: 'open' | 'close';
    /** Bytes of the packet (drop, policy-verdict). */
    len?: number;
    /** Connection counters (trace). */
    packets_fwd?: number;
    bytes_fwd?: number;
    packets_rev?: number;
    bytes_rev?: number;
    /** A close trace made by the agent's conntrack GC (the entry expired). */
    expired?: boolean;
    /** Sent by the node proxy (its upstream connection to the destination). */
    from_proxy?: boolean;
    /** L7: the reason the proxy gave for a denied or failed request ('l7_policy_denied', ...). */
    detail?: string;
    /** L7 through a Gateway or a mesh route: the route rule that served the request. */
    route?: { kind: string; namespace: string; name: string; rule: number; ruleName?: string };
    /** L7 through a route: the backend chosen ("ns/name:port"). */
    backend?: string;
  };
}

export type LostSource = 'PERF_EVENT_RING_BUFFER' | 'OBSERVER_EVENTS_QUEUE' | 'HUBBLE_RING_BUFFER';

/** One line of GET /v1/flows (Hubble's GetFlowsResponse oneof). */
export interface LostEvents {
  source: LostSource;
  num_events_lost: number;
}
export type FlowsLine = { flow: Flow } | { lost_events: LostEvents };

/** Monitor message types (Cilium's pkg/monitor/api) used in event_type.type (129: access log, L7). */
export const EVENT_TYPE = { drop: 1, trace: 4, 'policy-verdict': 9, l7: 129 } as const;
