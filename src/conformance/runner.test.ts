// Probes through a Service: the runner resolves the Service (the destination pod's own, from the
// topology) and its port translation, including a named targetPort; simulate mode judges the
// backend port after translation; a case that contradicts its Service is a clear case error.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCases, type ProbeAnswer, type ProbeRequest, type ProberFactory } from './runner.js';
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

/** An L7 case (conformance/l7 format): probes with ids, steps and kinds; expectations by probe id. */
async function runL7(expectP1: string) {
  const dir = await mkdtemp(join(tmpdir(), 'weir-conf-'));
  dirs.push(dir);
  const file = join(dir, '100.json');
  const probe = (id: string, extra: Record<string, unknown>) => ({
    id,
    step: 1,
    from: 'x/b',
    to: 'x/a',
    port: 80,
    protocol: 'TCP',
    target: 'ip',
    ...extra,
  });
  await writeFile(
    file,
    JSON.stringify({
      id: '100',
      topology,
      policies: [
        {
          apiVersion: 'cilium.io/v2',
          kind: 'CiliumNetworkPolicy',
          metadata: { name: 'a-l7', namespace: 'x' },
          spec: {
            endpointSelector: { matchLabels: { pod: 'a' } },
            ingress: [
              {
                toPorts: [
                  {
                    ports: [{ port: '80', protocol: 'TCP' }],
                    rules: { http: [{ method: 'GET', path: '/public' }] },
                  },
                ],
              },
            ],
          },
        },
      ],
      probes: [
        probe('p1', { http: { method: 'GET', path: '/public' } }),
        probe('p2', { step: 2, http: { method: 'GET', path: '/private', headers: { 'X-A': '1' } } }),
        probe('p3', { port: 81, http: { method: 'GET', path: '/public' } }),
        probe('d1', { port: 53, protocol: 'UDP', dns: { query: 'example.com', type: 'A' } }),
      ],
      expect: [
        { probe: 'p1', result: expectP1, allowed: expectP1 === 'allowed' },
        { probe: 'p2', result: 'l7-denied', allowed: false },
        { probe: 'p3', result: 'dropped', allowed: false },
        { probe: 'd1', result: 'dropped', allowed: false },
      ],
    }),
  );
  const report = await runCases({ files: [file], mode: 'simulate', proberFactory: simulateProberFactory() });
  return report.cases[0];
}

test('an L7 case: each probe runs as written, reported with its object and result; DNS is judged', async () => {
  const c = await runL7('allowed');
  assert.equal(c?.pass, true, c?.error);
  assert.deepEqual(c?.counts, { probes: 4, compared: 4, matched: 4, skipped: 0 });
  const [p1, p2, p3, d1] = c?.results ?? [];
  assert.equal(p1?.result, 'allowed');
  assert.equal(p1?.allowed, true);
  assert.deepEqual(p1?.probe?.http, { method: 'GET', path: '/public' });
  assert.equal(p1?.http?.upstreamSaw?.path, '/public');
  assert.equal(p2?.result, 'l7-denied');
  assert.equal(p2?.allowed, false);
  assert.equal(p3?.result, 'dropped');
  // x/a is no DNS server (and its ingress now admits 80/TCP only): the query gets no answer.
  assert.equal(d1?.result, 'dropped');
  assert.equal(d1?.allowed, false);
});

test('an L7 case whose expectation contradicts the observation fails, naming the probe', async () => {
  const c = await runL7('l7-denied');
  assert.equal(c?.pass, false);
  assert.equal(c?.mismatches.length, 1);
  assert.equal(c?.mismatches[0]?.probe?.id, 'p1');
  assert.equal(c?.mismatches[0]?.result, 'allowed');
  assert.equal(c?.mismatches[0]?.expectedResult, 'l7-denied');
});

/**
 * DNS and resolve-then-connect probes are judged on more than their result: the answer's rcode and
 * addresses, and the lookup's result, as the case expects them. The prober here stands in for the
 * datapath one (the runner's judging is under test): it answers every query the same way.
 */
