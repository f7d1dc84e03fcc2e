// Gateway API north-south with real requests: a lab external sends HTTP with curl to a Gateway's
// address (198.51.100.x, held by the node like a LoadBalancer VIP); the node proxy serves it from
// the compiled route table and forwards to echo pods (the conformance echo contract). Checked as a
// user sees it: the pod that answered and what it saw, redirects, rewrites, header modifiers,
// weights, 404 without a route, 500 for an invalid backendRef, a request timeout, a retry; the
// statuses with `weir get … -o json`, `weir gateway list`, `weir route list`, `weir route trace`.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Lab } from '../../src/lab/index.js';
import { ok } from '../support/cli.js';
import { GatewayLab } from '../support/echo-pods.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-gateway');
const labSpec = `name: ${LAB}\nexternals:\n  - { name: client, ip: 192.0.2.60 }\n`;

const echoPod = (name: string, app: string) => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: gw, labels: { app: ${app} }, annotations: { weir.dev/workload: "none" } }
spec: { containers: [{ name: echo, ports: [{ containerPort: 3000 }] }] }
---`;
const service = (name: string, app: string) => `
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: gw }
spec: { selector: { app: ${app} }, ports: [{ port: 8080, targetPort: 3000 }] }
---`;

const objects = `
apiVersion: v1
kind: Namespace
metadata: { name: gw }
---
${echoPod('echo-a', 'a')}
${echoPod('echo-b', 'b')}
${service('svc-a', 'a')}
${service('svc-b', 'b')}
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: weir }
spec: { controllerName: weir.dev/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: gw }
spec:
  gatewayClassName: weir
  listeners:
  - { name: shop, port: 80, protocol: HTTP, hostname: "shop.example.com" }
  - { name: any, port: 80, protocol: HTTP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shop, namespace: gw }
