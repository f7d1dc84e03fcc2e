// A BackendTrafficPolicy's retry on the gateway data plane, with real sockets on loopback: status
// codes retried up to numRetries (x-envoy-attempt-count counts the attempts), connect failures
// retried and their endpoint ejected by outlier detection, and the same over h2c.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { freePort, gatewayPlane, get as getAnswer } from '../../../test/support/gateway-plane.js';
import type { GatewayServer } from './server.js';

const get = async (port: number, path: string) => {
  const { status, body } = await getAnswer(port, path);
  return { status, body };
};

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
spec: { ports: [{ name: h1, port: 80 }, { name: h2, port: 81, appProtocol: kubernetes.io/h2c }] }
---
apiVersion: v1
kind: Service
metadata: { name: two, namespace: ns }
spec: { ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: ns }
spec:
  parentRefs: [{ name: gw }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /h1 } }]
    backendRefs: [{ name: svc, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /h2 } }]
    backendRefs: [{ name: svc, port: 81 }]
  - matches: [{ path: { type: PathPrefix, value: /two } }]
    backendRefs: [{ name: two, port: 80 }]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: p, namespace: ns }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: r }]
  retry:
    numRetries: 2
    retryOn: { triggers: [connect-failure, retriable-status-codes], httpStatusCodes: [503] }
    perRetry: { backOff: { baseInterval: 5ms } }
  healthCheck:
    passive: { consecutive5XxErrors: 1, baseEjectionTime: 10s, maxEjectionPercent: 50 }
`;

describe('BackendTrafficPolicy retries on the gateway data plane', () => {
  let h1: Server;
  let h2: http2.Http2Server;
  let closedPort = 0;
  let gw: GatewayServer;
  let port = 0;
  /** Attempts seen per key, with the x-envoy-attempt-count each carried. */
  const seen = new Map<string, string[]>();
  // /x?key=K&fail=N: 503 for the first N attempts of K, then 200.
  const handler = (
    req: IncomingMessage | http2.Http2ServerRequest,
    res: ServerResponse | http2.Http2ServerResponse,
  ) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const key = u.searchParams.get('key') ?? '';
    const list = seen.get(key) ?? [];
    list.push(String(req.headers['x-envoy-attempt-count'] ?? ''));
    seen.set(key, list);
    res.writeHead(list.length <= Number(u.searchParams.get('fail') ?? 0) ? 503 : 200);
    res.end(`attempt ${list.length}`);
  };

  before(async () => {
    h1 = createServer(handler);
    await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r));
    h2 = http2.createServer(handler);
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    port = await freePort();
    closedPort = await freePort();
    const up1 = (h1.address() as AddressInfo).port;
    const up2 = (h2.address() as AddressInfo).port;
    gw = await gatewayPlane(
      manifests(port),
      {
        'ns/svc:80': [`127.0.0.1:${up1}`],
        'ns/svc:81': [`127.0.0.1:${up2}`],
        // One endpoint refuses connections.
        'ns/two:80': [`127.0.0.1:${closedPort}`, `127.0.0.1:${up1}`],
      },
      'retry.yaml',
    );
  });

  after(async () => {
    await gw.close();
    await new Promise((r) => h1.close(r));
    await new Promise((r) => h2.close(r));
  });

  it('a retriable status is retried up to numRetries; the attempts are counted upstream', async () => {
    assert.deepEqual(await get(port, '/h1?key=a&fail=2'), { status: 200, body: 'attempt 3' });
    assert.deepEqual(seen.get('a'), ['1', '2', '3']);
    assert.equal((await get(port, '/h1?key=b&fail=3')).status, 503);
    assert.equal(seen.get('b')?.length, 3, 'numRetries 2: three attempts');
  });

  it('the same over h2c', async () => {
    assert.deepEqual(await get(port, '/h2?key=d&fail=1'), { status: 200, body: 'attempt 2' });
    assert.equal(seen.get('d')?.length, 2);
  });

  it('a connect failure is retried, and its endpoint ejected: every request then succeeds', async () => {
    const ejected = async () =>
      (await gw.metrics.ejections.get()).values
        .filter((v) => v.labels.backend === 'ns/two:80')
        .reduce((n, v) => n + v.value, 0);
    const retried = async () => (await gw.metrics.retries.get()).values.reduce((n, v) => n + v.value, 0);
    // The endpoint is picked at random: send until one request met the refusing endpoint (each has
    // an even chance; 64 requests all missing it is a 2^-64 event), every one answered 200.
    let i = 0;
    for (; i < 64 && (await ejected()) === 0; i++)
      assert.equal((await get(port, `/two?key=e${i}`)).status, 200);
    assert.equal(await ejected(), 1, `ejected after ${i} requests`);
    const retries = await retried();
    assert.ok(retries >= 1);
    // Ejected: the next requests all go to the healthy endpoint, none retried, none ejected again.
    for (let j = 0; j < 6; j++) assert.equal((await get(port, `/two?key=f${j}`)).status, 200);
    assert.equal(await ejected(), 1);
    assert.equal(await retried(), retries);
  });
});
