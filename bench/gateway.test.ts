// The gateway bench's generated objects and nginx config: as many routes as server blocks, the same
// hostnames, and objects the agent's own validation and compiler accept.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gatewayView } from '../src/gateway/stored.js';
import { gatewayBase, gatewayRoutes, nginxRoutesConf, routeHost } from './gateway.js';

describe('bench gateway', () => {
  it('makes N HTTPRoutes with distinct hostnames, the last one r<N-1>', () => {
    const routes = gatewayRoutes(0, 100);
    assert.equal(routes.length, 100);
    const hosts = routes.map((r) => (r.object as { spec: { hostnames: string[] } }).spec.hostnames[0]);
    assert.equal(new Set(hosts).size, 100);
    assert.equal(hosts.at(-1), routeHost(99));
    assert.deepEqual(
      gatewayRoutes(100, 102).map((r) => r.name),
      ['r100', 'r101'],
    );
  });

  it('compiles: every route attached to the one listener and sent to the upstream Service', () => {
    const objects = [...gatewayBase(11170), ...gatewayRoutes(0, 3)];
    const view = gatewayView(objects as Parameters<typeof gatewayView>[0], new Map([['bench', {}]]));
    const gw = view.objects.find((o) => o.kind === 'Gateway');
    const status = (gw?.object as { status: { listeners: { attachedRoutes: number; port?: number }[] } })
      .status;
    assert.equal(status.listeners[0]?.attachedRoutes, 3);
    assert.equal(status.listeners.length, 1);
    const route = view.objects.find((o) => o.kind === 'HTTPRoute' && o.name === 'r2');
    const parents = (
      route?.object as { status: { parents: { conditions: { type: string; status: string }[] }[] } }
    ).status.parents;
    for (const type of ['Accepted', 'ResolvedRefs'])
      assert.equal(parents[0]?.conditions.find((c) => c.type === type)?.status, 'True', type);
  });

  it('writes nginx with one server block per route, server_name the route hostnames', () => {
    const conf = nginxRoutesConf('/tmp/weir-x', 11175, '10.244.0.2:11170', 1000);
    assert.equal(conf.match(/server_name /g)?.length, 1000);
    assert.equal(conf.match(/location \/ /g)?.length, 1000);
    // nginx accepts a listen option once per address:port.
    assert.equal(conf.match(/backlog=/g)?.length, 1);
    assert.ok(conf.includes(`server_name ${routeHost(999)};`));
    assert.ok(conf.includes('upstream backend { server 10.244.0.2:11170;'));
    assert.throws(() => nginxRoutesConf('/tmp/weir-x', 1, 'a:1', 0), { code: 'ERR_BENCH_PEER' });
  });
});
