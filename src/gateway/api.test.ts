// Gateway API manifests through the shared loader: accepted as written, every problem named by
// file, object and field; fields weir does not implement refused by name (ERR_GATEWAY_UNSUPPORTED).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import '../cluster/kinds.js';
import { parseManifests } from '../k8s/index.js';
import { ValidationError } from '../shared/errors.js';
import { parseDuration, parseGoDuration, type BackendTrafficPolicy } from './api.js';

function problems(text: string) {
  try {
    parseManifests(text, 'routes.yaml');
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err.problems.map((p) => ({ code: p.code, ...p.location, message: p.message }));
  }
  return assert.fail('expected a ValidationError');
}

const route = (rule: string) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  rules:
  - ${rule}
`;

test('every kind is accepted as written', () => {
  const ms = parseManifests(
    `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: weir}
spec: {controllerName: weir.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: weir
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "*.example.com", allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: a}}}}}
---
${route(`{matches: [{path: {type: Exact, value: /a}, headers: [{name: x-v, value: "1"}], queryParams: [{type: RegularExpression, name: q, value: "[0-9]+"}], method: GET}], filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}], remove: [c]}}], backendRefs: [{name: web, port: 8080, weight: 3}], timeouts: {request: 10s, backendRequest: 500ms}, retry: {attempts: 2, codes: [503], backoff: 100ms}}`)}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  rules: [{matches: [{method: {service: pkg.Svc, method: Get}}], backendRefs: [{name: grpc, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: rg, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]
  to: [{group: "", kind: Service}]
`,
    'routes.yaml',
  );
  assert.deepEqual(
    ms.map((m) => m.kind),
    ['GatewayClass', 'Gateway', 'HTTPRoute', 'GRPCRoute', 'ReferenceGrant'],
  );
});

test('unsupported fields are refused by name', () => {
  assert.deepEqual(
    problems(route('{sessionPersistence: {sessionName: s}, backendRefs: [{name: web, port: 80}]}')).map(
      (p) => [p.code, p.object, p.field],
    ),
    [['ERR_GATEWAY_UNSUPPORTED', 'HTTPRoute shop/r', 'spec.rules[0].sessionPersistence']],
  );
  assert.deepEqual(
    problems(route('{filters: [{type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}]}')).map(
      (p) => [p.code, p.field],
    ),
    [['ERR_GATEWAY_UNSUPPORTED', 'spec.rules[0].filters[0].type']],
  );
  const gw = problems(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: weir
  addresses: [{value: 10.0.0.1}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
`);
  assert.deepEqual(
    gw.map((p) => [p.code, p.file, p.object, p.field]),
    [['ERR_GATEWAY_UNSUPPORTED', 'routes.yaml', 'Gateway shop/edge', 'spec.addresses']],
  );
});

test('bad values name their field', () => {
  const ps = problems(
    route(
      '{matches: [{path: {type: Prefix, value: a}, headers: [{name: "bad header", value: x}]}], filters: [{type: RequestRedirect, requestRedirect: {statusCode: 305}}, {type: URLRewrite, urlRewrite: {}}], backendRefs: [{name: web, port: 70000}], timeouts: {request: soon}}',
    ),
  );
  assert.deepEqual(
    ps.map((p) => [p.code, p.field]),
    [
      ['ERR_K8S_FIELD_INVALID', 'spec.rules[0].matches[0].path.type'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rules[0].matches[0].path.value'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rules[0].matches[0].headers[0].name'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rules[0].timeouts.request'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rules[0].filters[0].requestRedirect.statusCode'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rules[0].filters'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rules[0].backendRefs[0].port'],
    ],
  );
  assert.deepEqual(
    problems(route('{bogus: 1}')).map((p) => [p.code, p.field, p.message]),
    [['ERR_K8S_FIELD_INVALID', 'spec.rules[0].bogus', "unknown field 'bogus'"]],
  );
});

test('durations as GEP-2257 writes them', () => {
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('1.5s'), undefined);
  assert.equal(parseDuration('10'), undefined);
  assert.equal(parseGoDuration('1.5s'), 1500);
  assert.equal(parseGoDuration('1h2m'), 3_720_000);
  assert.equal(parseGoDuration('250ms'), 250);
  assert.equal(parseGoDuration('10'), undefined);
});

