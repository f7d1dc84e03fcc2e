import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Service } from './api/types.js';
import { allocateClusterIP, assignIds, clusterFamilies, parseServiceCIDR } from './allocate.js';
import { maglevSeed, defaultMaglevSeed } from './maglev.js';
import {
  computeLb,
  deriveSlices,
  serviceEntries,
  SVC_F_AFFINITY,
  SVC_F_LOCAL,
  SVC_F_MAGLEV,
  SVC_F_NODEPORT,
  type LbConfig,
  type LbInput,
  type LbPod,
} from './model.js';

const config: LbConfig = {
  algorithm: 'random',
  maglevSize: 251,
  maglevSeed: maglevSeed(defaultMaglevSeed),
  nodeName: 'node1',
  nodeIP: '10.0.1.1',
};

const web: Service = {
  namespace: 'x',
  name: 'web',
  type: 'ClusterIP',
  clusterIP: '10.96.0.10',
  clusterIPs: ['10.96.0.10'],
  ipFamilies: ['IPv4'],
  ipFamilyPolicy: 'SingleStack',
  ports: [
    { name: 'http', protocol: 'TCP', port: 80, targetPort: 'web' },
    { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353 },
  ],
  selector: { app: 'web' },
  sessionAffinity: 'None',
  affinityTimeoutSeconds: 10800,
  externalTrafficPolicy: 'Cluster',
  internalTrafficPolicy: 'Cluster',
};

const pod = (name: string, ip: string, extra: Partial<LbPod> = {}): LbPod => ({
  namespace: 'x',
  name,
  labels: { app: 'web' },
  ip,
  ports: [{ name: 'web', containerPort: 8080, protocol: 'TCP' }],
  node: 'node1',
  ready: true,
  terminating: false,
  ...extra,
});

const input = (over: Partial<LbInput> = {}): LbInput => ({
  services: [web],
  slices: [],
  pods: [pod('a', '10.0.1.2'), pod('b', '10.0.1.3')],
  config,
  ids: { backends: {}, revNat: {} },
  ...over,
});

