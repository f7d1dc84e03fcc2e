import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Service } from './api/types.js';
import { allocateClusterIP, assignIds, parseServiceCIDR } from './allocate.js';
import { maglevSeed, defaultMaglevSeed } from './maglev.js';
import {
  computeLb,
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
    assert.deepEqual(computeLb(input({ services: [{ ...web, clusterIP: 'None' }] })).frontends, []);
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

describe('allocation', () => {
  it('gives stable, free ClusterIPs inside the CIDR', () => {
    const cidr = parseServiceCIDR('10.96.0.0/16');
    const a = allocateClusterIP('x/web', cidr, new Set());
    assert.match(a, /^10\.96\./);
    assert.equal(allocateClusterIP('x/web', cidr, new Set()), a);
    assert.notEqual(allocateClusterIP('x/web', cidr, new Set([a])), a);
    const tiny = parseServiceCIDR('10.96.0.0/30');
    assert.equal(allocateClusterIP('x/web', tiny, new Set()), '10.96.0.2');
  });

  it('keeps ids, fills the lowest free, releases unused', () => {
    assert.deepEqual(assignIds({ a: 2, gone: 1 }, ['b', 'a', 'c'], 10, 'ids'), { a: 2, b: 1, c: 3 });
  });
});
