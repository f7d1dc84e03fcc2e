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
    this.requests = new Counter({
      name: 'weir_gateway_requests_total',
      help: 'Requests the gateway answered, by Gateway (or mesh Service), route, rule, backend and status code (the final response, as Envoy’s upstream_rq_<code>)',
      labelNames: ['gateway', 'route', 'rule', 'backend', 'code'] as const,
      registers,
    });
    this.duration = new Histogram({
      name: 'weir_gateway_request_duration_seconds',
      help: 'Time from the request’s arrival to its answer (retries and back-off included)',
      labelNames: ['gateway', 'route', 'backend'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.retries = new Counter({
      name: 'weir_gateway_upstream_rq_retry_total',
      help: 'Retries sent to a backend (Envoy: upstream_rq_retry)',
      labelNames: ['route', 'backend'] as const,
      registers,
    });
    this.overflow = new Counter({
      name: 'weir_gateway_upstream_overflow_total',
      help: 'Circuit breaker overflows by limit: requests (maxParallelRequests, answered 503), pending (maxPendingRequests, answered 503), retries (maxParallelRetries or the retry budget: the retry is not made)',
      labelNames: ['backend', 'limit'] as const,
      registers,
    });
    this.cxOverflow = new Counter({
      name: 'weir_gateway_upstream_cx_overflow_total',
      help: 'Requests that wanted a new upstream connection at maxConnections and waited as pending (Envoy: upstream_cx_overflow)',
      labelNames: ['backend'] as const,
      registers,
    });
    this.rateLimited = new Counter({
      name: 'weir_gateway_rate_limited_total',
      help: 'Requests answered 429 by a local rate limit',
      labelNames: ['route'] as const,
      registers,
    });
    this.timeouts = new Counter({
      name: 'weir_gateway_upstream_timeouts_total',
      help: 'Timeouts by kind: request (504 to the client), per_try (an attempt), connect (tcp connectTimeout), idle (an idle upstream connection closed), max_duration (a connection closed at maxConnectionDuration)',
      labelNames: ['backend', 'kind'] as const,
      registers,
    });
    this.ejections = new Counter({
      name: 'weir_gateway_outlier_ejections_total',
      help: 'Endpoints ejected by outlier detection, by reason (Envoy: ejections_enforced_*)',
      labelNames: ['backend', 'reason'] as const,
      registers,
    });
    this.ejectionsOverflow = new Counter({
      name: 'weir_gateway_outlier_ejections_overflow_total',
      help: 'Ejections not made because maxEjectionPercent was reached',
      labelNames: ['backend'] as const,
      registers,
    });
    this.ejectionsActive = new Gauge({
      name: 'weir_gateway_outlier_ejections_active',
      help: 'Endpoints ejected now',
      labelNames: ['backend'] as const,
      registers,
    });
    this.cxTotal = new Counter({
      name: 'weir_gateway_upstream_cx_total',
      help: 'Upstream connections opened to a backend with a BackendTrafficPolicy',
      labelNames: ['backend'] as const,
      registers,
    });
  }
}
