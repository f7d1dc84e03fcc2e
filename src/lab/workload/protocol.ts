// The workload's control protocol: one JSON object per line on a unix socket, in both directions.
// Requests may carry an `id`; the answer repeats it, so many requests can share one connection.

export type ProbeProtocol = 'TCP' | 'UDP';

export interface ProbeTarget {
  ip: string;
  port: number;
  protocol: ProbeProtocol;
}

export type ControlRequest =
  | { id?: number; op: 'ping' }
  | ({
      id?: number;
      op: 'probe';
      timeoutMs?: number;
      /** TCP: send GET / and return the body. */ http?: boolean;
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
  /** With `http`: the response body. */
  body?: string;
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
