// Which BackendTrafficPolicy a route rule runs with: the route's own, then a Service's (the mesh
// parent the route is attached to, or a backend of the rule), then its Gateway's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseManifests } from '../k8s/index.js';
import '../cluster/kinds.js';
import { compile } from './compile.js';
import { worldOf } from './world.js';

const base = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: weir }
spec: { controllerName: weir.dev/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: ns }
spec: { gatewayClassName: weir, listeners: [{ name: http, port: 80, protocol: HTTP }] }
---
apiVersion: v1
kind: Service
metadata: { name: a, namespace: ns }
spec: { clusterIP: 10.96.0.10, ports: [{ port: 80 }] }
---
apiVersion: v1
kind: Service
metadata: { name: b, namespace: ns }
spec: { clusterIP: 10.96.0.11, ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: to-a, namespace: ns }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /a } }], backendRefs: [{ name: a, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: to-b, namespace: ns }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /b } }], backendRefs: [{ name: b, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: mesh-b, namespace: ns }
spec:
  parentRefs: [{ group: "", kind: Service, name: b, port: 80 }]
  rules: [{ backendRefs: [{ name: a, port: 80 }] }]
`;
const btp = (name: string, target: string) => `
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: ${name}, namespace: ns }
spec:
  targetRefs: [${target}]
  circuitBreaker: { maxParallelRequests: 7 }
`;

function policies(yaml: string) {
  const objects = parseManifests(yaml, 'p.yaml').map((m) => ({
    kind: m.kind,
    name: m.metadata.name,
    ...(m.metadata.namespace ? { namespace: m.metadata.namespace } : {}),
    object: m.raw,
  }));
  const c = compile(worldOf(objects, new Map([['ns', {}]]), new Map([['ns/gw', '198.51.100.1']])));
  const out: Record<string, string | undefined> = {};
  for (const t of c.gatewayPorts)
    for (const l of t.listeners) for (const e of l.entries) out[`gw ${e.route.name}`] = e.policy?.policy;
  for (const t of c.meshPorts)
    for (const e of t.entries) out[`mesh ${t.service} ${e.route.name}`] = e.policy?.policy;
  return out;
}

test('a policy targeting a Service applies to the rules routing to it and to its mesh routes', () => {
  const svc = btp('svc-b', '{ group: "", kind: Service, name: b }');
  assert.deepEqual(policies(base + svc), {
    'gw to-a': undefined,
    'gw to-b': 'ns/svc-b',
    'mesh ns/b mesh-b': 'ns/svc-b',
  });
});

test("precedence: the route's own policy, then a Service's, then the Gateway's", () => {
  const gw = btp('gw', '{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }');
  const svc = btp('svc-a', '{ group: "", kind: Service, name: a }');
  const route = btp('route', '{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: to-a }');
  assert.deepEqual(policies(base + gw + svc), {
    'gw to-a': 'ns/svc-a',
    'gw to-b': 'ns/gw',
    'mesh ns/b mesh-b': 'ns/svc-a',
  });
  assert.deepEqual(policies(base + gw + svc + route), {
    'gw to-a': 'ns/route',
    'gw to-b': 'ns/gw',
    'mesh ns/b mesh-b': 'ns/svc-a',
  });
});

test('a Service target must be in the core group', () => {
  assert.throws(
    () =>
      parseManifests(
        base + btp('bad', '{ group: gateway.networking.k8s.io, kind: Service, name: a }'),
        'p.yaml',
      ),
    (err: Error & { problems?: { field?: string; location?: { field?: string } }[] }) =>
      /spec\.targetRefs\[0\]\.group/.test(JSON.stringify(err.problems ?? err.message)),
  );
});