async function runDnsCase(answer: (req: ProbeRequest) => ProbeAnswer) {
  const dir = await mkdtemp(join(tmpdir(), 'weir-conf-'));
  dirs.push(dir);
  const file = join(dir, '101.json');
  const base = { step: 1, from: 'x/a', to: 'x/a', port: 53, protocol: 'UDP', target: 'ip' };
  await writeFile(
    file,
    JSON.stringify({
      id: '101',
      topology,
      policies: [],
      probes: [
        { id: 'd1', ...base, dns: { query: 'api.example.com', type: 'A' } },
        {
          id: 'f1',
          ...base,
          port: 80,
          protocol: 'TCP',
          fqdn: 'api.example.com',
          resolveFirst: true,
          resolver: { server: 'x/a', port: 53, protocol: 'UDP', type: 'A' },
          http: { method: 'GET', path: '/' },
        },
      ],
      expect: [
        { probe: 'd1', result: 'allowed', allowed: true, dns: { rcode: 'NOERROR', answers: ['192.0.2.10'] } },
        {
          probe: 'f1',
          result: 'allowed',
          allowed: true,
          resolve: { result: 'allowed', rcode: 'NOERROR', answers: ['192.0.2.10'] },
        },
      ],
    }),
  );
  const seen: ProbeRequest[] = [];
  const factory: ProberFactory = () =>
    Promise.resolve({
      addresses: { nodeIP: '10.0.0.1', pods: new Map([['x/a', '10.0.0.2']]), externals: new Map() },
      kinds: new Set(['dns', 'fqdn', 'http'] as const),
      apply: () => Promise.resolve(),
      close: () => Promise.resolve(),
      probe: (req) => {
        seen.push(req);
        return Promise.resolve(answer(req));
      },
    });
  const report = await runCases({ files: [file], mode: 'test', proberFactory: factory });
  return { c: report.cases[0], seen };
}

test('an L7 case: DNS probes are judged on rcode and answers, resolve-then-connect on the lookup too', async () => {
  const good = (req: ProbeRequest): ProbeAnswer =>
    req.kind === 'dns'
      ? { allowed: true, result: 'allowed', dns: { rcode: 'NOERROR', answers: ['192.0.2.10'] } }
      : {
          allowed: true,
          result: 'allowed',
          http: { status: 200 },
          resolve: { result: 'allowed', rcode: 'NOERROR', answers: ['192.0.2.10'] },
        };
  const ok = await runDnsCase(good);
  assert.equal(ok.c?.pass, true, ok.c?.error);
  assert.deepEqual(ok.c?.counts, { probes: 2, compared: 2, matched: 2, skipped: 0 });
  // The probes reach the prober as the case writes them.
  assert.deepEqual(ok.seen.find((r) => r.kind === 'dns')?.dns, { query: 'api.example.com', type: 'A' });
  assert.deepEqual(ok.seen.find((r) => r.kind === 'fqdn')?.fqdn, {
    name: 'api.example.com',
    resolveFirst: true,
    resolver: { server: 'x/a', port: 53, protocol: 'UDP', type: 'A' },
  });
  assert.deepEqual(ok.c?.results[0]?.dns, { rcode: 'NOERROR', answers: ['192.0.2.10'] });

  // Same results, other answers: both probes mismatch, saying why.
  const bad = await runDnsCase((req) =>
    req.kind === 'dns'
      ? { allowed: true, result: 'allowed', dns: { rcode: 'NXDOMAIN', answers: [] } }
      : { allowed: true, result: 'allowed', http: { status: 200 }, resolve: { result: 'dropped' } },
  );
  assert.equal(bad.c?.pass, false);
  assert.deepEqual(
    bad.c?.mismatches.map((m) => [m.probe?.id, m.note]),
    [
      ['d1', 'the DNS server answered NXDOMAIN, expected NOERROR'],
      ['f1', 'the lookup was dropped, expected allowed'],
    ],
  );
});
