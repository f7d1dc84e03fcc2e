// The Gateway data plane's Prometheus metrics, per route and per backend, named after Envoy's
// cluster stats (upstream_rq_*, upstream_cx_*, outlier_detection.*) under weir_gateway_. They are
// registered on the proxy's registry, so the proxy's /metrics (and the agent's, which appends it)
// carries them. `backend` is "namespace/name:port" of the Service port; `route` "namespace/name".
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type OverflowLimit = 'requests' | 'pending' | 'retries';
export type TimeoutKind = 'request' | 'per_try' | 'connect' | 'idle' | 'max_duration';
export type EjectionReason = 'consecutive_5xx' | 'consecutive_gateway_failure';

export class GatewayMetrics {
  readonly requests: Counter<'gateway' | 'route' | 'rule' | 'backend' | 'code'>;
  readonly duration: Histogram<'gateway' | 'route' | 'backend'>;
  readonly retries: Counter<'route' | 'backend'>;
  readonly overflow: Counter<'backend' | 'limit'>;
  readonly cxOverflow: Counter<'backend'>;
  readonly rateLimited: Counter<'route'>;
  readonly timeouts: Counter<'backend' | 'kind'>;
  readonly ejections: Counter<'backend' | 'reason'>;
  readonly ejectionsOverflow: Counter<'backend'>;
  readonly ejectionsActive: Gauge<'backend'>;
  readonly cxTotal: Counter<'backend'>;

  constructor(readonly registry: Registry = new Registry()) {
    const registers = [registry];
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Counter<L>({ name, help, labelNames, registers });
    this.requests = counter(
      'weir_gateway_requests_total',
      'Requests the gateway answered, by Gateway (or mesh Service), route, rule, backend and status code (the final response, as Envoy’s upstream_rq_<code>)',
      ['gateway', 'route', 'rule', 'backend', 'code'],
    );
    this.duration = new Histogram({
      name: 'weir_gateway_request_duration_seconds',
      help: 'Time from the request’s arrival to its answer (retries and back-off included)',
      labelNames: ['gateway', 'route', 'backend'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.retries = counter(
      'weir_gateway_upstream_rq_retry_total',
      'Retries sent to a backend (Envoy: upstream_rq_retry)',
      ['route', 'backend'],
    );
    this.overflow = counter(
      'weir_gateway_upstream_overflow_total',
      'Circuit breaker overflows by limit: requests (maxParallelRequests, answered 503), pending (maxPendingRequests, answered 503), retries (maxParallelRetries or the retry budget: the retry is not made)',
      ['backend', 'limit'],
    );
    this.cxOverflow = counter(
      'weir_gateway_upstream_cx_overflow_total',
      'Requests that wanted a new upstream connection at maxConnections and waited as pending (Envoy: upstream_cx_overflow)',
      ['backend'],
    );
    this.rateLimited = counter(
      'weir_gateway_rate_limited_total',
      'Requests answered 429 by a local rate limit',
      ['route'],
    );
    this.timeouts = counter(
      'weir_gateway_upstream_timeouts_total',
      'Timeouts by kind: request (504 to the client), per_try (an attempt), connect (tcp connectTimeout), idle (an idle upstream connection closed), max_duration (a connection closed at maxConnectionDuration)',
      ['backend', 'kind'],
    );
    this.ejections = counter(
      'weir_gateway_outlier_ejections_total',
      'Endpoints ejected by outlier detection, by reason (Envoy: ejections_enforced_*)',
      ['backend', 'reason'],
    );
    this.ejectionsOverflow = counter(
      'weir_gateway_outlier_ejections_overflow_total',
      'Ejections not made because maxEjectionPercent was reached',
      ['backend'],
    );
    this.ejectionsActive = new Gauge({
      name: 'weir_gateway_outlier_ejections_active',
      help: 'Endpoints ejected now',
      labelNames: ['backend'],
      registers,
    });
    this.cxTotal = counter(
      'weir_gateway_upstream_cx_total',
      'Upstream connections opened to a backend with a BackendTrafficPolicy',
      ['backend'],
    );
  }
}
