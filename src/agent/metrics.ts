// The agent's Prometheus metrics (prom-client), named like Cilium's where Cilium has one
// (cilium_endpoint_regeneration_time_stats_seconds -> weir_endpoint_regeneration_time_stats_seconds)
// and like Hubble's for flows (hubble_flows_processed_total, ...). Counters the datapath keeps
// (weir_metrics map) and loss counters are read at scrape time from the bound sources.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { reasonText } from '../datapath/drop-reasons.js';
import type { MetricsEntry } from '../datapath/maps/metrics/index.js';

/** Where scrape-time metrics come from (bound once the datapath and flow pipeline run). */
export interface MetricSources {
  datapathCounters?: () => MetricsEntry[];
  lostEvents?: () => Record<string, number>;
  endpoints?: () => number;
  /** Folds the flow pipeline's raw-record counts into the flow counters (RawFlowCounters). */
  rawFlows?: () => void;
  /** Folds the counts of the proxy's compact HTTP record lines into the flow and HTTP metrics (l7-lines.ts). */
  l7Lines?: () => void;
  /** Mutual authentication: handshakes made, and the auth listener's accepted/refused connections. */
  auth?: () =>
    | { handshakes: { ok: number; failed: number }; accepted: number; refused: Record<string, number> }
    | undefined;
}

/** hubble_http_request_duration_seconds' buckets: Prometheus' defaults, as Hubble's histogram uses. */
export const HTTP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

