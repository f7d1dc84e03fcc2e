import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { ValidationError } from '../../shared/errors.js';
import { validateEndpointSlice, validateService } from './index.js';

const loc = { file: 'svc.yaml', object: 'Service x/web' };
const svc = (spec: string) =>
  validateService(
    parse(`apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x}\nspec:\n${spec}`),
    loc,
  );

function problems(fn: () => unknown): { code: string; field?: string; file?: string; object?: string }[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err.problems.map((p) => ({ code: p.code, ...p.location }));
  }
  assert.fail('expected a ValidationError');
}

describe('Service validation', () => {
  it('fills Kubernetes defaults', () => {
    const s = svc('  selector: {app: web}\n  ports: [{port: 80}]');
    assert.deepEqual(s, {
      namespace: 'x',
      name: 'web',
      type: 'ClusterIP',
      clusterIPs: [],
      ipFamilies: [],
      ipFamilyPolicy: 'SingleStack',
      ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 80 }],
      selector: { app: 'web' },
      sessionAffinity: 'None',
      affinityTimeoutSeconds: 10800,
      externalTrafficPolicy: 'Cluster',
      internalTrafficPolicy: 'Cluster',
    });
  });

  it("names a Service port with a DNS label (≤ 63), a named targetPort with a container port's rule (≤ 15)", () => {
    const s = svc(
      '  selector: {app: web}\n  ports: [{name: service-port-tcp-80, port: 80, targetPort: serve-80-tcp}]',
    );
    assert.equal(s.ports[0]?.name, 'service-port-tcp-80');
    assert.deepEqual(
      problems(() => svc('  ports: [{name: a, port: 80, targetPort: a-much-too-long-name}]')).map(
        (p) => p.field,
      ),
      ['spec.ports[0].targetPort'],
    );
    assert.deepEqual(
      problems(() => svc('  ports: [{name: Not_A_Label, port: 80}]')).map((p) => p.field),
      ['spec.ports[0].name'],
    );
  });

  it('takes several ports, UDP, named targetPorts, NodePort and ClientIP affinity', () => {
    const s = svc(`  type: NodePort
  clusterIP: 10.96.0.50
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  externalTrafficPolicy: Local
  ports:
  - {name: http, port: 80, targetPort: web, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}`);
    assert.equal(s.clusterIP, '10.96.0.50');
    assert.equal(s.affinityTimeoutSeconds, 60);
    assert.equal(s.externalTrafficPolicy, 'Local');
    assert.deepEqual(s.ports[0], {
      name: 'http',
      protocol: 'TCP',
      port: 80,
      targetPort: 'web',
      nodePort: 30080,
    });
    assert.deepEqual(s.ports[1], { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353 });
  });

  it('takes a headless service without ports', () => {
    assert.equal(svc('  clusterIP: None\n  selector: {app: web}').clusterIP, 'None');
  });

  it('names file, object and field of every problem', () => {
    const got = problems(() =>
      svc(`  type: NodePort
  clusterIP: 300.1.1.1
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}
  ports:
  - {port: 80, nodePort: 80}
  - {name: b, port: 80, protocol: SCTP}`),
    );
    const fields = Object.fromEntries(got.map((p) => [p.field, p.code]));
    assert.equal(fields['spec.clusterIP'], 'ERR_SERVICE_CLUSTERIP_INVALID');
    assert.equal(fields['spec.sessionAffinityConfig.clientIP.timeoutSeconds'], 'ERR_K8S_FIELD_INVALID');
    assert.equal(fields['spec.ports[0].nodePort'], 'ERR_K8S_FIELD_INVALID');
    assert.equal(fields['spec.ports[1].protocol'], 'ERR_K8S_FIELD_INVALID');
    assert.ok(got.every((p) => p.file === 'svc.yaml' && p.object === 'Service x/web'));
  });

  it('refuses unnamed or duplicate ports, nodePort outside NodePort, headless NodePort', () => {
    const codes = (spec: string) => problems(() => svc(spec)).map((p) => `${p.field} ${p.code}`);
    assert.deepEqual(codes('  ports: [{port: 80}, {name: b, port: 81}]'), [
      'spec.ports[0].name ERR_SERVICE_PORT_NAME',
    ]);
    assert.deepEqual(codes('  ports: [{name: a, port: 80}, {name: a, port: 80}]'), [
      'spec.ports[1].name ERR_SERVICE_PORT_DUPLICATE',
      'spec.ports[1].port ERR_SERVICE_PORT_DUPLICATE',
    ]);
    assert.deepEqual(codes('  ports: [{port: 80, nodePort: 30001}]'), [
      'spec.ports[0].nodePort ERR_SERVICE_NODEPORT_INVALID',
    ]);
    assert.deepEqual(codes('  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]'), [
      'spec.clusterIP ERR_SERVICE_CLUSTERIP_INVALID',
    ]);
    assert.deepEqual(codes('  selector: {app: web}'), ['spec.ports ERR_SERVICE_PORT_MISSING']);
    assert.deepEqual(codes('  ports: [{port: 80, targetPort: Not_A_Name}]'), [
      'spec.ports[0].targetPort ERR_K8S_FIELD_INVALID',
    ]);
  });
});

