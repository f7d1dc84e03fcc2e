import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdentityAllocator } from './allocator.js';
import { lookupIpcache, parseIP, parsePrefix, formatPrefix, PrefixTable } from './cidr.js';
import { LabelFilter } from './filter.js';
import { formatLabel } from './labels.js';
import { podSecurityLabels } from './pod-labels.js';
import { IDENTITY_HOST, IDENTITY_WORLD, LOCAL_IDENTITY_MIN } from './reserved.js';

test('pod security labels: namespace, namespace labels, cluster, service account; noisy labels filtered', () => {
  const labels = podSecurityLabels({
    namespace: 'x',
    labels: {
      app: 'web',
      'pod-template-hash': 'abc',
      'controller-revision-hash': '1',
      'job-name': 'j',
      'batch.kubernetes.io/job-name': 'j',
      'app.kubernetes.io/name': 'web',
      'statefulset.kubernetes.io/pod-name': 'w-0',
    },
    namespaceLabels: { team: 'a' },
    serviceAccount: 'sa1',
  })
    .map(formatLabel)
    .sort();
  assert.deepEqual(labels, [
    'k8s:app.kubernetes.io/name=web',
    'k8s:app=web',
    'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x',
    'k8s:io.cilium.k8s.namespace.labels.team=a',
    'k8s:io.cilium.k8s.policy.cluster=default',
    'k8s:io.cilium.k8s.policy.serviceaccount=sa1',
    'k8s:io.kubernetes.pod.namespace=x',
  ]);
});

test('label filter: user inclusive patterns keep only matching keys (plus the defaults kept)', () => {
  const f = LabelFilter.parse('k8s:app k8s:!app-version');
  const keep = (key: string) => f.keep({ source: 'k8s', key, value: 'v' });
  assert.equal(keep('app'), true);
  assert.equal(keep('app-version'), false);
  assert.equal(keep('tier'), false);
  assert.equal(keep('io.kubernetes.pod.namespace'), true);
  assert.equal(keep('io.kubernetes.container.name'), false);
  assert.equal(f.keep({ source: 'reserved', key: 'host', value: '' }), true);
});

test('allocator: same sorted labels -> same id; cluster ids from 256; reserved; refcount release', () => {
  const a = new IdentityAllocator();
  const x = a.allocate(['k8s:b=2', 'k8s:a=1']);
  const y = a.allocate(['k8s:a=1', 'k8s:b=2']);
  assert.equal(x.id, 256);
  assert.equal(y.id, 256);
  assert.equal(a.allocate(['k8s:a=2']).id, 257);
  assert.equal(a.allocate(['reserved:host']).id, IDENTITY_HOST);
  assert.equal(a.allocate(['reserved:world']).id, IDENTITY_WORLD);
  assert.equal(a.refs(256), 2);
  a.release(256);
  assert.equal(a.get(256)?.id, 256);
  a.release(256);
  assert.equal(a.get(256), undefined);
  // Freed ids are not reused at once.
  assert.equal(a.allocate(['k8s:c=3']).id, 258);
  assert.throws(
    () => a.release(256),
    (e: { code?: string }) => e.code === 'ERR_IDENTITY_UNKNOWN',
  );
});

test('allocator: CIDR identities come from the local range', () => {
  const a = new IdentityAllocator();
  const c = a.allocate(['cidr:10.0.0.0/8', 'reserved:world']);
  assert.equal(c.id, LOCAL_IDENTITY_MIN);
  assert.equal(LOCAL_IDENTITY_MIN, (1 << 24) + 1);
  assert.equal(a.allocate(['k8s:a=1']).id, 256);
});