export class AgentMetrics {
  readonly registry = new Registry();
  readonly sources: MetricSources = {};
  readonly regenerations = new Counter({
    name: 'weir_endpoint_regenerations_total',
    help: 'Policy regenerations of all endpoints, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly regenerationSeconds = new Histogram({
    name: 'weir_endpoint_regeneration_time_stats_seconds',
    help: 'Time to compute and write the policy of all endpoints',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly mapEntriesWritten = new Counter({
    name: 'weir_policy_map_entries_written_total',
    help: 'Policy and ipcache map entries written or removed by regenerations',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });
  readonly policyMapPressure = new Gauge({
    name: 'weir_bpf_map_pressure',
    help: 'Fill level of a BPF map (entries / max entries); policy maps per endpoint',
    labelNames: ['map_name'] as const,
    registers: [this.registry],
  });
  readonly policyMapOverflows = new Counter({
    name: 'weir_policy_map_overflow_total',
    help: "Regenerations in which an endpoint's policy did not fit its map (the endpoint fails closed)",
    labelNames: ['endpoint'] as const,
    registers: [this.registry],
  });
  readonly endpointState = new Gauge({
    name: 'weir_endpoint_state',
    help: 'Endpoints by state',
    labelNames: ['endpoint_state'] as const,
    registers: [this.registry],
  });
  readonly identities = new Gauge({
    name: 'weir_identity',
    help: 'Security identities allocated by this agent',
    registers: [this.registry],
  });
  readonly policies = new Gauge({
    name: 'weir_policy',
    help: 'Policy objects applied to this agent',
    registers: [this.registry],
  });
  readonly mapOpErrors = new Counter({
    name: 'weir_bpf_map_ops_total',
    help: 'BPF map writes of the agent, by map, operation and outcome (success or fail)',
    labelNames: ['map_name', 'operation', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly flowsProcessed = new Counter({
    name: 'hubble_flows_processed_total',
    help: 'Flows processed by the flow pipeline, by type, subtype and verdict',
    labelNames: ['type', 'subtype', 'verdict'] as const,
    registers: [this.registry],
    collect: () => {
      this.sources.rawFlows?.();
      this.sources.l7Lines?.();
    },
  });
  readonly hubbleDrops = new Counter({
    name: 'hubble_drop_total',
    help: 'Dropped packets seen by the flow pipeline, by drop reason and protocol',
    labelNames: ['reason', 'protocol'] as const,
    registers: [this.registry],
    collect: () => this.sources.rawFlows?.(),
  });
  readonly policyVerdicts = new Counter({
    name: 'weir_policy_verdict_total',
    help: 'Policy verdicts of new connections, by direction, action and match (policy: a rule decided; none: default)',
    labelNames: ['direction', 'action', 'match'] as const,
    registers: [this.registry],
    collect: () => this.sources.rawFlows?.(),
  });
  // Hubble's `http` metrics (pkg/hubble/metrics/http, v1): requests from REQUEST flows, responses
  // and their latency from RESPONSE flows; reporter = client (egress proxy) or server (ingress).
  readonly httpRequests = new Counter({
    name: 'hubble_http_requests_total',
    help: 'HTTP requests the node proxy saw (L7 REQUEST flows), by method, protocol and reporter',
    labelNames: ['method', 'protocol', 'reporter'] as const,
    registers: [this.registry],
    collect: () => this.sources.l7Lines?.(),
  });
  readonly httpResponses = new Counter({
    name: 'hubble_http_responses_total',
    help: 'HTTP responses the node proxy relayed or gave (L7 RESPONSE flows), by method, protocol, status and reporter',
    labelNames: ['method', 'protocol', 'status', 'reporter'] as const,
    registers: [this.registry],
    collect: () => this.sources.l7Lines?.(),
  });
  // Hubble's `dns` metrics (pkg/hubble/metrics/dns): queries from REQUEST flows, responses and
  // their record types from RESPONSE flows of the DNS proxy.
  readonly dnsQueries = new Counter({
    name: 'hubble_dns_queries_total',
    help: 'DNS queries the DNS proxy saw (L7 REQUEST flows), by rcode (empty), query types and addresses returned (empty)',
    labelNames: ['rcode', 'qtypes', 'ips_returned'] as const,
    registers: [this.registry],
  });
  readonly dnsResponses = new Counter({
    name: 'hubble_dns_responses_total',
    help: 'DNS answers the DNS proxy relayed or gave (L7 RESPONSE flows), by rcode, query types and addresses returned',
    labelNames: ['rcode', 'qtypes', 'ips_returned'] as const,
    registers: [this.registry],
  });
  readonly dnsResponseTypes = new Counter({
    name: 'hubble_dns_response_types_total',
    help: 'Records in DNS answers by type and query types',
    labelNames: ['type', 'qtypes'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'hubble_http_request_duration_seconds',
    help: "Time from a request's arrival at the node proxy to its response's headers, by method and reporter",
    labelNames: ['method', 'reporter'] as const,
    buckets: [...HTTP_DURATION_BUCKETS],
    registers: [this.registry],
    collect: () => this.sources.l7Lines?.(),
  });
  readonly lostEvents = this.#scraped(
    new Counter({
      name: 'hubble_lost_events_total',
      help: 'Flow events lost, by where (PERF_EVENT_RING_BUFFER: kernel ring full; OBSERVER_EVENTS_QUEUE: shed by the agent)',
      labelNames: ['source'] as const,
      registers: [this.registry],
    }),
    (c) => {
      for (const [source, n] of Object.entries(this.sources.lostEvents?.() ?? {})) c.inc({ source }, n);
    },
  );
  readonly dropCount = this.#datapathCounter(
    'weir_drop_count_total',
    'Packets dropped by the datapath',
    true,
    'packets',
  );
  readonly dropBytes = this.#datapathCounter(
    'weir_drop_bytes_total',
    'Bytes dropped by the datapath',
    true,
    'bytes',
  );
  readonly forwardCount = this.#datapathCounter(
    'weir_forward_count_total',
    'Packets forwarded by the datapath',
    false,
    'packets',
  );
  readonly forwardBytes = this.#datapathCounter(
    'weir_forward_bytes_total',
    'Bytes forwarded by the datapath',
    false,
    'bytes',
  );
  readonly authHandshakes = this.#scraped(
    new Counter({
      name: 'weir_auth_handshakes_total',
      help: 'mTLS handshakes this agent made for identity pairs a policy requires authentication of, by outcome',
      labelNames: ['outcome'] as const,
      registers: [this.registry],
    }),
    (c) => {
      const a = this.sources.auth?.();
      if (!a) return;
      c.inc({ outcome: 'ok' }, a.handshakes.ok);
      c.inc({ outcome: 'failed' }, a.handshakes.failed);
    },
  );
  readonly authListener = this.#scraped(
    new Counter({
      name: 'weir_auth_listener_connections_total',
      help: "Connections to the node's auth listener: accepted, or refused by reason (untrusted, wrong-identity, revoked, …)",
      labelNames: ['result'] as const,
      registers: [this.registry],
    }),
    (c) => {
      const a = this.sources.auth?.();
      if (!a) return;
      c.inc({ result: 'accepted' }, a.accepted);
      for (const [reason, n] of Object.entries(a.refused)) c.inc({ result: reason }, n);
    },
  );
  /** The CA node: SVID requests of other nodes (POST /v1/auth/svids), by result. */
  readonly authSvidRequests = new Counter({
    name: 'weir_auth_svid_requests_total',
    help: "Other nodes' SVID requests to the CA (the first node's agent), by result: signed, not-hosted (the node runs no pod of the identity), unknown-node (a node SVID for a node without a record), refused (a bad request)",
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly endpoints = new Gauge({
    name: 'weir_endpoint',
    help: 'Endpoints managed by this agent',
    registers: [this.registry],
    collect: () => {
      const n = this.sources.endpoints?.();
      if (n !== undefined) this.endpoints.set(n);
    },
  });

  /** A counter whose value is read from a source at scrape time (reset, then set to the total). */
  #scraped<L extends string>(c: Counter<L>, fill: (c: Counter<L>) => void): Counter<L> {
    (c as unknown as { collect: () => void }).collect = () => {
      c.reset();
      fill(c);
    };
    return c;
  }

  #datapathCounter(name: string, help: string, drops: boolean, field: 'packets' | 'bytes') {
    const labelNames = drops ? (['reason', 'direction'] as const) : (['direction'] as const);
    return this.#scraped(new Counter({ name, help, labelNames, registers: [this.registry] }), (c) => {
      for (const e of this.sources.datapathCounters?.() ?? []) {
        if ((e.reason !== 0) !== drops) continue;
        const direction = e.direction.toUpperCase();
        const labels = drops ? { reason: reasonText(e.reason), direction } : { direction };
        c.inc(labels, Number(e[field]));
      }
    });
  }
}
