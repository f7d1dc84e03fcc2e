// The workload's control protocol: one JSON object per line on a unix socket, in both directions.
// Requests may carry an `id`; the answer repeats it, so many requests can share one connection.

export type ProbeProtocol = 'TCP' | 'UDP';

export interface ProbeTarget {
  ip: string;
  port: number;
  protocol: ProbeProtocol;
}

/** One HTTP/1.1 request a TCP probe sends on its new connection (L7 conformance). */
export interface HttpProbeRequest {
  method: string;
  /** The request target, sent as is. */
  path: string;
  /** The Host header, sent verbatim. */
  host: string;
  /** Further header fields in order, names exactly as written. */
  headers: [string, string][];
  /** How long the answer may take once connected (default 5000 ms). */
  responseTimeoutMs?: number;
}

/** What the lab's HTTP server received, as it answers it (header `x-weir-request`, base64url JSON). */
export interface RequestEcho {
  method: string;
  path: string;
  host: string;
  /** Lower-cased name -> value (repeated fields joined with ', '). */
  headers: Record<string, string>;
}

/** The response header carrying the server's RequestEcho. */
export const REQUEST_ECHO_HEADER = 'x-weir-request';

export type ControlRequest =
  | { id?: number; op: 'ping' }
  | ({
      id?: number;
      op: 'probe';
      timeoutMs?: number;
      /** TCP: send GET / and return the body. */ http?: boolean;
      /** TCP: send this request instead and return the response (status, body, the server's echo). */
      request?: HttpProbeRequest;
    } & ProbeTarget);

export interface PingReply {
  id?: number;
  ok: true;
  name: string;
  pid: number;
}

export interface ProbeResult {
  ok: boolean;
  /** errno-style code of a failed probe: ETIMEDOUT, ECONNREFUSED, EHOSTUNREACH, ... */
  error?: string;
  ms: number;
  /** With `http`: the response body. With `request`: its first 256 bytes. */
  body?: string;
  /** With `request`: true once the TCP handshake completed (a failure after it is not a drop). */
  connected?: boolean;
  /** With `request`: the response's status code. */
  status?: number;
  /** With `request`: what the lab's server says it received (absent: the answer was not its own). */
  echo?: RequestEcho;
}

export type ControlReply =
  PingReply | ({ id?: number } & ProbeResult) | { id?: number; ok: false; error: string };

/** What a workload serves and where it listens for control requests (passed as argv[2], JSON). */
export interface WorkloadConfig {
  /** Named in HTTP answers and logs: "x/a", "node", "ext:db". */
  name: string;
  socket: string;
  /** cgroup v2 directory to join before opening any socket. */
  cgroup?: string;
  ports: { port: number; protocol: ProbeProtocol }[];
  /**
   * The lab's cluster DNS server (pod kube-system/coredns): serves DNS on 53/UDP and 53/TCP from
   * the zone file the node's agent writes (reloaded when it changes) instead of echoing there.
   */
  dns?: { zoneFile: string };
}
