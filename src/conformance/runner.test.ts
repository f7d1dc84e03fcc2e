// Probes through a Service: the runner resolves the Service (the destination pod's own, from the
// topology) and its port translation, including a named targetPort; simulate mode judges the
// backend port after translation; a case that contradicts its Service is a clear case error.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCases } from './runner.js';
import { simulateProberFactory } from './simulate.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const topology = {
  namespaces: [{ name: 'x', labels: {} }],
  pods: [
    {
      namespace: 'x',
      name: 'a',
      labels: { pod: 'a' },
      containers: [
        { port: 80, protocol: 'TCP', portName: 'serve-80-tcp' },
        { port: 81, protocol: 'TCP', portName: 'serve-81-tcp' },
      ],
      service: {
        name: 's-x-a',
        selector: { pod: 'a' },
        ports: [{ name: 'web', port: 8080, targetPort: 'serve-81-tcp', protocol: 'TCP' }],
      },
    },
    { namespace: 'x', name: 'b', labels: { pod: 'b' }, containers: [] },
  ],
};

/** Ingress to x/a allowed on this port only. */
const policy = (port: number) => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name: 'a-in', namespace: 'x' },
  spec: {
    podSelector: { matchLabels: { pod: 'a' } },
    policyTypes: ['Ingress'],
    ingress: [{ ports: [{ port, protocol: 'TCP' }] }],
  },
});

async function run(policyPort: number, probe: Record<string, unknown>, allowed: boolean) {
  const dir = await mkdtemp(join(tmpdir(), 'weir-conf-'));
  dirs.push(dir);
  const file = join(dir, '001.json');
  await writeFile(
    file,
    JSON.stringify({
      id: '001',
      topology,
      policies: [policy(policyPort)],
      probes: [{ port: 8080, protocol: 'TCP', target: 'service-clusterip', ...probe }],
      expect: [{ from: 'x/b', to: 'x/a', port: 8080, protocol: 'TCP', allowed }],
    }),
  );
  const report = await runCases({ files: [file], mode: 'simulate', proberFactory: simulateProberFactory() });
  return report.cases[0];
}

test('a ClusterIP probe is judged on the backend port its named targetPort resolves to', async () => {
  const c = await run(81, {}, true);
  assert.equal(c?.pass, true, c?.error);
  assert.deepEqual(c?.results[0], {
    from: 'x/b',
    to: 'x/a',
    port: 8080,
    protocol: 'TCP',
    allowed: true,
    expected: true,
    viaService: 'x/s-x-a',
    backendPort: 81,
    note: 'via service x/s-x-a (port 8080 translated to x/a:81 by the simulation)',
  });
  // A rule on the Service port does not match: policy sees the translated flow.
  const denied = await run(8080, {}, false);
  assert.equal(denied?.pass, true, denied?.error);
  assert.equal(denied?.results[0]?.allowed, false);
});

test('a probe whose backendPort or Service contradicts the topology is a case error', async () => {
  const wrongPort = await run(81, { backendPort: 80 }, true);
  assert.equal(wrongPort?.pass, false);
  assert.equal(wrongPort?.errorCode, 'ERR_CONFORMANCE_CASE');
  assert.match(
    wrongPort?.error ?? '',
    /001\.json: probe TCP\/8080 x\/b -> x\/a: backendPort 80 .*'x\/s-x-a'.*\(81\)/,
  );
  const unknown = await run(81, { service: 'x/nope' }, true);
  assert.equal(unknown?.errorCode, 'ERR_CONFORMANCE_CASE');
  assert.match(unknown?.error ?? '', /unknown Service 'x\/nope'/);
});
