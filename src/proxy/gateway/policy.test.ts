// BackendTrafficPolicy on the gateway data plane, with real sockets on loopback: a local rate limit
// of N per unit lets N through and answers 429 with x-ratelimit-* headers; a circuit breaker's
// maxParallelRequests answers the overflow 503 and lets requests through again once they finish.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { freePort, gatewayPlane, get } from '../../../test/support/gateway-plane.js';
import type { GatewayServer } from './server.js';

const manifests = (port: number) => `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: weir }
spec: { controllerName: weir.dev/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: ns }
spec: { gatewayClassName: weir, listeners: [{ name: http, port: ${port}, protocol: HTTP }] }
---
apiVersion: v1
kind: Service
metadata: { name: svc, namespace: ns }
spec: { ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: limited, namespace: ns }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /limited } }], backendRefs: [{ name: svc, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: slow, namespace: ns }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /slow } }], backendRefs: [{ name: svc, port: 80 }] }]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: rl, namespace: ns }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: limited }]
  rateLimit: { type: Local, local: { rules: [{ limit: { requests: 3, unit: Hour } }] } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: users, namespace: ns }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /users } }], backendRefs: [{ name: svc, port: 80 }] }]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: per-user, namespace: ns }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: users }]
  rateLimit:
    type: Local
    local:
      rules:
      - clientSelectors: [{ headers: [{ name: x-user-id, type: Distinct }] }]
        limit: { requests: 2, unit: Hour }
      - clientSelectors: [{ headers: [{ name: x-user-id, value: vip }] }, { sourceCIDR: { value: 10.0.0.0/8 } }]
        limit: { requests: 3, unit: Hour }
      - limit: { requests: 1, unit: Hour }
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: cb, namespace: ns }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: slow }]
  circuitBreaker: { maxParallelRequests: 2 }
`;

describe('BackendTrafficPolicy on the gateway data plane', () => {
  let upstream: Server;
  let gw: GatewayServer;
  let port = 0;

  before(async () => {
    upstream = createServer((req, res) =>
      setTimeout(() => res.end('ok'), req.url?.startsWith('/slow') ? 300 : 0),
    );
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const up = (upstream.address() as AddressInfo).port;
    port = await freePort();
    gw = await gatewayPlane(manifests(port), { 'ns/svc:80': [`127.0.0.1:${up}`] }, 'policy.yaml');
  });

  after(async () => {
    await gw.close();
    await new Promise((r) => upstream.close(r));
  });

  it('a local rate limit of 3 per hour: 3 pass, the rest 429 with x-ratelimit headers', async () => {
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await get(port, '/limited'));
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200, 429, 429],
    );
    assert.deepEqual(
      answers.map((a) => a.headers['x-ratelimit-remaining']),
      ['2', '1', '0', '0', '0'],
    );
    assert.equal(answers[3]?.headers['x-ratelimit-limit'], '3');
    assert.ok(Number(answers[3]?.headers['x-ratelimit-reset']) > 0);
    assert.equal(gw.stats.rateLimited, 2);
    // Another route is not limited.
    assert.equal((await get(port, '/slow')).status, 200);
  });

  it('client selectors: a bucket per distinct x-user-id, requests matching no selector in the default bucket', async () => {
    const codes = async (n: number, h: Record<string, string>) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await get(port, '/users', h)).status);
      return out;
    };
    assert.deepEqual(await codes(3, { 'x-user-id': 'a' }), [200, 200, 429]);
    assert.deepEqual(await codes(3, { 'x-user-id': 'b' }), [200, 200, 429]);
    // vip counts in its own distinct bucket (2) and the vip rule's (3): the emptier decides.
    const vip = await get(port, '/users', { 'x-user-id': 'vip' });
    assert.equal(vip.headers['x-ratelimit-limit'], '2');
    assert.deepEqual(await codes(2, { 'x-user-id': 'vip' }), [200, 429]);
    // No x-user-id, from 127.0.0.1 (outside 10.0.0.0/8): the default rule, 1 per hour.
    assert.deepEqual(await codes(2, {}), [200, 429]);
  });

  it('a circuit breaker of 2 parallel requests: the overflow is 503, then it closes again', async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => get(port, '/slow')));
    const codes = answers.map((a) => a.status).sort();
    assert.deepEqual(codes, [200, 200, 503, 503, 503]);
    assert.ok(
      answers.filter((a) => a.status === 503).every((a) => a.headers['x-envoy-overloaded'] === 'true'),
    );
    assert.equal(gw.stats.circuitOpen, 3);
    assert.equal((await get(port, '/slow')).status, 200, 'closed again once the requests finished');
  });
});