describe('service model', () => {
  it('derives frontends per port, named targetPorts resolved per pod', () => {
    const out = computeLb(
      input({
        pods: [
          pod('a', '10.0.1.2'),
          pod('b', '10.0.1.3', { ports: [{ name: 'web', containerPort: 9090, protocol: 'TCP' }] }),
          pod('other', '10.0.1.9', { labels: { app: 'db' } }),
        ],
      }),
    );
    const fe = out.frontends.map((f) => ({
      fe: `${f.address}:${f.port}/${f.protocol}`,
      be: f.backends.map((id) => out.backends.get(id)?.name),
    }));
    assert.deepEqual(fe, [
      { fe: '10.96.0.10:53/UDP', be: ['10.0.1.2:5353/UDP', '10.0.1.3:5353/UDP'] },
      { fe: '10.96.0.10:80/TCP', be: ['10.0.1.2:8080/TCP', '10.0.1.3:9090/TCP'] },
    ]);
    // Pods with different resolved ports land in different derived slices, as in Kubernetes.
    assert.equal(out.derivedSlices.length, 2);
  });

  it('lays out ACTIVE backends first, then TERMINATING; not-ready pods are no backends', () => {
    const out = computeLb(
      input({
        pods: [
          pod('a', '10.0.1.2', { terminating: true }),
          pod('b', '10.0.1.3'),
          pod('c', '10.0.1.4', { ready: false }),
        ],
      }),
    );
    const http = out.frontends.find((f) => f.port === 80);
    assert.ok(http);
    assert.equal(http.active, 1);
    assert.deepEqual(
      http.backends.map((id) => [out.backends.get(id)?.address, out.backends.get(id)?.state]),
      [
        ['10.0.1.3', 'active'],
        ['10.0.1.2', 'terminating'],
      ],
    );
    const entries = serviceEntries(http);
    assert.deepEqual(entries[0]?.value, {
      backendId: 0,
      count: 2,
      revNatIndex: http.revNatIndex,
      active: 1,
      flags: 0,
    });
    assert.deepEqual(
      entries.slice(1).map((e) => [e.key.slot, e.value.backendId]),
      http.backends.map((id, i) => [i + 1, id]),
    );
  });

  it('keeps backend ids and rev-NAT indexes stable across changes', () => {
    const first = computeLb(input());
    const ids = first.ids;
    const grown = computeLb(
      input({ ids, pods: [pod('a', '10.0.1.2'), pod('b', '10.0.1.3'), pod('c', '10.0.1.4')] }),
    );
    for (const [name, id] of Object.entries(ids.backends)) assert.equal(grown.ids.backends[name], id);
    assert.deepEqual(grown.ids.revNat, ids.revNat);
    const shrunk = computeLb(input({ ids: grown.ids, pods: [pod('c', '10.0.1.4')] }));
    assert.equal(shrunk.ids.backends['10.0.1.4:8080/TCP'], grown.ids.backends['10.0.1.4:8080/TCP']);
    assert.equal(shrunk.ids.backends['10.0.1.2:8080/TCP'], undefined);
  });

  it('headless services get no frontend; NodePort gets one on the node IP', () => {
    assert.deepEqual(
      computeLb(input({ services: [{ ...web, clusterIP: 'None', clusterIPs: ['None'] }] })).frontends,
      [],
    );
    const np = computeLb(
      input({
        services: [
          {
            ...web,
            type: 'NodePort',
            ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }],
          },
        ],
      }),
    );
    const nodePort = np.frontends.find((f) => f.type === 'NodePort');
    assert.equal(nodePort?.address, '10.0.1.1');
    assert.equal(nodePort?.port, 30080);
    assert.equal((nodePort?.flags ?? 0) & SVC_F_NODEPORT, SVC_F_NODEPORT);
    assert.equal(nodePort?.backends.length, 2);
  });

  it('sets affinity with its timeout in slot 0, and maglev tables over ACTIVE backends', () => {
    const out = computeLb(
      input({
        services: [{ ...web, sessionAffinity: 'ClientIP', affinityTimeoutSeconds: 30 }],
        config: { ...config, algorithm: 'maglev' },
        pods: [pod('a', '10.0.1.2'), pod('b', '10.0.1.3'), pod('t', '10.0.1.4', { terminating: true })],
      }),
    );
    const http = out.frontends.find((f) => f.port === 80);
    assert.ok(http);
    assert.equal(http.flags, SVC_F_AFFINITY | SVC_F_MAGLEV);
    assert.equal(serviceEntries(http)[0]?.value.backendId, 30);
    const table = out.maglev.get(http.revNatIndex);
    assert.equal(table?.length, 251);
    assert.deepEqual(new Set(table), new Set(http.backends.slice(0, 2)));
  });

  it('keeps only node-local backends for traffic policy Local', () => {
    const out = computeLb(
      input({
        services: [{ ...web, internalTrafficPolicy: 'Local' }],
        pods: [pod('a', '10.0.1.2'), pod('far', '10.0.2.2', { node: 'node2' })],
      }),
    );
    const http = out.frontends.find((f) => f.port === 80);
    assert.equal((http?.flags ?? 0) & SVC_F_LOCAL, SVC_F_LOCAL);
    assert.deepEqual(
      http?.backends.map((id) => out.backends.get(id)?.address),
      ['10.0.1.2'],
    );
  });

  it('reuses Maglev tables whose backends did not change', () => {
    const cache = new Map<string, Uint32Array>();
    const maglev = { ...config, algorithm: 'maglev' as const };
    const first = computeLb(input({ config: maglev, maglevCache: cache }));
    assert.equal(cache.size, 2);
    const again = computeLb(input({ config: maglev, maglevCache: cache, ids: first.ids }));
    for (const [rev, table] of again.maglev)
      assert.equal(table, first.maglev.get(rev), 'the same table object');
    const grown = computeLb(
      input({
        config: maglev,
        maglevCache: cache,
        ids: first.ids,
        pods: [pod('a', '10.0.1.2'), pod('b', '10.0.1.3'), pod('c', '10.0.1.4')],
      }),
    );
    assert.equal(cache.size, 2, 'tables no longer used are dropped');
    const fresh = computeLb(
      input({
        config: maglev,
        ids: grown.ids,
        pods: [pod('a', '10.0.1.2'), pod('b', '10.0.1.3'), pod('c', '10.0.1.4')],
      }),
    );
    for (const [rev, table] of grown.maglev) assert.deepEqual(table, fresh.maglev.get(rev));
  });

  it('takes backends of a selector-less service from applied EndpointSlices', () => {
    const out = computeLb(
      input({
        services: [
          {
            ...web,
            selector: undefined as never,
            ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 80 }],
          },
        ],
        slices: [
          {
            namespace: 'x',
            name: 'web-1',
            serviceName: 'web',
            addressType: 'IPv4',
            ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
            endpoints: [
              { addresses: ['10.0.2.5'], conditions: { ready: true, serving: true, terminating: false } },
              { addresses: ['10.0.2.6'], conditions: { ready: false, serving: false, terminating: true } },
            ],
          },
        ],
      }),
    );
    assert.deepEqual(
      [...out.backends.values()].map((b) => b.name),
      ['10.0.2.5:8080/TCP'],
    );
  });
});