describe('Service IP families (dual-stack)', () => {
  const codes = (spec: string) =>
    problems(() => svc(`${spec}\n  ports: [{port: 80}]`)).map(
      (p) => `${p.file} ${p.object} ${p.field} ${p.code}`,
    );
  const fam = (spec: string) => {
    const s = svc(`${spec}\n  ports: [{port: 80}]`);
    return [s.clusterIP, s.clusterIPs, s.ipFamilies, s.ipFamilyPolicy];
  };

  it('defaults to SingleStack with the families left to the allocator', () => {
    assert.deepEqual(fam('  selector: {app: web}'), [undefined, [], [], 'SingleStack']);
  });

  it('reads an IPv6 clusterIP given alone as ipFamilies [IPv6], in canonical text', () => {
    assert.deepEqual(fam('  clusterIP: FD00:10:96:0::a'), [
      'fd00:10:96::a',
      ['fd00:10:96::a'],
      ['IPv6'],
      'SingleStack',
    ]);
  });

  it('takes both families in either order with a dual-stack policy', () => {
    assert.deepEqual(fam('  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6, IPv4]'), [
      undefined,
      [],
      ['IPv6', 'IPv4'],
      'PreferDualStack',
    ]);
    assert.deepEqual(
      fam(
        '  ipFamilyPolicy: RequireDualStack\n  clusterIP: 10.96.0.9\n  clusterIPs: [10.96.0.9, fd00:10:96::9]',
      ),
      ['10.96.0.9', ['10.96.0.9', 'fd00:10:96::9'], ['IPv4', 'IPv6'], 'RequireDualStack'],
    );
    // A dual-stack policy with one family given: the allocator adds the other.
    assert.deepEqual(fam('  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6]'), [
      undefined,
      [],
      ['IPv6'],
      'PreferDualStack',
    ]);
  });

  it('keeps headless services headless in every family', () => {
    assert.deepEqual(fam('  clusterIPs: [None]\n  ipFamilies: [IPv6]'), [
      'None',
      ['None'],
      ['IPv6'],
      'SingleStack',
    ]);
  });

  it('refuses bad values, naming file, object and field', () => {
    assert.deepEqual(codes('  ipFamilies: [IPv5]'), [
      'svc.yaml Service x/web spec.ipFamilies[0] ERR_SERVICE_IPFAMILY_INVALID',
    ]);
    assert.deepEqual(codes('  ipFamilyPolicy: DualStack'), [
      'svc.yaml Service x/web spec.ipFamilyPolicy ERR_SERVICE_IPFAMILYPOLICY_INVALID',
    ]);
    assert.deepEqual(codes('  clusterIPs: [fe80::1%eth0]'), [
      'svc.yaml Service x/web spec.clusterIPs[0] ERR_SERVICE_CLUSTERIP_INVALID',
    ]);
    assert.deepEqual(codes('  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv6, IPv4]'), [
      'svc.yaml Service x/web spec.ipFamilies ERR_SERVICE_IPFAMILY_INVALID',
    ]);
  });

  it('refuses clusterIP, clusterIPs and ipFamilies that disagree', () => {
    assert.deepEqual(codes('  clusterIP: 10.96.0.9\n  clusterIPs: [10.96.0.8]'), [
      'svc.yaml Service x/web spec.clusterIPs[0] ERR_SERVICE_CLUSTERIP_INVALID',
    ]);
    assert.deepEqual(codes('  ipFamilyPolicy: PreferDualStack\n  clusterIPs: [10.96.0.9, 10.96.0.8]'), [
      'svc.yaml Service x/web spec.clusterIPs[1] ERR_SERVICE_CLUSTERIP_INVALID',
    ]);
    assert.deepEqual(codes('  clusterIPs: [None, 10.96.0.8]\n  ipFamilyPolicy: PreferDualStack'), [
      'svc.yaml Service x/web spec.clusterIPs[0] ERR_SERVICE_CLUSTERIP_INVALID',
    ]);
    assert.deepEqual(codes('  clusterIP: fd00:10:96::9\n  ipFamilies: [IPv4]'), [
      'svc.yaml Service x/web spec.ipFamilies[0] ERR_SERVICE_IPFAMILY_INVALID',
    ]);
    assert.deepEqual(codes('  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6, IPv6]'), [
      'svc.yaml Service x/web spec.ipFamilies[1] ERR_SERVICE_IPFAMILY_INVALID',
    ]);
  });

  it('needs a dual-stack policy for two families (Kubernetes ≥ 1.23)', () => {
    assert.deepEqual(codes('  ipFamilies: [IPv4, IPv6]'), [
      'svc.yaml Service x/web spec.ipFamilyPolicy ERR_SERVICE_IPFAMILYPOLICY_INVALID',
    ]);
    assert.deepEqual(codes('  ipFamilyPolicy: SingleStack\n  clusterIPs: [10.96.0.9, fd00:10:96::9]'), [
      'svc.yaml Service x/web spec.ipFamilyPolicy ERR_SERVICE_IPFAMILYPOLICY_INVALID',
    ]);
  });

  it('refuses an IPv6-only NodePort (the NodePort datapath is IPv4-only)', () => {
    assert.deepEqual(codes('  type: NodePort\n  ipFamilies: [IPv6]'), [
      'svc.yaml Service x/web spec.ipFamilies ERR_SERVICE_IPFAMILY_UNSUPPORTED',
    ]);
    assert.deepEqual(fam('  type: NodePort\n  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6]')[2], [
      'IPv6',
    ]);
  });
});

