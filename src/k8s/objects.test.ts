import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateService } from '../service/api/index.js';
import { k8sTime, namespaceObject, podObject, serviceObject, v1List, type PodRecord } from './objects.js';

const pod: PodRecord = {
  namespace: 'shop',
  name: 'backend',
  uid: '4f7c1c5e-9d7a-4d1e-8f00-0b7e9c1a2b3c',
  createdAt: '2025-03-04T05:06:07.891Z',
  labels: { app: 'backend' },
  annotations: { note: 'x' },
  containers: [
    {
      name: 'api',
      image: 'weir/workload',
      ports: [
        { name: 'http', containerPort: 8080, protocol: 'TCP' },
        { containerPort: 53, protocol: 'UDP' },
      ],
    },
    { name: 'sidecar', ports: [] },
  ],
  node: 'node1',
  ip: '10.244.0.3',
  ip6: 'fd00:10:244::3',
  ready: true,
};

describe('v1 objects', () => {
  it('k8sTime: RFC 3339 in UTC, whole seconds; unknown stays unknown', () => {
    assert.equal(k8sTime('2025-03-04T05:06:07.891Z'), '2025-03-04T05:06:07Z');
    assert.equal(k8sTime(undefined), undefined);
    assert.equal(k8sTime('not a time'), undefined);
  });

  it('a ready pod: metadata, containers as applied, both IPs, host IPs, Running and Ready', () => {
    assert.deepEqual(podObject(pod, { ip: '10.244.0.1', ip6: 'fd00:10:244::1' }), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'backend',
        namespace: 'shop',
        uid: '4f7c1c5e-9d7a-4d1e-8f00-0b7e9c1a2b3c',
        creationTimestamp: '2025-03-04T05:06:07Z',
        labels: { app: 'backend' },
        annotations: { note: 'x' },
      },
      spec: {
        containers: [
          {
            name: 'api',
            image: 'weir/workload',
            ports: [
              { name: 'http', containerPort: 8080, protocol: 'TCP' },
              { containerPort: 53, protocol: 'UDP' },
            ],
          },
          { name: 'sidecar' },
        ],
        nodeName: 'node1',
      },
      status: {
        phase: 'Running',
        conditions: [
          {
            type: 'Initialized',
            status: 'True',
            lastProbeTime: null,
            lastTransitionTime: '2025-03-04T05:06:07Z',
          },
          { type: 'Ready', status: 'True', lastProbeTime: null },
          { type: 'ContainersReady', status: 'True', lastProbeTime: null },
          {
            type: 'PodScheduled',
            status: 'True',
            lastProbeTime: null,
            lastTransitionTime: '2025-03-04T05:06:07Z',
          },
        ],
        hostIP: '10.244.0.1',
        hostIPs: [{ ip: '10.244.0.1' }, { ip: 'fd00:10:244::1' }],
        podIP: '10.244.0.3',
        podIPs: [{ ip: '10.244.0.3' }, { ip: 'fd00:10:244::3' }],
        startTime: '2025-03-04T05:06:07Z',
      },
    });
  });

  it('a pod whose workload died is Failed and not Ready; what is not recorded is left out', () => {
    const p = podObject({
      namespace: 'x',
      name: 'a',
      labels: {},
      node: 'node1',
      ip: '10.244.0.9',
      ready: false,
    });
    assert.deepEqual(p.metadata, { name: 'a', namespace: 'x' });
    assert.deepEqual(p.spec, { nodeName: 'node1' });
    assert.equal(p.status.phase, 'Failed');
    // One still waiting (a runtime's Pod before its container's ADD) is Pending.
    assert.equal(
      podObject({
        namespace: 'x',
        name: 'b',
        labels: {},
        node: 'node1',
        ip: '',
        ready: false,
        phase: 'Pending',
      }).status.phase,
      'Pending',
    );
    assert.deepEqual(
      p.status.conditions.map((c) => [c.type, c.status]),
      [
        ['Initialized', 'True'],
        ['Ready', 'False'],
        ['ContainersReady', 'False'],
        ['PodScheduled', 'True'],
      ],
    );
    assert.deepEqual(p.status.podIPs, [{ ip: '10.244.0.9' }]);
    assert.equal('hostIP' in p.status, false);
    assert.equal('startTime' in p.status, false);
  });

  it('a namespace is Active', () => {
    assert.deepEqual(
      namespaceObject({
        name: 'shop',
        labels: { 'kubernetes.io/metadata.name': 'shop' },
        uid: 'u',
        createdAt: '2025-01-01T00:00:00.000Z',
      }),
      {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: {
          name: 'shop',
          uid: 'u',
          creationTimestamp: '2025-01-01T00:00:00Z',
          labels: { 'kubernetes.io/metadata.name': 'shop' },
        },
        status: { phase: 'Active' },
      },
    );
  });

  const svc = (spec: Record<string, unknown>, name = 'web') =>
    validateService(
      { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'shop' }, spec },
      { file: 't.yaml', object: `Service shop/${name}` },
    );

  it('a ClusterIP service: ports with their targetPorts, selector, clusterIPs and families', () => {
    const s = serviceObject(
      svc({
        clusterIP: '10.96.0.10',
        clusterIPs: ['10.96.0.10'],
        ipFamilies: ['IPv4'],
        selector: { app: 'web' },
        ports: [
          { name: 'http', port: 80, targetPort: 'http' },
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
        ],
      }),
      { labels: { tier: 'front' } },
    );
    assert.deepEqual(s, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'shop', labels: { tier: 'front' } },
      spec: {
        ports: [
          { name: 'http', protocol: 'TCP', port: 80, targetPort: 'http' },
          { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353 },
        ],
        selector: { app: 'web' },
        clusterIP: '10.96.0.10',
        clusterIPs: ['10.96.0.10'],
        type: 'ClusterIP',
        sessionAffinity: 'None',
        ipFamilies: ['IPv4'],
        ipFamilyPolicy: 'SingleStack',
        internalTrafficPolicy: 'Cluster',
      },
      status: { loadBalancer: {} },
    });
  });

  it('a dual-stack NodePort service with ClientIP affinity', () => {
    const s = serviceObject(
      svc({
        type: 'NodePort',
        clusterIPs: ['10.96.0.11', 'fd00:10:96::b'],
        ipFamilies: ['IPv4', 'IPv6'],
        ipFamilyPolicy: 'RequireDualStack',
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
        selector: { app: 'web' },
        ports: [{ port: 80, nodePort: 30080 }],
      }),
    );
    assert.deepEqual(s.spec.ports, [{ protocol: 'TCP', port: 80, targetPort: 80, nodePort: 30080 }]);
    assert.equal(s.spec.clusterIP, '10.96.0.11');
    assert.deepEqual(s.spec.clusterIPs, ['10.96.0.11', 'fd00:10:96::b']);
    assert.deepEqual(s.spec.ipFamilies, ['IPv4', 'IPv6']);
    assert.equal(s.spec.ipFamilyPolicy, 'RequireDualStack');
    assert.equal(s.spec.type, 'NodePort');
    assert.equal(s.spec.externalTrafficPolicy, 'Cluster');
    assert.deepEqual(s.spec.sessionAffinityConfig, { clientIP: { timeoutSeconds: 60 } });
  });

  it('a headless service has clusterIP None and no ports when it declares none', () => {
    const s = serviceObject(svc({ clusterIP: 'None', selector: { app: 'web' } }, 'db'));
    assert.equal(s.spec.clusterIP, 'None');
    assert.deepEqual(s.spec.clusterIPs, ['None']);
    assert.equal('ports' in s.spec, false);
  });

  it('a List as kubectl prints it', () => {
    assert.deepEqual(v1List([1, 2]), {
      apiVersion: 'v1',
      items: [1, 2],
      kind: 'List',
      metadata: { resourceVersion: '' },
    });
    assert.deepEqual(Object.keys(v1List([])), ['apiVersion', 'items', 'kind', 'metadata']);
  });
});