describe('dual-stack services', () => {
  const dual: Service = {
    ...web,
    clusterIP: '10.96.0.10',
    clusterIPs: ['10.96.0.10', 'fd00:10:96::a'],
    ipFamilies: ['IPv4', 'IPv6'],
    ipFamilyPolicy: 'PreferDualStack',
  };
  const pods6 = [
    pod('a', '10.0.1.2', { ip6: 'fd00:10:244::2' }),
    pod('b', '10.0.1.3', { ip6: 'fd00:10:244::3' }),
    pod('v4only', '10.0.1.4'),
  ];
  const backendsOf = (out: ReturnType<typeof computeLb>, fe: string) =>
    out.frontends
      .find((f) => `${f.address}:${f.port}/${f.protocol}` === fe)
      ?.backends.map((id) => out.backends.get(id)?.name);

  it('gives each clusterIP family its own frontends, with backends of that family only', () => {
    const out = computeLb(input({ services: [dual], pods: pods6 }));
    assert.deepEqual(out.frontends.map((f) => `${f.type} ${f.address} ${f.port}/${f.protocol}`).sort(), [
      'ClusterIP 10.96.0.10 53/UDP',
      'ClusterIP 10.96.0.10 80/TCP',
      'ClusterIP fd00:10:96::a 53/UDP',
      'ClusterIP fd00:10:96::a 80/TCP',
    ]);
    assert.deepEqual(backendsOf(out, '10.96.0.10:80/TCP'), [
      '10.0.1.2:8080/TCP',
      '10.0.1.3:8080/TCP',
      '10.0.1.4:8080/TCP',
    ]);
    assert.deepEqual(backendsOf(out, 'fd00:10:96::a:80/TCP'), [
      '[fd00:10:244::2]:8080/TCP',
      '[fd00:10:244::3]:8080/TCP',
    ]);
    assert.deepEqual(backendsOf(out, 'fd00:10:96::a:53/UDP'), [
      '[fd00:10:244::2]:5353/UDP',
      '[fd00:10:244::3]:5353/UDP',
    ]);
    // Stable ids keyed by Cilium's [v6]:port notation; every rev-NAT index is distinct.
    assert.ok('[fd00:10:96::a]:80/TCP' in out.ids.revNat);
    assert.equal(new Set(out.frontends.map((f) => f.revNatIndex)).size, 4);
  });

  it('derives one EndpointSlice per family (addressType IPv4 / IPv6, pod.ip6)', () => {
    const slices = deriveSlices(dual, pods6);
    assert.deepEqual(
      slices.map((s) => [s.name, s.addressType, s.endpoints.map((e) => e.addresses[0])]),
      [
        ['web-weir', 'IPv4', ['10.0.1.2', '10.0.1.3', '10.0.1.4']],
        ['web-weir-v6', 'IPv6', ['fd00:10:244::2', 'fd00:10:244::3']],
      ],
    );
    const v6only: Service = { ...dual, clusterIPs: ['fd00:10:96::a'], ipFamilies: ['IPv6'] };
    assert.deepEqual(
      deriveSlices(v6only, pods6).map((s) => s.addressType),
      ['IPv6'],
    );
    // Not yet allocated and no families: IPv4, as before dual-stack.
    const legacy: Service = { ...web, clusterIPs: [], ipFamilies: [] };
    assert.deepEqual(
      deriveSlices(legacy, pods6).map((s) => s.addressType),
      ['IPv4'],
    );
  });

  it('takes IPv6 backends from a hand-applied IPv6 EndpointSlice, for the IPv6 frontend only', () => {
    const out = computeLb(
      input({
        services: [{ ...dual, selector: undefined as never, ports: [web.ports[0] as Service['ports'][0]] }],
        pods: [],
        slices: [
          {
            namespace: 'x',
            name: 'web-v6',
            serviceName: 'web',
            addressType: 'IPv6',
            ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
            endpoints: [
              { addresses: ['fd00::5'], conditions: { ready: true, serving: true, terminating: false } },
            ],
          },
        ],
      }),
    );
    assert.deepEqual(backendsOf(out, 'fd00:10:96::a:80/TCP'), ['[fd00::5]:8080/TCP']);
    assert.deepEqual(backendsOf(out, '10.96.0.10:80/TCP'), []);
  });

  it('keeps NodePort on the IPv4 node address with IPv4 backends', () => {
    const np: Service = {
      ...dual,
      type: 'NodePort',
      ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }],
    };
    const out = computeLb(input({ services: [np], pods: pods6 }));
    const nodePorts = out.frontends.filter((f) => f.type === 'NodePort');
    assert.deepEqual(
      nodePorts.map((f) => `${f.address}:${f.port}`),
      ['10.0.1.1:30080'],
    );
    assert.deepEqual(backendsOf(out, '10.0.1.1:30080/TCP'), [
      '10.0.1.2:8080/TCP',
      '10.0.1.3:8080/TCP',
      '10.0.1.4:8080/TCP',
    ]);
  });
});

