// The proxy's Gateway data plane on loopback with a real upstream: a snapshot as the agent pushes
// it (tables from the compiler), requests through real sockets — routing, header modifiers, a
// redirect, 404, 500 for an invalid ref, a backend timeout — and the snapshot's parse keeping every
// part (mesh listeners and pods included).
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { compile } from '../../gateway/compile.js';
import { worldOf } from '../../gateway/world.js';
import { freePort, get } from '../../../test/support/gateway-plane.js';
import { GatewayServer, parseGatewaySnapshot } from './server.js';

const objects = (port: number) =>
  worldOf(
    [
      {
        kind: 'GatewayClass',
        name: 'weir',
        object: {
          apiVersion: 'gateway.networking.k8s.io/v1',
          kind: 'GatewayClass',
          metadata: { name: 'weir' },
          spec: { controllerName: 'weir.dev/gateway-controller' },
        },
      },
      {
        kind: 'Gateway',
        namespace: 'ns',
        name: 'gw',
        object: {
          kind: 'Gateway',
          metadata: { name: 'gw', namespace: 'ns' },
          spec: { gatewayClassName: 'weir', listeners: [{ name: 'http', port, protocol: 'HTTP' }] },
        },
      },
      { kind: 'Service', namespace: 'ns', name: 'svc', object: { spec: { ports: [{ port: 80 }] } } },
      {
        kind: 'HTTPRoute',
        namespace: 'ns',
        name: 'r',
        object: {
          kind: 'HTTPRoute',
          metadata: { name: 'r', namespace: 'ns' },
          spec: {
            parentRefs: [{ name: 'gw' }],
            rules: [
              {
                matches: [{ path: { type: 'PathPrefix', value: '/app' } }],
                filters: [
                  {
                    type: 'RequestHeaderModifier',
                    requestHeaderModifier: { set: [{ name: 'x-set', value: 'yes' }] },
                  },
                  {
                    type: 'ResponseHeaderModifier',
                    responseHeaderModifier: { add: [{ name: 'x-resp', value: 'added' }] },
                  },
                ],
                backendRefs: [{ name: 'svc', port: 80 }],
              },
              {
                matches: [{ path: { type: 'Exact', value: '/old' } }],
                filters: [
                  {
                    type: 'RequestRedirect',
                    requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/new' } },
                  },
                ],
              },
              {
                matches: [{ path: { type: 'PathPrefix', value: '/bad' } }],
                backendRefs: [{ name: 'nothing', port: 80 }],
              },
              {
                matches: [{ path: { type: 'PathPrefix', value: '/slow' } }],
                timeouts: { request: '200ms' },
                backendRefs: [{ name: 'svc', port: 80 }],
              },
            ],
          },
        },
      },
    ],
    new Map([['ns', {}]]),
    new Map([['ns/gw', '127.0.0.1']]),
  );

describe('the gateway data plane', () => {
  let upstream: Server;
  let gw: GatewayServer;
  let port = 0;

  before(async () => {
    upstream = createServer((req, res) => {
      const delay = req.url?.startsWith('/slow') ? 1000 : 0;
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-resp': 'upstream' });
        res.end(JSON.stringify({ path: req.url, host: req.headers.host, set: req.headers['x-set'] }));
      }, delay);
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const up = (upstream.address() as AddressInfo).port;
    port = await freePort();
    gw = new GatewayServer({ log: pino({ level: 'silent' }) });
    const compiled = compile(objects(port));
    await gw.apply(
      parseGatewaySnapshot(
        JSON.parse(
          JSON.stringify({
            version: 1,
            ports: compiled.gatewayPorts,
            mesh: [],
            endpoints: { 'ns/svc:80': [`127.0.0.1:${up}`] },
            pods: {},
          }),
        ),
      ),
    );
  });

  after(async () => {
    await gw.close();
    await new Promise((r) => upstream.close(r));
  });

  it('routes, modifies headers both ways, forwards to the endpoint', async () => {
    const r = await get(port, '/app/x?y=1', { 'x-set': 'client' });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { path: '/app/x?y=1', host: 'example.com', set: 'yes' });
    assert.equal(r.headers['x-resp'], 'upstream, added');
    assert.deepEqual(gw.listening(), [`127.0.0.1:${port}`]);
  });

  it('answers redirects, 404 and 500 itself', async () => {
    const r = await get(port, '/old?q=1');
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, `http://example.com:${port}/new?q=1`);
    assert.equal((await get(port, '/nothing')).status, 404);
    assert.equal((await get(port, '/bad')).status, 500);
  });

  it('a request timeout answers 504 in time', async () => {
    const t0 = performance.now();
    const r = await get(port, '/slow');
    assert.equal(r.status, 504);
    assert.ok(performance.now() - t0 < 900, `${performance.now() - t0} ms`);
  });

  it('a snapshot keeps its mesh listeners and pods; an older one is refused', async () => {
    const s = parseGatewaySnapshot({
      version: 5,
      ports: [],
      mesh: [{ service: 'a/b', port: 80, address: '10.0.0.1', listenPort: 10100, entries: [] }],
      endpoints: {},
      pods: { '10.244.0.2': 'a' },
    });
    assert.equal(s.mesh.length, 1);
    assert.deepEqual(s.pods, { '10.244.0.2': 'a' });
    await assert.rejects(gw.apply({ ...s, mesh: [], version: 0 }), { code: 'ERR_PROXY_SNAPSHOT_STALE' });
  });
});
