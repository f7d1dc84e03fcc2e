// `weir policy trace` with an HTTP request: on a side whose entry redirects to the node proxy the
// request is judged by the proxy's matcher against that port's L7 policy — the HTTP rule that
// allows it, or the 403 it gets and the rules to change; elsewhere it is not inspected.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatRuleRef } from './api/types.js';
import { validatePolicy } from './api/index.js';
import { computePolicy, type EngineInput } from './engine.js';
import { trace, type TraceRequest } from './trace.js';

const loc = { file: 't.yaml', object: 'test' };
const cnp = (name: string, spec: unknown) =>
  validatePolicy(
    { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec },
    loc,
  );
const pod = (id: number, name: string, ip: string) => ({
  id,
  namespace: 'x',
  pod: name,
  labels: { app: name },
  ips: [ip],
  namedPorts: [],
});

const serverPolicy = cnp('server-l7', {
  endpointSelector: { matchLabels: { app: 'server' } },
  ingress: [
    {
      fromEndpoints: [{ matchLabels: { app: 'client' } }],
      toPorts: [
        {
          ports: [{ port: '80', protocol: 'TCP' }],
          rules: {
            http: [
              { method: 'GET', path: '/public' },
              { method: 'POST', path: '/api/.*', headers: ['X-Team: blue'] },
              { host: 'admin\\.example', path: '/admin' },
            ],
          },
        },
        { ports: [{ port: '81', protocol: 'TCP' }] },
      ],
    },
    // Another client with L4 only on 80: never redirected, every request passes.
    { fromEndpoints: [{ matchLabels: { app: 'trusted' } }], toPorts: [{ ports: [{ port: '80' }] }] },
  ],
});

const input: EngineInput = {
  namespaces: [{ name: 'x', labels: {} }],
  endpoints: [
    pod(1, 'client', '10.244.0.2'),
    pod(2, 'server', '10.244.0.3'),
    pod(3, 'trusted', '10.244.0.4'),
  ],
  nodeIPs: ['10.244.0.1'],
  policies: [serverPolicy],
  config: { proxyPorts: { ingress: 15001, egress: 15002 } },
};
const ctx = { input, output: computePolicy(input) };
const req = (http: TraceRequest['http'], o: Partial<TraceRequest> = {}): TraceRequest => ({
  from: 'x/client',
  to: 'x/server',
  port: 80,
  protocol: 'TCP',
  http,
  ...o,
});

describe('policy trace with an HTTP request', () => {
  it('names the HTTP rule that allows it', () => {
    const r = trace(ctx, req({ method: 'GET', path: '/public' }));
    assert.equal(r.allowed, true);
    assert.equal(r.ingress.proxyPort, 15001);
    const h = r.ingress.http;
    assert.equal(h?.verdict, 'allowed');
    assert.equal(h?.reason, 'http_rule');
    assert.equal(formatRuleRef(h!.rule!), 'CiliumNetworkPolicy x/server-l7 ingress[0]');
    assert.deepEqual(h?.httpRule, { index: 0, rule: { method: 'GET', path: '/public' } });
    assert.equal(h?.request.host, '10.244.0.3', "default Host: the destination's address");
    assert.equal(r.egress.http, undefined, 'the client side is not redirected');
  });

  it('says a request no rule matches gets 403, and which rules hold the port', () => {
    for (const http of [
      { method: 'GET', path: '/private' },
      { method: 'GET', path: '/public?x=1' }, // the path is matched whole, query included
      { method: 'POST', path: '/api/v1' }, // the header is missing
      { method: 'GET', path: '/admin' }, // the wrong host
    ]) {
      const r = trace(ctx, req(http));
      assert.equal(r.allowed, false, JSON.stringify(http));
      assert.equal(r.ingress.verdict, 'allowed', 'L4 allows the connection');
      const h = r.ingress.http;
      assert.equal(h?.verdict, 'denied');
      assert.equal(h?.code, 403);
      assert.equal(h?.reason, 'no_rule_matched');
      assert.deepEqual(h?.candidates?.map(formatRuleRef), ['CiliumNetworkPolicy x/server-l7 ingress[0]']);
    }
  });

  it('judges headers and Host as the proxy does', () => {
    const api = trace(ctx, req({ method: 'POST', path: '/api/v1', headers: ['x-team: blue'] }));
    assert.equal(api.allowed, true);
    assert.equal(api.ingress.http?.httpRule?.index, 1);
    assert.equal(
      trace(ctx, req({ method: 'POST', path: '/api/v1', headers: ['X-Team: red'] })).allowed,
      false,
    );
    const admin = trace(ctx, req({ method: 'DELETE', path: '/admin', host: 'admin.example' }));
    assert.equal(admin.allowed, true);
    assert.equal(admin.ingress.http?.httpRule?.index, 2);
    assert.equal(
      trace(ctx, req({ method: 'GET', path: '/public' }, { port: 8080 })).ingress.verdict,
      'default-deny',
    );
  });

  it('does not inspect what is not redirected: an L4-only peer, an L4-only port', () => {
    const trusted = trace(ctx, req({ method: 'DELETE', path: '/anything' }, { from: 'x/trusted' }));
    assert.equal(trusted.allowed, true);
    assert.equal(trusted.ingress.proxyPort, undefined);
    assert.equal(trusted.ingress.http, undefined);
    const l4 = trace(ctx, req({ method: 'DELETE', path: '/anything' }, { port: 81 }));
    assert.equal(l4.allowed, true);
    assert.equal(l4.ingress.http, undefined);
  });

  it('a denied connection is not judged at L7; the default Host carries a non-80 port', () => {
    const denied = trace(ctx, req({ method: 'GET', path: '/public' }, { from: 'x/trusted', port: 81 }));
    assert.equal(denied.allowed, false);
    assert.equal(denied.ingress.http, undefined);
    const p = cnp('p8080', {
      endpointSelector: { matchLabels: { app: 'server' } },
      ingress: [
        {
          toPorts: [
            {
              ports: [{ port: '8080', protocol: 'TCP' }],
              rules: { http: [{ host: '10\\.244\\.0\\.3:8080' }] },
            },
          ],
        },
      ],
    });
    const i2 = { ...input, policies: [p] };
    const r = trace(
      { input: i2, output: computePolicy(i2) },
      req({ method: 'GET', path: '/' }, { port: 8080 }),
    );
    assert.equal(r.ingress.http?.request.host, '10.244.0.3:8080');
    assert.equal(r.allowed, true);
  });

  it('refuses a malformed request, naming the flag', () => {
    const bad = (http: unknown, field: string, o: Partial<TraceRequest> = {}) =>
      assert.throws(
        () => trace(ctx, req(http as TraceRequest['http'], o)),
        (e: { code: string; location: { field: string } }) =>
          e.code === 'ERR_POLICY_TRACE_HTTP' && e.location.field === field,
      );
    bad({ method: 'G ET', path: '/' }, '--http-method');
    bad({ method: 'GET', path: '' }, '--http-path');
    bad({ method: 'GET', path: '/a b' }, '--http-path');
    bad({ method: 'GET', path: '/', headers: ['nocolon'] }, '--http-header');
    bad({ method: 'GET', path: '/', headers: ['X: a\r\nY: b'] }, '--http-header');
    bad({ method: 'GET', path: '/', host: 'a b' }, '--http-host');
    bad({ method: 'GET', path: '/' }, '--port', { protocol: 'UDP' });
  });
});