test('allocator: JSON round trip keeps ids stable and continues numbering', () => {
  const a = new IdentityAllocator();
  a.allocate(['k8s:a=1']);
  a.allocate(['k8s:b=1']);
  a.release(256);
  const b = IdentityAllocator.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
  assert.equal(b.find(['k8s:b=1'])?.id, 257);
  assert.equal(b.allocate(['k8s:b=1']).id, 257);
  assert.equal(b.allocate(['k8s:c=1']).id, 258);
  assert.throws(
    () => IdentityAllocator.fromJSON({} as never),
    (e: { code?: string }) => e.code === 'ERR_IDENTITY_STATE',
  );
});

test('CIDR parsing follows Go ParseCIDR (host bits masked), IPv6, ipcache LPM', () => {
  assert.equal(formatPrefix(parsePrefix('10.244.0.7/4') ?? assert.fail()), '0.0.0.0/4');
  assert.equal(formatPrefix(parsePrefix('192.0.2.10/24') ?? assert.fail()), '192.0.2.0/24');
  assert.equal(formatPrefix(parsePrefix('fd00::1/64') ?? assert.fail()), 'fd00::/64');
  assert.equal(parsePrefix('10.0.0.0/33'), undefined);
  assert.equal(parsePrefix('10.0.0/8'), undefined);
  assert.equal(parsePrefix('10.0.0.1'), undefined);
  assert.equal(formatPrefix(parsePrefix('10.0.0.1', { allowBareIP: true }) ?? assert.fail()), '10.0.0.1/32');
  const ipc = [
    { prefix: '0.0.0.0/0', identity: 2 },
    { prefix: '192.0.2.0/24', identity: 16777217 },
    { prefix: '192.0.2.10/32', identity: 16777218 },
  ];
  assert.equal(lookupIpcache(ipc, '192.0.2.10')?.identity, 16777218);
  assert.equal(lookupIpcache(ipc, '192.0.2.20')?.identity, 16777217);
  assert.equal(lookupIpcache(ipc, '8.8.8.8')?.identity, 2);
});

test('IPv4 parsing rejects leading zeros, octets over 255, short and trailing forms', () => {
  assert.deepEqual(parseIP('10.0.255.1'), { family: 4, addr: 0x0a00ff01n });
  for (const bad of ['01.2.3.4', '256.1.1.1', '1.2.3', '1.2.3.4.', '1..2.3', '1.2.3.4.5', '', '1.2.3.a'])
    assert.equal(parseIP(bad), undefined, bad);
  assert.equal(formatPrefix(parsePrefix('255.255.255.255/32') ?? assert.fail()), '255.255.255.255/32');
});

test('PrefixTable: longest match per family, only prefixes that contain the query', () => {
  const t = new PrefixTable<string>();
  const p = (s: string) => parsePrefix(s, { allowBareIP: true }) ?? assert.fail(s);
  t.set(p('10.0.0.0/8'), 'a');
  t.set(p('10.1.0.0/16'), 'b');
  t.set(p('fd00::/8'), 'six');
  assert.equal(t.longest(p('10.1.2.3')), 'b');
  assert.equal(t.longest(p('10.2.2.3')), 'a');
  assert.equal(t.longest(p('10.1.0.0/12')), 'a', 'a /12 is not inside the /16');
  assert.equal(t.longest(p('11.0.0.1')), undefined);
  assert.equal(t.longest(p('fd00::1')), 'six');
  t.set(p('0.0.0.0/0'), 'world');
  assert.equal(t.longest(p('11.0.0.1')), 'world');
});

test('allocator generation moves only when an id is allocated or freed', () => {
  const a = new IdentityAllocator();
  const g0 = a.generation;
  const x = a.allocate(['k8s:app=x']);
  assert.equal(a.generation, g0 + 1);
  assert.equal(a.allocate(['k8s:app=x']).id, x.id);
  assert.equal(a.allocate([{ source: 'k8s', key: 'app', value: 'x' }]).id, x.id);
  assert.equal(a.generation, g0 + 1);
  a.release(x.id);
  a.release(x.id);
  assert.equal(a.generation, g0 + 1);
  a.release(x.id);
  assert.equal(a.generation, g0 + 2);
  assert.equal(a.find(['k8s:app=x']), undefined);
});
