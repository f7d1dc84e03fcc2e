// The agent's Prometheus metrics (prom-client), named like Cilium's where Cilium has one
// (cilium_endpoint_regeneration_time_stats_seconds -> weir_endpoint_regeneration_time_stats_seconds).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class AgentMetrics {
  readonly registry = new Registry();
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
    help: 'Failed BPF map operations of the agent, by map and operation',
    labelNames: ['map_name', 'operation', 'outcome'] as const,
    registers: [this.registry],
  });
}
