// The node proxy's Prometheus metrics (prom-client), served on its admin socket; the agent appends
// them to its own /metrics at scrape time. Names start with weir_proxy_ (no clash with the agent's).
import { Counter, Gauge, Registry } from 'prom-client';

export interface MetricSources {
  snapshotVersion?: () => number | undefined;
  recordsLost?: () => number;
}

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly sources: MetricSources = {};
  readonly redirects = new Counter({
    name: 'weir_proxy_redirects_total',
    help: 'Connections the datapath redirected to the proxy and it accepted, by direction of the policy',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly active = new Gauge({
    name: 'weir_proxy_active_connections',
    help: 'Accepted connections open now, by direction',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly unresolved = new Counter({
    name: 'weir_proxy_unresolved_connections_total',
    help: 'Accepted connections of no endpoint the proxy knows, reset (fail closed)',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: 'weir_proxy_upstream_connect_errors_total',
    help: 'Upstream connections that failed to connect (refused, unreachable, timed out)',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly records = new Counter({
    name: 'weir_proxy_l7_records_total',
    help: 'L7 records (requests, responses) the protocol handlers emitted',
    registers: [this.registry],
  });
  readonly recordsLost: Counter = new Counter({
    name: 'weir_proxy_l7_records_lost_total',
    help: 'L7 records shed because the agent did not read them fast enough (or at all)',
    registers: [this.registry],
    collect: (): void => {
      this.recordsLost.reset();
      this.recordsLost.inc(this.sources.recordsLost?.() ?? 0);
    },
  });
  readonly snapshotVersion: Gauge = new Gauge({
    name: 'weir_proxy_snapshot_version',
    help: 'Version of the L7 policy snapshot the proxy runs (-1: none yet)',
    registers: [this.registry],
    collect: (): void => this.snapshotVersion.set(this.sources.snapshotVersion?.() ?? -1),
  });

  constructor() {
    // Every direction is reported from the start, zeros included.
    for (const direction of ['ingress', 'egress']) {
      this.redirects.inc({ direction }, 0);
      this.active.set({ direction }, 0);
      this.unresolved.inc({ direction }, 0);
      this.upstreamErrors.inc({ direction }, 0);
    }
  }

  /** Current value of a labelled counter or gauge, for status answers. */
  async value(metric: Counter<'direction'> | Gauge<'direction'>, direction: string): Promise<number> {
    const got = await metric.get();
    return got.values.find((v) => v.labels.direction === direction)?.value ?? 0;
  }
}