describe('EndpointSlice validation', () => {
  const slice = (body: string) =>
    validateEndpointSlice(parse(`apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n${body}`), {
      file: 'eps.yaml',
      object: 'EndpointSlice x/web-1',
    });

  it('reads conditions with Kubernetes defaults (absent ready = ready)', () => {
    const s = slice(`metadata: {name: web-1, namespace: x, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.1.5]
- addresses: [10.0.1.6]
  conditions: {ready: false, serving: true, terminating: true}`);
    assert.equal(s.serviceName, 'web');
    assert.deepEqual(s.ports, [{ name: 'http', protocol: 'TCP', port: 8080 }]);
    assert.deepEqual(s.endpoints[0]?.conditions, { ready: true, serving: true, terminating: false });
    assert.deepEqual(s.endpoints[1]?.conditions, { ready: false, serving: true, terminating: true });
  });

  it('needs the service-name label and addresses of its addressType', () => {
    const got = problems(() =>
      slice(`metadata: {name: web-1, namespace: x, labels: {}}
addressType: IPv4
endpoints: [{addresses: [nope]}, {addresses: [10.0.1.5, 'fd00::5']}]`),
    );
    assert.deepEqual(
      got.map((p) => `${p.file} ${p.object} ${p.field} ${p.code}`),
      [
        'eps.yaml EndpointSlice x/web-1 metadata.labels ERR_SERVICE_SLICE_SERVICE',
        'eps.yaml EndpointSlice x/web-1 endpoints[0].addresses[0] ERR_SERVICE_SLICE_ADDRESS',
        'eps.yaml EndpointSlice x/web-1 endpoints[1].addresses[1] ERR_SERVICE_SLICE_ADDRESS',
      ],
    );
  });

  it('takes addressType IPv6 (addresses in canonical text), refuses FQDN', () => {
    const s = slice(`metadata: {name: web-1, namespace: x, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
endpoints: [{addresses: ['FD00:10:244:0::5']}]`);
    assert.equal(s.addressType, 'IPv6');
    assert.deepEqual(s.endpoints[0]?.addresses, ['fd00:10:244::5']);
    const v4in6 = problems(() =>
      slice(`metadata: {name: web-1, namespace: x, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
endpoints: [{addresses: [10.0.1.5]}]`),
    );
    assert.deepEqual(
      v4in6.map((p) => `${p.field} ${p.code}`),
      ['endpoints[0].addresses[0] ERR_SERVICE_SLICE_ADDRESS'],
    );
    const fqdn = problems(() =>
      slice(`metadata: {name: web-1, namespace: x, labels: {kubernetes.io/service-name: web}}
addressType: FQDN
endpoints: [{addresses: [example.com]}]`),
    );
    assert.deepEqual(
      fqdn.map((p) => `${p.field} ${p.code}`),
      ['addressType ERR_K8S_FIELD_INVALID'],
    );
  });
});
