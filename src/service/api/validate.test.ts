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

  it('needs the service-name label and IPv4 addresses', () => {
    const got = problems(() =>
      slice(`metadata: {name: web-1, namespace: x, labels: {}}
addressType: IPv4
endpoints: [{addresses: [nope]}]`),
    );
    assert.deepEqual(
      got.map((p) => `${p.field} ${p.code}`),
      ['metadata.labels ERR_SERVICE_SLICE_SERVICE', 'endpoints[0].addresses[0] ERR_K8S_FIELD_INVALID'],
    );
  });
});
