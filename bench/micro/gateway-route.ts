// Micro-benchmark of the Gateway API data plane's per-request work without a lab: N HTTPRoutes
// (each its own hostname and path prefix) on one Gateway listener, compiled once; then the time the
// router takes per request for the first route, the last route and a request no route takes, and
// the compile time. Shows how routing cost grows with the number of routes (the table is scanned in
// precedence order). Prints a table.
// Run: node dist/bench/micro/gateway-route.js [--requests 20000]
import { compile } from '../../src/gateway/compile.js';
import { routeGateway, type RouteRequest } from '../../src/gateway/route.js';
import { worldOf, type WorldObject } from '../../src/gateway/world.js';

const reqArg = process.argv.indexOf('--requests');
const requests = reqArg > 0 ? Number(process.argv[reqArg + 1]) : 20_000;

function objects(n: number): WorldObject[] {
  const out: WorldObject[] = [
    {
      kind: 'GatewayClass',
      name: 'weir',
      object: {
        kind: 'GatewayClass',
        metadata: { name: 'weir' },
        spec: { controllerName: 'weir.dev/gateway-controller' },
      },
    },
    {
      kind: 'Gateway',
      namespace: 'b',
      name: 'gw',
      object: {
        kind: 'Gateway',
        metadata: { name: 'gw', namespace: 'b' },
        spec: { gatewayClassName: 'weir', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
      },
    },
    { kind: 'Service', namespace: 'b', name: 'svc', object: { spec: { ports: [{ port: 80 }] } } },
  ];
  for (let i = 0; i < n; i++)
    out.push({
      kind: 'HTTPRoute',
      namespace: 'b',
      name: `r${i}`,
      object: {
        kind: 'HTTPRoute',
        metadata: {
          name: `r${i}`,
          namespace: 'b',
          creationTimestamp: `2026-01-01T00:00:${String(i % 60).padStart(2, '0')}Z`,
        },
        spec: {
          parentRefs: [{ name: 'gw' }],
          hostnames: [`host${i}.example.com`],
          rules: [
            {
              matches: [{ path: { type: 'PathPrefix', value: `/app${i}` } }],
              filters: [
                {
                  type: 'RequestHeaderModifier',
                  requestHeaderModifier: { set: [{ name: 'x-route', value: String(i) }] },
                },
              ],
              backendRefs: [{ name: 'svc', port: 80 }],
            },
          ],
        },
      },
    });
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

console.log('routes  compile ms  first ns/req  last ns/req  miss ns/req');
for (const n of [1, 100, 1000]) {
  const t0 = performance.now();
  const compiled = compile(worldOf(objects(n), new Map([['b', {}]]), new Map([['b/gw', '198.51.100.10']])));
  const compileMs = performance.now() - t0;
  const table = compiled.gatewayPorts[0];
  if (!table) throw new Error('no table');
  const req = (i: number): RouteRequest => ({
    method: 'GET',
    path: `/app${i}/x?y=1`,
    host: `host${i}.example.com`,
    headers: { 'user-agent': ['bench'] },
  });
  const per = (r: RouteRequest, want: string) => {
    const runs: number[] = [];
    for (let round = 0; round < 5; round++) {
      const t = performance.now();
      for (let k = 0; k < requests; k++) {
        const d = routeGateway(table, r, () => 0.5);
        if (d.kind !== want) throw new Error(`${d.kind}, want ${want}`);
      }
      runs.push(((performance.now() - t) * 1e6) / requests);
    }
    return median(runs);
  };
  const first = per(req(0), 'forward');
  const last = per(req(n - 1), 'forward');
  const miss = per({ ...req(0), host: 'nobody.example.org' }, 'no-route');
  console.log(
    `${String(n).padStart(6)}  ${compileMs.toFixed(1).padStart(10)}  ${first.toFixed(0).padStart(12)}  ${last.toFixed(0).padStart(11)}  ${miss.toFixed(0).padStart(11)}`,
  );
}
