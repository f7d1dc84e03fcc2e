// The node proxy's Prometheus metrics (prom-client), served on its admin socket; the agent appends
// them to its own /metrics at scrape time. Names start with weir_proxy_ (no clash with the agent's).
import { Counter, Gauge, Registry } from 'prom-client';
import type { L7Record } from './types.js';

/** weir_proxy_policy_l7_total's rule label (Cilium's cilium_policy_l7_total). */
export const L7_RULE_OUTCOMES = ['received', 'forwarded', 'denied', 'parse_errors'] as const;

/**
 * The labels of policyL7 by direction and outcome, made once: two increments per request, and a
 * proxy worker keys what it sends to the main thread by the labels object (worker.ts).
 */
const L7_LABELS = Object.fromEntries(
  (['ingress', 'egress'] as const).map((direction) => [
    direction,
    Object.fromEntries(
      L7_RULE_OUTCOMES.map((rule) => [rule, Object.freeze({ direction, rule, proxy_type: 'http' })]),
    ),
  ]),
) as unknown as Record<
  L7Record['direction'],
  Record<(typeof L7_RULE_OUTCOMES)[number], Record<string, string>>
>;

export interface MetricSources {
  snapshotVersion?: () => number | undefined;
  recordsLost?: () => number;
  accessLog?: () => { lines: number; errors: number; rotations: number };
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
  readonly policyL7 = new Counter({
    name: 'weir_proxy_policy_l7_total',
    help:
      'HTTP requests judged by the L7 policy, by direction: received, forwarded, denied (answered 403), ' +
      'parse_errors (refused before judging: malformed, too large, timed out)',
    labelNames: ['direction', 'rule', 'proxy_type'] as const,
    registers: [this.registry],
  });
  readonly upstreamRequestErrors = new Counter({
    name: 'weir_proxy_upstream_request_errors_total',
    help: 'Requests the proxy answered 502 (upstream reset) or 504 (upstream timeout), by direction and reason',
    labelNames: ['direction', 'reason'] as const,
    registers: [this.registry],
  });
  readonly accessLogLines: Counter = new Counter({
    name: 'weir_proxy_access_log_lines_total',
    help: 'Lines written to the access log, failed writes and rotations',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
    collect: (): void => {
      const a = this.sources.accessLog?.();
      this.accessLogLines.reset();
      if (!a) return;
      this.accessLogLines.inc({ outcome: 'written' }, a.lines);
      this.accessLogLines.inc({ outcome: 'error' }, a.errors);
      this.accessLogLines.inc({ outcome: 'rotated' }, a.rotations);
    },
  });
  /** The DNS proxy's queries by outcome (received, forwarded, denied, malformed, overload, ...). */
  readonly dns = new Counter({
    name: 'weir_proxy_dns_queries_total',
    help: "DNS proxy queries by outcome: received, forwarded, denied (REFUSED), malformed (FORMERR or dropped), unresolved (no endpoint or port: dropped), overload (the endpoint's in-flight cap: dropped), upstream_error (SERVFAIL), learn_error, reply_error",
    labelNames: ['outcome'] as const,
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
      for (const rule of L7_RULE_OUTCOMES) this.policyL7.inc({ direction, rule, proxy_type: 'http' }, 0);
      for (const reason of ['upstream_reset', 'upstream_timeout'])
        this.upstreamRequestErrors.inc({ direction, reason }, 0);
    }
  }

  /** Counts what one L7 record says about its request. */
  countRecord(r: L7Record): void {
    const direction = r.direction;
    const labels = L7_LABELS[direction];
    const l7 = (rule: (typeof L7_RULE_OUTCOMES)[number]) => this.policyL7.inc(labels[rule]);
    if (r.type === 'REQUEST') {
      l7('received');
      if (r.verdict === 'FORWARDED') l7('forwarded');
      else if (r.verdict === 'DENIED') l7('denied');
      return;
    }
    if (r.verdict !== 'ERROR') return;
    const code = r.http?.code ?? 0;
    if (code >= 400 && code < 500) l7('parse_errors');
    else if (code === 502 || code === 504)
      this.upstreamRequestErrors.inc({
        direction,
        reason: code === 504 ? 'upstream_timeout' : 'upstream_reset',
      });
  }

  /** Current value of a labelled counter or gauge, for status answers. */
  async value(metric: Counter<'direction'> | Gauge<'direction'>, direction: string): Promise<number> {
    const got = await metric.get();
    return got.values.find((v) => v.labels.direction === direction)?.value ?? 0;
  }

  /** Sum of a counter's series whose labels include `labels`. */
  async sum<L extends string>(metric: Counter<L>, labels: Partial<Record<L, string>>): Promise<number> {
    const got = await metric.get();
    let n = 0;
    for (const v of got.values)
      if (Object.entries(labels).every(([k, want]) => v.labels[k as L] === want)) n += v.value;
    return n;
  }
}