spec:
  parentRefs: [{ name: edge, sectionName: shop }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /a } }]
    backendRefs: [{ name: svc-a, port: 8080 }]
  - matches: [{ path: { type: PathPrefix, value: /b }, headers: [{ name: x-version, value: "2" }] }]
    filters:
    - { type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-set, value: by-route }], add: [{ name: x-add, value: added }], remove: [x-gone] } }
    - { type: ResponseHeaderModifier, responseHeaderModifier: { set: [{ name: x-resp, value: by-route }] } }
    backendRefs: [{ name: svc-b, port: 8080 }]
  - matches: [{ path: { type: PathPrefix, value: /old } }]
    filters: [{ type: RequestRedirect, requestRedirect: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /new }, statusCode: 301 } }]
  - matches: [{ path: { type: PathPrefix, value: /api } }]
    filters: [{ type: URLRewrite, urlRewrite: { hostname: internal.example, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } } }]
    backendRefs: [{ name: svc-a, port: 8080 }]
  - matches: [{ path: { type: PathPrefix, value: /split } }]
    backendRefs: [{ name: svc-a, port: 8080, weight: 1 }, { name: svc-b, port: 8080, weight: 1 }]
  - matches: [{ path: { type: PathPrefix, value: /missing } }]
    backendRefs: [{ name: nothing, port: 8080 }]
  - matches: [{ path: { type: PathPrefix, value: /slow } }]
    timeouts: { request: 500ms }
    backendRefs: [{ name: svc-a, port: 8080 }]
  - matches: [{ path: { type: PathPrefix, value: /retry } }]
    retry: { attempts: 2, codes: [500], backoff: 10ms }
    backendRefs: [{ name: svc-b, port: 8080 }]
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: gw, labels: { app: client } }
spec: { containers: [{ name: c }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: mesh-a, namespace: gw }
spec:
  parentRefs: [{ group: "", kind: Service, name: svc-a, port: 8080 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /to-b } }]
    filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-mesh, value: "yes" }] } }]
    backendRefs: [{ name: svc-b, port: 8080 }]
  - backendRefs: [{ name: svc-a, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: fallback, namespace: gw }
spec:
  parentRefs: [{ name: edge, sectionName: any }]
  rules:
  - backendRefs: [{ name: svc-b, port: 8080 }]
`;

interface Answer {
  code: number;
  headers: Record<string, string>;
  body: string;
  echo?: { path: string; host: string; method: string; headers: Record<string, string[]>; pod: string };
}

describe('Gateway API north-south: real requests from a lab external', () => {
  const lab = new GatewayLab(LAB, { labSpec, objects, ns: 'gw', pods: ['echo-a', 'echo-b'] });
  let address = '';

  /** One request with curl from the external: status, response headers, body (echo JSON parsed). */
  async function get(host: string, path: string, headers: string[] = []): Promise<Answer> {
    const args = [
      '-s',
      '-i',
      '--max-time',
      '10',
      '-H',
      `Host: ${host}`,
      ...headers.flatMap((h) => ['-H', h]),
    ];
    const out = await ok(
      ['lab', 'exec', 'ext:client', '--', 'curl', ...args, `http://${address}${path}`],
      LAB,
    );
    const [head = '', ...rest] = out.split('\r\n\r\n');
    const body = rest.join('\r\n\r\n');
    const lines = head.split('\r\n');
    const code = Number(lines[0]?.split(' ')[1]);
    const h: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      h[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    let echo: Answer['echo'];
    try {
      echo = JSON.parse(body) as Answer['echo'];
    } catch {
      echo = undefined;
    }
    return { code, headers: h, body, ...(echo ? { echo } : {}) };
  }

  before(async () => {
    await lab.up();
    address = lab.address;
  });
  after(lab.down);

  it('the Gateway has an address of the gateway range and is Programmed; routes are Accepted', async () => {
    assert.match(address, /^198\.51\.100\.\d+$/);
    const gw = JSON.parse(await ok(['get', 'gateways', 'edge', '-n', 'gw', '-o', 'json'], LAB)) as {
      status: {
        conditions: { type: string; status: string }[];
        listeners: { name: string; attachedRoutes: number }[];
      };
    };
    assert.equal(gw.status.conditions.find((c) => c.type === 'Programmed')?.status, 'True');
    assert.deepEqual(
      gw.status.listeners.map((l) => [l.name, l.attachedRoutes]),
      [
        ['shop', 1],
        ['any', 1],
      ],
    );
    const route = JSON.parse(await ok(['get', 'httproute', 'shop', '-n', 'gw', '-o', 'json'], LAB)) as {
      status: { parents: { conditions: { type: string; status: string; reason: string }[] }[] };
    };
    const conds = route.status.parents[0]?.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`);
    assert.deepEqual(conds, ['Accepted=True/Accepted', 'ResolvedRefs=False/BackendNotFound']);
    const list = await ok(['gateway', 'list'], LAB);
    assert.match(list, new RegExp(`gw\\s+edge\\s+weir\\s+${address.replace(/\./g, '\\.')}\\s+True`));
    const routes = await ok(['route', 'list'], LAB);
    assert.match(routes, /HTTPRoute\s+gw\s+shop\s+Gateway gw\/edge\/shop\s+True\s+False \(BackendNotFound\)/);
  });

  it('path and header matching pick the backend; the listener is chosen by host', async () => {
    const a = await get('shop.example.com', '/a/x?q=1');
    assert.equal(a.code, 200, a.body);
    assert.equal(a.echo?.pod, 'echo-a');
    assert.equal(a.echo?.path, '/a/x?q=1');
    assert.equal(a.echo?.host, 'shop.example.com');
    // /b needs the header; without it no rule of the shop listener matches.
    assert.equal((await get('shop.example.com', '/b')).code, 404);
    // Another host goes to the catch-all listener and its route, never to the shop's rules.
    const other = await get('other.example.org', '/a');
    assert.equal(other.echo?.pod, 'echo-b');
  });

  it('request and response header modifiers', async () => {
    const b = await get('shop.example.com', '/b', [
      'x-version: 2',
      'x-set: from-client',
      'x-add: first',
      'x-gone: 1',
    ]);
    assert.equal(b.code, 200, b.body);
    assert.equal(b.echo?.pod, 'echo-b');
    assert.deepEqual(b.echo?.headers['X-Set'], ['by-route']);
    assert.deepEqual(b.echo?.headers['X-Add'], ['first, added']);
    assert.equal(b.echo?.headers['X-Gone'], undefined);
    assert.equal(b.headers['x-resp'], 'by-route');
  });

  it('redirects and URL rewrites', async () => {
    const r = await get('shop.example.com', '/old/page?x=1');
    assert.equal(r.code, 301);
    assert.equal(r.headers.location, 'http://shop.example.com/new/page?x=1');
    const w = await get('shop.example.com', '/api/items');
    assert.equal(w.code, 200, w.body);
    assert.equal(w.echo?.path, '/v2/items');
    assert.equal(w.echo?.host, 'internal.example');
  });

  it('weights split requests between backends', async () => {
    const pods = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const s = await get('shop.example.com', '/split');
      pods.set(s.echo?.pod ?? `code ${s.code}`, (pods.get(s.echo?.pod ?? `code ${s.code}`) ?? 0) + 1);
    }
    assert.deepEqual([...pods.keys()].sort(), ['echo-a', 'echo-b'], JSON.stringify([...pods]));
    for (const n of pods.values())
      assert.ok(n >= 8, `a backend got ${n} of 40: ${JSON.stringify([...pods])}`);
  });

  it('an invalid backendRef answers 500; a request timeout 504; a retry succeeds', async () => {
    assert.equal((await get('shop.example.com', '/missing')).code, 500);
    const t0 = Date.now();
    const slow = await get('shop.example.com', '/slow?delay=3s');
    const ms = Date.now() - t0;
    assert.equal(slow.code, 504, slow.body);
    assert.ok(ms < 2500, `the 500ms timeout answered after ${ms} ms`);
    const fast = await get('shop.example.com', '/slow?delay=100ms');
    assert.equal(fast.code, 200);
    const retried = await get(
      'shop.example.com',
      `/retry?succeedAfter=1&uuid=${Date.now()}&responseCode=500`,
    );
    assert.equal(retried.code, 200, retried.body);
    const exhausted = await get(
      'shop.example.com',
      `/retry?succeedAfter=5&uuid=x${Date.now()}&responseCode=500`,
    );
    assert.equal(exhausted.code, 500);
  });

  it('mesh (GAMMA): pod traffic to a Service with routes goes through the proxy; others do not', async () => {
    const svcs = JSON.parse(await ok(['get', 'svc', '-n', 'gw', '-o', 'json'], LAB)) as {
      items: { metadata: { name: string }; spec: { clusterIP: string } }[];
    };
    const ip = (n: string) => svcs.items.find((s) => s.metadata.name === n)?.spec.clusterIP ?? '';
    const curl = async (url: string) => {
      const out = await ok(['lab', 'exec', 'gw/client', '--', 'curl', '-s', '--max-time', '10', url], LAB);
      return JSON.parse(out) as { pod: string; path: string; headers: Record<string, string[]> };
    };
    const toB = await curl(`http://${ip('svc-a')}:8080/to-b`);
    assert.equal(toB.pod, 'echo-b', 'the route sent /to-b of svc-a to svc-b');
    assert.deepEqual(toB.headers['X-Mesh'], ['yes']);
    const own = await curl(`http://${ip('svc-a')}:8080/x`);
    assert.equal(own.pod, 'echo-a');
    assert.equal(own.headers['X-Mesh'], undefined);
    // svc-b has no route: its frontend still leads straight to its pod, not to the proxy.
    const fronts = JSON.parse(await ok(['service', 'list', '-o', 'json'], LAB)) as {
      service: string;
      backends: { address: string }[];
    }[];
    const nodeIP = (await (await Lab.open(LAB)).node()).ip;
    const backendsOf = (svc: string) =>
      fronts.filter((f) => f.service === svc).flatMap((f) => f.backends.map((b) => b.address));
    assert.ok(backendsOf('gw/svc-a').length > 0);
    assert.ok(
      backendsOf('gw/svc-a').every((a) => a.startsWith(`${nodeIP}:`)),
      JSON.stringify(backendsOf('gw/svc-a')),
    );
    assert.ok(
      backendsOf('gw/svc-b').every((a) => !a.startsWith(`${nodeIP}:`)),
      JSON.stringify(backendsOf('gw/svc-b')),
    );
    assert.equal((await curl(`http://${ip('svc-b')}:8080/direct`)).pod, 'echo-b');
  });

  it('L7 flows name the route rule and the backend', async () => {
    await get('shop.example.com', '/a/flow-check');
    let flows: {
      l7?: { http?: { url: string; code: number } };
      weir: { route?: { name: string; rule: number }; backend?: string };
    }[] = [];
    for (let i = 0; i < 20; i++) {
      const out = await ok(['observe', '--type', 'l7', '--last', '200', '-o', 'json'], LAB);
      flows = out
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as (typeof flows)[number]);
      if (flows.some((f) => f.l7?.http?.url.endsWith('/a/flow-check'))) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const f = flows.find((x) => x.l7?.http?.url.endsWith('/a/flow-check'));
    assert.ok(f, 'an L7 flow of the request');
    assert.equal(f.l7?.http?.code, 200);
    assert.equal(f.weir.route?.name, 'shop');
    assert.equal(f.weir.route?.rule, 0);
    assert.equal(f.weir.backend, 'gw/svc-a:8080');
  });

  it('route trace names the rule and backend, live from the agent', async () => {
    const out = JSON.parse(
      await ok(
        [
          'route',
          'trace',
          '--gateway',
          'gw/edge',
          '--host',
          'shop.example.com',
          '--path',
          '/api/x',
          '-o',
          'json',
        ],
        LAB,
      ),
    ) as { decision: string; route: string; rule: string; backend: string; upstream: { path: string } };
    assert.equal(out.decision, 'forward');
    assert.equal(out.route, 'HTTPRoute gw/shop');
    assert.match(out.rule, /^rule 3 /);
    assert.equal(out.backend, 'gw/svc-a:8080');
    assert.equal(out.upstream.path, '/v2/x');
  });
});
