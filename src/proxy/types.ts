// The node proxy's internal contract: what the process side (transparent listeners, the agent's
// snapshots, identities from the ipcache) hands to a protocol handler (HTTP today; DNS and Gateway
// routing later), how the handler reaches upstreams, and the L7 records it emits (which the agent
// turns into flows and Hubble metrics).
import type { Socket } from 'node:net';
import type { L7RuleOrigin, PortL7Policy } from '../policy/l7/types.js';

export interface Address {
  ip: string;
  port: number;
}

/** One redirected connection, as the process side accepted and identified it. */
export interface ProxiedConnection {
  /** The direction of the redirecting endpoint's policy: ingress = the endpoint is the server. */
  direction: 'ingress' | 'egress';
  /** The local endpoint whose policy redirected the connection. */
  endpoint: { id: number; identity: number; namespace: string; pod: string };
  /** The peer's security identity (ipcache), the one the rule sets are judged against. */
  remoteIdentity: number;
  /** The client as it connected (the original source). */
  src: Address;
  /** The original destination (transparent: the accepted socket's local address). */
  dst: Address;
  /**
   * The port's L7 policy as of now (snapshots change while connections live: look it up per
   * request). Undefined: the endpoint or port is no longer redirected, requests are denied.
   */
  policy(): PortL7Policy | undefined;
}

/**
 * Opens the upstream connection of a proxied connection: to `conn.dst`, transparently from
 * `conn.src.ip` (so the destination's policy and application see the original client). The socket
 * may still be connecting when returned; writes are queued until it is connected.
 */
export type UpstreamConnector = (conn: ProxiedConnection) => Socket;

/** An HTTP request or response the proxy saw: becomes an L7 flow (Hubble's Flow.l7). */
export interface L7Record {
  /** Wall clock, ns since the epoch (as a decimal string: beyond 2^53). */
  timeNs: string;
  type: 'REQUEST' | 'RESPONSE';
  direction: 'ingress' | 'egress';
  endpointId: number;
  /** FORWARDED: sent upstream / relayed back; DENIED: answered by the proxy (403); ERROR: 5xx of the proxy. */
  verdict: 'FORWARDED' | 'DENIED' | 'ERROR';
  source: Address & { identity: number };
  destination: Address & { identity: number };
  http?: {
    method: string;
    /** As Hubble shows it: scheme://host/path?query. */
    url: string;
    /** 'HTTP/1.1', 'HTTP/2'. */
    protocol: string;
    /** Responses only. */
    code?: number;
    /** Selected headers (never credentials: authorization, cookie, proxy-authorization are redacted). */
    headers: { key: string; value: string }[];
  };
  /** The transport of the proxied traffic (absent: TCP). */
  transport?: 'TCP' | 'UDP';
  /** DNS queries and answers (the DNS proxy): Hubble's Flow.l7.dns. */
  dns?: {
    /** The query name as asked, with the trailing dot. */
    query: string;
    qtypes: string[];
    /** Responses. */
    rcode?: string;
    ips?: string[];
    /** The smallest TTL of the answer's records. */
    ttl?: number;
    rrtypes?: string[];
    /** The CNAME targets of the answer (with their trailing dot). */
    cnames?: string[];
  };
  /** Responses: time from the request's first byte to the response's headers. */
  latencyNs?: number;
  /** The rule that allowed the request, or the port's policy that denied it. */
  policy?: L7RuleOrigin;
  /** Why it was denied or failed, machine-readable ('l7_policy_denied', 'upstream_reset', ...). */
  detail?: string;
  /** Gateway API: the route rule that served the request. */
  route?: { kind: string; namespace: string; name: string; rule: number; ruleName?: string };
  /** Gateway API: the backend chosen ("ns/name:port"). */
  backend?: string;
}

/**
 * One finished request, for the access log (Envoy's access log entry): written once per request
 * when it ends — its response's last byte, a local reply, a reset — with what was actually sent.
 * A protocol error before any request was parsed gives one too (empty method and path).
 */
export interface AccessRecord {
  /** Wall clock when the request's head arrived, ns since the epoch (a decimal string). */
  startNs: string;
  /** From the request's arrival to its end. */
  durationNs: number;
  direction: 'ingress' | 'egress';
  endpoint: { id: number; namespace: string; pod: string };
  source: Address & { identity: number };
  destination: Address & { identity: number };
  protocol: 'HTTP/1.1' | 'HTTP/2';
  method: string;
  /** The request target as sent (path and query). */
  path: string;
  /** Host / :authority as sent ('' when absent). */
  authority: string;
  /** The status sent to the client; 0 when none was (the client went away first). */
  code: number;
  verdict: L7Record['verdict'];
  /** Envoy's response flags: UF, UC, UT, DC, DPE, SI (empty: none). */
  flags: string[];
  /** Why (Envoy's response code details): 'l7_policy_denied', 'upstream_reset', ... */
  detail?: string;
  /** Request body bytes received from the client, response body bytes sent to it. */
  bytesReceived: number;
  bytesSent: number;
  /** The request was sent to this upstream (the original destination). */
  upstream?: Address;
  /** The rule set that allowed the request, or the port's policy that denied it. */
  policy?: L7RuleOrigin;
  /** The index of the HTTP rule (in its toPorts[].rules.http) that allowed the request. */
  httpRule?: number;
  userAgent?: string;
  requestId?: string;
}