describe('allocation', () => {
  it('gives stable, free ClusterIPs inside the CIDR', () => {
    const cidr = parseServiceCIDR('10.96.0.0/16');
    const a = allocateClusterIP('x/web', cidr, new Set());
    // The address weir gave before dual-stack: existing services keep theirs.
    assert.equal(a, '10.96.185.39');
    assert.equal(allocateClusterIP('x/web', cidr, new Set()), a);
    assert.notEqual(allocateClusterIP('x/web', cidr, new Set([a])), a);
    const tiny = parseServiceCIDR('10.96.0.0/30');
    assert.equal(allocateClusterIP('x/web', tiny, new Set()), '10.96.0.2');
  });

  it('allocates IPv6 ClusterIPs the same way, in canonical text', () => {
    const cidr = parseServiceCIDR('fd00:10:96:0::/112', 'IPv6');
    assert.equal(cidr.text, 'fd00:10:96::/112');
    const a = allocateClusterIP('x/web', cidr, new Set());
    assert.match(a, /^fd00:10:96::[0-9a-f]{1,4}$/);
    assert.equal(allocateClusterIP('x/web', cidr, new Set()), a);
    const b = allocateClusterIP('x/web', cidr, new Set([a]));
    assert.notEqual(b, a);
    assert.match(b, /^fd00:10:96::/);
    // /126: the anycast (::0) and ::1 are never given; ::2 and ::3 are.
    const tiny = parseServiceCIDR('fd00:10:96::/126', 'IPv6');
    const got = new Set<string>();
    for (let i = 0; i < 2; i++) got.add(allocateClusterIP('x/web', tiny, got));
    assert.deepEqual([...got].sort(), ['fd00:10:96::2', 'fd00:10:96::3']);
    assert.throws(() => allocateClusterIP('x/web', tiny, got), { code: 'ERR_SERVICE_CIDR_EXHAUSTED' });
  });

  it('refuses service CIDRs of the wrong family or size, naming the option', () => {
    assert.throws(
      () => parseServiceCIDR('fd00::/64', 'IPv6'),
      (e: { code: string; location: object }) => {
        assert.equal(e.code, 'ERR_SERVICE_CIDR');
        assert.deepEqual(e.location, { field: '--service-cidr-v6' });
        return true;
      },
    );
    assert.throws(() => parseServiceCIDR('10.96.0.0/16', 'IPv6'), { code: 'ERR_SERVICE_CIDR' });
    assert.throws(() => parseServiceCIDR('fd00::/112'), { code: 'ERR_SERVICE_CIDR' });
  });

  it("resolves a service's families as Kubernetes does", () => {
    const s = (
      ipFamilies: ('IPv4' | 'IPv6')[],
      ipFamilyPolicy: Service['ipFamilyPolicy'],
      clusterIPs: string[] = [],
    ) => ({
      ipFamilies,
      ipFamilyPolicy,
      clusterIPs,
    });
    assert.deepEqual(clusterFamilies(s([], 'SingleStack'), true), ['IPv4']);
    assert.deepEqual(clusterFamilies(s(['IPv6'], 'SingleStack'), true), ['IPv6']);
    assert.deepEqual(clusterFamilies(s([], 'PreferDualStack'), true), ['IPv4', 'IPv6']);
    assert.deepEqual(clusterFamilies(s(['IPv6'], 'RequireDualStack'), true), ['IPv6', 'IPv4']);
    // Without an IPv6 service CIDR: PreferDualStack degrades, the rest is refused.
    assert.deepEqual(clusterFamilies(s([], 'PreferDualStack'), false), ['IPv4']);
    assert.deepEqual(clusterFamilies(s(['IPv4', 'IPv6'], 'PreferDualStack'), false), ['IPv4']);
    const loc = { file: 'svc.yaml', object: 'Service x/web' };
    const refused = (svc: ReturnType<typeof s>, field: string) =>
      assert.throws(
        () => clusterFamilies(svc, false, loc),
        (e: { code: string; location: object }) => {
          assert.equal(e.code, 'ERR_SERVICE_IPFAMILY_UNAVAILABLE');
          assert.deepEqual(e.location, { ...loc, field });
          return true;
        },
      );
    refused(s([], 'RequireDualStack'), 'spec.ipFamilyPolicy');
    refused(s(['IPv6'], 'SingleStack'), 'spec.ipFamilies');
    refused(s(['IPv6'], 'PreferDualStack'), 'spec.ipFamilies');
    refused(s(['IPv4', 'IPv6'], 'PreferDualStack', ['10.96.0.9', 'fd00:10:96::9']), 'spec.clusterIPs[1]');
  });

  it('keeps ids, fills the lowest free, releases unused', () => {
    assert.deepEqual(assignIds({ a: 2, gone: 1 }, ['b', 'a', 'c'], 10, 'ids'), { a: 2, b: 1, c: 3 });
  });
});
