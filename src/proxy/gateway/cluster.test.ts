// The upstream cluster's bookkeeping as Envoy documents it: circuit-breaker thresholds (requests,
// connections with pending requests, retries or a retry budget) and outlier detection (consecutive
// 5xx / gateway errors, ejection time growing with ejections, maxEjectionPercent, panic threshold).
// Real time, short settings; the data plane around it is tested in the lab
// (test/integration/gateway-resilience.privileged.test.ts).
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Cluster } from './cluster.js';
import { GatewayMetrics } from './metrics.js';

const cb = { maxConnections: 2, maxPendingRequests: 1, maxParallelRequests: 3, maxParallelRetries: 1 };

async function value(m: GatewayMetrics, name: string, labels: Record<string, string>): Promise<number> {
  const metric = m.registry.getSingleMetric(name);
  const got = await metric?.get();
  return (got?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x))
    .reduce((n, v) => n + v.value, 0);
}

test('maxParallelRequests admits that many requests in flight, then overflows until one leaves', async () => {
  const m = new GatewayMetrics();
  const c = new Cluster('ns/svc:80', { circuitBreaker: cb }, m);
  assert.deepEqual([c.admit(), c.admit(), c.admit(), c.admit()], [true, true, true, false]);
  c.leave();
  assert.equal(c.admit(), true);
  assert.equal(await value(m, 'weir_gateway_upstream_overflow_total', { limit: 'requests' }), 1);
  c.close();
});

test('maxConnections busy: one request waits as pending, the next overflows; a release serves the pending one', async () => {
  const m = new GatewayMetrics();
  const c = new Cluster('ns/svc:80', { circuitBreaker: cb }, m);
  assert.equal(await c.connection(Infinity), true);
  assert.equal(await c.connection(Infinity), true);
  const pending = c.connection(Infinity);
  assert.equal(c.pending, 1);
  assert.equal(await c.connection(Infinity), false);
  c.release();
  assert.equal(await pending, true);
  assert.equal(c.active, 2);
  // A pending request gives up at its deadline.
  assert.equal(await c.connection(20), 'timeout');
  assert.equal(c.pending, 0);
  assert.equal(await value(m, 'weir_gateway_upstream_overflow_total', { limit: 'pending' }), 1);
  assert.equal(await value(m, 'weir_gateway_upstream_cx_overflow_total', {}), 3);
  c.close();
});

test('retries: maxParallelRetries, or a budget of the requests in flight with a minimum', () => {
  const m = new GatewayMetrics();
  const c = new Cluster('ns/svc:80', { circuitBreaker: cb }, m);
  assert.deepEqual([c.retryAllowed(), c.retryAllowed()], [true, false]);
  c.retryDone();
  assert.equal(c.retryAllowed(), true);
  const b = new Cluster(
    'ns/svc:80',
    {
      retry: {
        numRetries: 3,
        triggers: ['5xx'],
        statusCodes: [],
        baseIntervalMs: 25,
        maxIntervalMs: 250,
        budget: { percent: 20, minRetryConcurrency: 1 },
      },
    },
    m,
  );
  for (let i = 0; i < 10; i++) b.admit();
  // 20 % of 10 in flight: 2 outstanding retries.
  assert.deepEqual([b.retryAllowed(), b.retryAllowed(), b.retryAllowed()], [true, true, false]);
  for (let i = 0; i < 9; i++) b.leave();
  b.retryDone();
  b.retryDone();
  // One in flight: the minimum (1).
  assert.deepEqual([b.retryAllowed(), b.retryAllowed()], [true, false]);
  c.close();
  b.close();
});

test('outlier detection: consecutive 5xx eject for base × ejections, within maxEjectionPercent', async () => {
  const m = new GatewayMetrics();
  const passive = {
    consecutive5xx: 3,
    consecutiveGateway: 0,
    intervalMs: 10_000,
    baseEjectionMs: 100,
    maxEjectionPercent: 50,
  };
  const c = new Cluster('ns/svc:80', { passiveHealthCheck: passive }, m);
  const eps = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80'];
  const fail = (ep: string, n: number) => {
    for (let i = 0; i < n; i++) c.outcome(ep, eps, { code: 503 });
  };
  // A success in between resets the count.
  fail('10.0.0.1:80', 2);
  c.outcome('10.0.0.1:80', eps, { code: 200 });
  fail('10.0.0.1:80', 2);
  assert.deepEqual(c.ejected(eps), []);
  c.outcome('10.0.0.1:80', eps, { local: 'connect-failure' });
  assert.deepEqual(c.ejected(eps), ['10.0.0.1:80']);
  assert.deepEqual(c.healthy(eps), eps.slice(1));
  // 1 of 4 out (25 % < 50 %): a second may go; then 50 %: a third may not.
  fail('10.0.0.2:80', 3);
  fail('10.0.0.3:80', 3);
  assert.deepEqual(c.ejected(eps), ['10.0.0.1:80', '10.0.0.2:80']);
  assert.equal(await value(m, 'weir_gateway_outlier_ejections_overflow_total', {}), 1);
  await sleep(120);
  assert.deepEqual(c.ejected(eps), []);
  // Failing again within an interval: 2 × base.
  fail('10.0.0.1:80', 3);
  await sleep(120);
  assert.deepEqual(c.ejected(eps), ['10.0.0.1:80']);
  await sleep(100);
  assert.deepEqual(c.ejected(eps), []);
  assert.equal(await value(m, 'weir_gateway_outlier_ejections_total', { reason: 'consecutive_5xx' }), 3);
  c.close();
});

test('outlier detection: gateway errors only when asked; fewer than half healthy is panic (all get traffic)', () => {
  const m = new GatewayMetrics();
  const passive = {
    consecutive5xx: 0,
    consecutiveGateway: 2,
    intervalMs: 10_000,
    baseEjectionMs: 10_000,
    maxEjectionPercent: 100,
  };
  const c = new Cluster('ns/svc:80', { passiveHealthCheck: passive }, m);
  const eps = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80'];
  // 500 is not a gateway error, and resets the run.
  c.outcome('10.0.0.1:80', eps, { code: 502 });
  c.outcome('10.0.0.1:80', eps, { code: 500 });
  c.outcome('10.0.0.1:80', eps, { code: 504 });
  assert.deepEqual(c.ejected(eps), []);
  c.outcome('10.0.0.1:80', eps, { local: 'timeout' });
  assert.deepEqual(c.healthy(eps), ['10.0.0.2:80', '10.0.0.3:80']);
  c.outcome('10.0.0.2:80', eps, { code: 503 });
  c.outcome('10.0.0.2:80', eps, { code: 503 });
  assert.deepEqual(c.ejected(eps), ['10.0.0.1:80', '10.0.0.2:80']);
  assert.deepEqual(c.healthy(eps), eps);
  c.close();
});