test("BackendTrafficPolicy: what weir runs is accepted, Envoy Gateway's other fields refused by name", () => {
  const btp = (spec: string) => `apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
${spec}`;
  const [m] = parseManifests(
    btp(`  rateLimit: {type: Local, local: {rules: [{limit: {requests: 10, unit: Second}}]}}
  circuitBreaker: {maxConnections: 2, maxPendingRequests: 1, maxParallelRequests: 5, maxParallelRetries: 3}
  healthCheck:
    passive: {consecutive5XxErrors: 3, consecutiveGatewayErrors: 2, interval: 1s, baseEjectionTime: 1.5s, maxEjectionPercent: 50}
  retry:
    numRetries: 3
    retryOn: {triggers: [connect-failure, retriable-status-codes, 5xx], httpStatusCodes: [503, 429]}
    perRetry: {timeout: 250ms, backOff: {baseInterval: 10ms, maxInterval: 100ms}}
    budget: {budgetPercent: 25, minRetryConcurrency: 2}
  timeout:
    tcp: {connectTimeout: 2s}
    http: {requestTimeout: 1s, connectionIdleTimeout: 1m, maxConnectionDuration: 1h}
`),
    'p.yaml',
  );
  assert.equal(m?.kind, 'BackendTrafficPolicy');
  const p = m?.object as BackendTrafficPolicy;
  assert.deepEqual(p.circuitBreaker, {
    maxConnections: 2,
    maxPendingRequests: 1,
    maxParallelRequests: 5,
    maxParallelRetries: 3,
  });
  assert.deepEqual(p.passiveHealthCheck, {
    consecutive5xx: 3,
    consecutiveGateway: 2,
    intervalMs: 1000,
    baseEjectionMs: 1500,
    maxEjectionPercent: 50,
  });
  assert.deepEqual(p.retry, {
    numRetries: 3,
    triggers: ['connect-failure', 'retriable-status-codes', '5xx'],
    statusCodes: [503, 429],
    perTryTimeoutMs: 250,
    baseIntervalMs: 10,
    maxIntervalMs: 100,
    budget: { percent: 25, minRetryConcurrency: 2 },
  });
  assert.deepEqual(p.timeout, {
    connectMs: 2000,
    requestMs: 1000,
    idleMs: 60_000,
    maxConnectionDurationMs: 3_600_000,
  });
  // Envoy Gateway's defaults where a section is given without its fields.
  const d = parseManifests(
    btp('  circuitBreaker: {}\n  healthCheck: {passive: {}}\n  retry: {}\n'),
    'd.yaml',
  )[0]?.object as BackendTrafficPolicy;
  assert.deepEqual(d.circuitBreaker, {
    maxConnections: 1024,
    maxPendingRequests: 1024,
    maxParallelRequests: 1024,
    maxParallelRetries: 1024,
  });
  assert.deepEqual(d.passiveHealthCheck, {
    consecutive5xx: 5,
    consecutiveGateway: 0,
    intervalMs: 3000,
    baseEjectionMs: 30_000,
    maxEjectionPercent: 10,
  });
  assert.deepEqual(d.retry, {
    numRetries: 2,
    triggers: ['connect-failure', 'refused-stream', 'retriable-status-codes'],
    statusCodes: [503],
    baseIntervalMs: 25,
    maxIntervalMs: 250,
  });
  // Refused by name, each problem at its field of the file and object; nothing is half-applied.
  const got = problems(
    btp(`  healthCheck: {active: {type: HTTP}, passive: {splitExternalLocalOriginErrors: true, failurePercentageThreshold: 5}}
  circuitBreaker: {maxRequestsPerConnection: 5, perEndpoint: {maxConnections: 1}, maxConnections: -1}
  rateLimit: {type: Global, global: {rules: []}}
  retry:
    numAttemptsPerPriority: 2
    retryOn: {triggers: [unavailable, teapot], httpStatusCodes: [503]}
    perRetry: {backOff: {baseInterval: 100ms, maxInterval: 10ms}, timeout: soon}
  timeout: {http: {requestTimeout: 1s, idle: 2s}}
  loadBalancer: {type: RoundRobin}
`),
  );
  assert.deepEqual(
    got.map((x) => [x.code, x.field]),
    [
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.loadBalancer'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.rateLimit.global'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.rateLimit.type'],
      ['ERR_K8S_FIELD_MISSING', 'spec.rateLimit.local'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.circuitBreaker.maxRequestsPerConnection'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.circuitBreaker.perEndpoint'],
      ['ERR_K8S_FIELD_INVALID', 'spec.circuitBreaker.maxConnections'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.healthCheck.active'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.healthCheck.passive.failurePercentageThreshold'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.healthCheck.passive.splitExternalLocalOriginErrors'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.retry.numAttemptsPerPriority'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.retry.retryOn.triggers[0]'],
      ['ERR_K8S_FIELD_INVALID', 'spec.retry.retryOn.triggers[1]'],
      ['ERR_K8S_FIELD_INVALID', 'spec.retry.retryOn.httpStatusCodes'],
      ['ERR_K8S_FIELD_INVALID', 'spec.retry.perRetry.backOff.maxInterval'],
      ['ERR_K8S_FIELD_INVALID', 'spec.retry.perRetry.timeout'],
      ['ERR_K8S_FIELD_INVALID', 'spec.timeout.http.idle'],
    ],
  );
  assert.ok(
    got.every((x) => x.file === 'routes.yaml' && x.object === 'BackendTrafficPolicy shop/p'),
    JSON.stringify(got[0]),
  );
  assert.match(got.find((x) => x.field === 'spec.retry.retryOn.triggers[0]')?.message ?? '', /unavailable/);
});

test('BackendTrafficPolicy local rate limit: client selectors as Envoy Gateway writes them', () => {
  const btp = (rules: string) => `apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  rateLimit:
    type: Local
    local:
      rules:
${rules}`;
  const [m] = parseManifests(
    btp(`      - clientSelectors: [{headers: [{name: X-User-Id, type: Distinct}, {name: x-org, value: "a.*", type: RegularExpression}]}]
        limit: {requests: 2, unit: Minute}
      - clientSelectors: [{sourceCIDR: {type: Distinct, value: 10.0.0.0/8}}, {headers: [{name: x-vip, value: "yes"}]}]
        limit: {requests: 9, unit: Second}
      - limit: {requests: 100, unit: Second}
`),
    'p.yaml',
  );
  assert.deepEqual((m?.object as BackendTrafficPolicy).rateLimit, {
    default: { requests: 100, unitMs: 1000 },
    selectors: [
      {
        requests: 2,
        unitMs: 60_000,
        clientSelectors: [
          {
            headers: [
              { name: 'x-user-id', type: 'Distinct' },
              { name: 'x-org', type: 'RegularExpression', value: 'a.*' },
            ],
          },
        ],
      },
      {
        requests: 9,
        unitMs: 1000,
        clientSelectors: [
          { headers: [], sourceCIDR: { type: 'Distinct', value: '10.0.0.0/8' } },
          { headers: [{ name: 'x-vip', type: 'Exact', value: 'yes' }] },
        ],
      },
    ],
  });
  assert.deepEqual(
    problems(
      btp(`      - clientSelectors: [{headers: [{name: a, type: Distinct, value: x}, {name: b, value: y, invert: true}], methods: [GET]}]
        limit: {requests: 1, unit: Second}
      - clientSelectors: [{sourceCIDR: {value: 10.0.0.0/33}}, {}]
        limit: {requests: 1, unit: Second}
      - limit: {requests: 1, unit: Second}
      - limit: {requests: 2, unit: Second}
`),
    ).map((x) => [x.code, x.field]),
    [
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.rateLimit.local.rules[0].clientSelectors[0].methods'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rateLimit.local.rules[0].clientSelectors[0].headers[0].value'],
      ['ERR_GATEWAY_UNSUPPORTED', 'spec.rateLimit.local.rules[0].clientSelectors[0].headers[1].invert'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rateLimit.local.rules[1].clientSelectors[0].sourceCIDR.value'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rateLimit.local.rules[1].clientSelectors[1]'],
      ['ERR_K8S_FIELD_INVALID', 'spec.rateLimit.local.rules[3]'],
    ],
  );
});
