// L7 visibility end to end, with real HTTP requests (curl inside a pod) through the node proxy: the
// allowed GET and the denied one (403) are L7 flows in `weir observe` with Hubble's fields and the
// rule that decided them, the HTTP filters narrow them like hubble's, Hubble's http metrics and the
// proxy's own counters move by exactly the number of requests, the access log has one line per
// request, and `weir policy trace --http-*` judges the same requests as the proxy did.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Lab } from '../../src/lab/index.js';
import type { Flow } from '../../src/observe/flow.js';
import { proxyAccessLogFile } from '../../src/proxy/paths.js';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { untilValue } from '../support/poll.js';

const LAB = testLab('t-l7obs');
const RULE = 'CiliumNetworkPolicy app/server-l7 ingress[0]';

const pods = `
apiVersion: v1
kind: Namespace
metadata: { name: app }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app, labels: { role: client } }
spec: { containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: app, labels: { role: server } }
spec: { containers: [{ name: s, ports: [{ containerPort: 80 }] }] }
`;

const policy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-l7, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { role: client } }]
      toPorts:
        - ports: [{ port: "80", protocol: TCP }]
          rules:
            http:
              - { method: GET, path: /public }
              - { method: POST, path: "/api/.*" }
`;

/** The requests, in order: three allowed GETs, two denied. */
const PATHS = ['/public', '/private', '/public', '/private', '/public'];

const until = <T>(what: string, get: () => Promise<T>, done: (v: T) => boolean, ms = 20_000) =>
  untilValue(what, get, done, ms, 200);

async function observe(args: string[]): Promise<Flow[]> {
  const out = await ok(['observe', ...args, '--last', '1000', '-o', 'json'], LAB);
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Flow);
}

/** Every sample of a metric family whose labels include `labels`, summed. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let n = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) n += Number(m[3]);
  }
  return n;
}

describe('L7 visibility: flows, filters, metrics, access log and trace of real HTTP requests', () => {
  let dir: string;
  let serverIP = '';
  let clientIP = '';
  let before0 = '';
  let codes: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-l7obs-test-'));
    await writeFile(join(dir, 'pods.yaml'), pods);
    await writeFile(join(dir, 'policy.yaml'), policy);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up'], LAB);
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB);
    await ok(['apply', '-f', join(dir, 'policy.yaml')], LAB);
    const lab = await Lab.open(LAB);
    serverIP = (await lab.pod('app/server')).ip;
    clientIP = (await lab.pod('app/client')).ip;
    before0 = await ok(['agent', 'metrics'], LAB);
    // One shell in the client pod runs every request (curl; one connection each).
    const script = PATHS.map(
      (p, i) =>
        `curl -s -o /dev/null -m 10 -w '%{http_code}\\n' -H 'X-Request-Id: l7obs-${i}' http://${serverIP}${p}`,
    ).join('; ');
    codes = (await ok(['lab', 'exec', 'app/client', '--', 'sh', '-c', script], LAB)).trim().split('\n');
  });

  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('the proxy answered the allowed GETs 200 (from the server) and the others 403', () => {
    assert.deepEqual(codes, ['200', '403', '200', '403', '200']);
  });

  it('weir observe --type l7 -o json: the requests and responses with Hubble fields and the rule', async () => {
    const flows = await until(
      '10 L7 flows',
      () => observe(['--type', 'l7']),
      (f) => f.length >= 10,
    );
    assert.equal(flows.length, 10, 'one request and one response flow per request');
    for (const f of flows) {
      assert.equal(f.Type, 'L7');
      assert.deepEqual(f.event_type, { type: 129, sub_type: 0 });
      assert.equal(f.traffic_direction, 'INGRESS');
      assert.equal(f.l7?.http?.protocol, 'HTTP/1.1');
      assert.equal(f.l7?.http?.method, 'GET');
    }
    const requests = flows.filter((f) => f.l7?.type === 'REQUEST');
    const responses = flows.filter((f) => f.l7?.type === 'RESPONSE');
    assert.deepEqual(
      requests.map((f) => [f.l7?.http?.url, f.verdict]),
      PATHS.map((p) => [`http://${serverIP}${p}`, p === '/public' ? 'FORWARDED' : 'DROPPED']),
    );
    for (const f of requests) {
      assert.equal(`${f.source.namespace}/${f.source.pod_name}`, 'app/client');
      assert.equal(`${f.destination.namespace}/${f.destination.pod_name}`, 'app/server');
      assert.equal(f.is_reply, false);
      assert.equal(f.l4?.TCP?.destination_port, 80);
      assert.ok(f.l7?.http?.headers.some((h) => h.key === 'x-request-id' && h.value.startsWith('l7obs-')));
      const by = f.verdict === 'FORWARDED' ? f.ingress_allowed_by : f.ingress_denied_by;
      assert.equal(by?.[0]?.rule, RULE, JSON.stringify(f));
      assert.equal(
        f.verdict === 'DROPPED' ? f.weir.detail : undefined,
        f.verdict === 'DROPPED' ? 'l7_policy_denied' : undefined,
      );
    }
    assert.deepEqual(
      responses.map((f) => [f.l7?.http?.code, f.verdict]),
      PATHS.map((p) => (p === '/public' ? [200, 'FORWARDED'] : [403, 'DROPPED'])),
    );
    for (const f of responses) {
      // A response goes from the server to the client, as Hubble shows it.
      assert.equal(f.source.pod_name, 'server');
      assert.equal(f.destination.pod_name, 'client');
      assert.equal(f.IP?.source, serverIP);
      assert.equal(f.is_reply, true);
      assert.ok((f.l7?.latency_ns ?? 0) > 0, 'a response carries its latency');
    }

    const compact = await ok(['observe', '--type', 'l7', '--last', '10'], LAB);
    const ip = serverIP.replaceAll('.', '\\.');
    assert.match(
      compact,
      new RegExp(
        `app/client:\\d+ \\(ID:\\d+\\) -> app/server:80 \\(ID:\\d+\\) http-request FORWARDED \\(HTTP/1\\.1 GET http://${ip}/public\\) by CiliumNetworkPolicy app/server-l7 ingress\\[0\\]`,
      ),
    );
    assert.match(
      compact,
      new RegExp(
        `app/client:\\d+ \\(ID:\\d+\\) <- app/server:80 \\(ID:\\d+\\) http-response DROPPED \\(HTTP/1\\.1 403 \\d+ms \\(GET http://${ip}/private\\)\\) by CiliumNetworkPolicy app/server-l7 ingress\\[0\\]`,
      ),
    );
  });

  it('the HTTP filters narrow like hubble', async () => {
    const count = async (...args: string[]) => (await observe(args)).length;
    const codesOf = async (...args: string[]) => (await observe(args)).map((f) => f.l7?.http?.code);
    assert.deepEqual(await codesOf('--type', 'l7', '--http-status', '403'), [403, 403]);
    assert.deepEqual(await codesOf('--http-status', '2+'), [200, 200, 200]);
    assert.deepEqual(await codesOf('--http-status', '4+', '--http-status', '20+'), [200, 403, 200, 403, 200]);
    assert.equal(await count('--http-method', 'get'), 10);
    assert.equal(await count('--http-method', 'POST'), 0);
    assert.equal(await count('--http-path', '^/pub'), 6);
    assert.equal(await count('--http-url', 'private$'), 4);
    assert.equal(await count('--type', 'l7', '--verdict', 'DROPPED'), 4);
    assert.equal(await count('--protocol', 'http', '--to-pod', 'app/server'), 5, 'the requests');
    assert.equal(await count('--http-header', 'x-request-id:l7obs-3'), 1);
    const bad = await cli(['observe', '--type', 'drop', '--http-status', '200'], LAB);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--http-status matches L7 flows only.*ERR_OBSERVE_FILTER/);
  });

  it('Hubble http metrics and the proxy counters moved by exactly the requests made', async () => {
    const requests = { method: 'GET', protocol: 'HTTP/1.1', reporter: 'server' };
    const after1 = await until(
      'the metrics of 5 requests',
      () => ok(['agent', 'metrics'], LAB),
      (t) =>
        metric(t, 'hubble_http_request_duration_seconds_count') -
          metric(before0, 'hubble_http_request_duration_seconds_count') >=
        5,
    );
    const delta = (name: string, labels: Record<string, string> = {}) =>
      metric(after1, name, labels) - metric(before0, name, labels);
    assert.equal(delta('hubble_http_requests_total', requests), 5);
    assert.equal(delta('hubble_http_responses_total', { ...requests, status: '200' }), 3);
    assert.equal(delta('hubble_http_responses_total', { ...requests, status: '403' }), 2);
    assert.equal(
      delta('hubble_http_request_duration_seconds_count', { method: 'GET', reporter: 'server' }),
      5,
    );
    assert.equal(delta('hubble_flows_processed_total', { type: 'L7', verdict: 'DROPPED' }), 4);
    assert.equal(delta('hubble_flows_processed_total', { type: 'L7', verdict: 'FORWARDED' }), 6);
    const l7 = (rule: string) => delta('weir_proxy_policy_l7_total', { direction: 'ingress', rule });
    assert.deepEqual([l7('received'), l7('forwarded'), l7('denied'), l7('parse_errors')], [5, 3, 2, 0]);
    assert.equal(delta('weir_proxy_redirects_total', { direction: 'ingress' }), 5, 'one connection each');
    assert.equal(delta('weir_proxy_upstream_connect_errors_total'), 0);
    assert.equal(metric(after1, 'weir_proxy_l7_records_lost_total'), 0);
    assert.equal(metric(after1, 'weir_proxy_active_connections', { direction: 'ingress' }), 0);
    const status = await ok(['proxy', 'status'], LAB);
    assert.match(status, /HTTP requests ingress\s+5 judged: 3 forwarded, 2 denied \(403\)/);
  });

  it('the access log has one JSON line per request, in the lab log directory, root-only', async () => {
    const file = proxyAccessLogFile(LAB);
    const lines = await until(
      '5 access-log lines',
      async () => {
        let text = '';
        try {
          text = readFileSync(file, 'utf8');
        } catch {
          // not written yet
        }
        return text
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .filter((l) => String(l.request_id ?? '').startsWith('l7obs-'));
      },
      (l) => l.length >= 5,
    );
    assert.equal(statSync(file).mode & 0o777, 0o600);
    // The proxy's threads hand their lines to one writer in batches: one line per request, in the order
    // the threads finished them (as Envoy's workers), so they are compared by request id.
    const byId = [...lines].sort((a, b) => String(a.request_id).localeCompare(String(b.request_id)));
    assert.deepEqual(
      byId.map((l) => [l.request_id, l.path, l.response_code, l.verdict]),
      PATHS.map((p, i) => [
        `l7obs-${i}`,
        p,
        p === '/public' ? 200 : 403,
        p === '/public' ? 'FORWARDED' : 'DENIED',
      ]),
    );
    for (const l of lines) {
      const allowed = l.path === '/public';
      assert.equal(l.method, 'GET');
      assert.equal(l.protocol, 'HTTP/1.1');
      assert.equal(l.direction, 'ingress');
      assert.equal(l.endpoint, 'app/server');
      assert.equal(l.authority, serverIP);
      assert.equal(l.policy, 'CiliumNetworkPolicy app/server-l7');
      assert.equal(l.response_flags, '-');
      assert.equal(l.bytes_received, 0);
      assert.match(
        String(l.downstream_remote_address),
        new RegExp(`^${clientIP.replaceAll('.', '\\.')}:\\d+$`),
      );
      assert.match(String(l.user_agent), /^curl\//);
      assert.ok(typeof l.duration_ms === 'number' && l.duration_ms >= 0);
      assert.ok(Math.abs(Date.parse(String(l.start_time)) - Date.now()) < 120_000);
      if (allowed) {
        assert.equal(l.upstream_host, `${serverIP}:80`);
        assert.equal(l.http_rule, 0);
        assert.equal(l.bytes_sent, Buffer.byteLength('app/server\n'), 'the body the server sent');
      } else {
        assert.equal(l.upstream_host, '-');
        assert.equal(l.response_code_details, 'l7_policy_denied');
        assert.equal(l.bytes_sent, Buffer.byteLength('Access denied\r\n'));
      }
    }
  });

  it('weir policy trace --http-* judges the same requests as the proxy, live', async () => {
    const trace = (path: string, ...extra: string[]) =>
      ok(
        [
          'policy',
          'trace',
          '--from',
          'app/client',
          '--to',
          'app/server',
          '--port',
          '80/TCP',
          '--http-method',
          'GET',
          '--http-path',
          path,
          ...extra,
        ],
        LAB,
      );
    const allowed = await trace('/public', '--datapath');
    assert.match(allowed, /TCP\/80 GET \/public: ALLOWED/);
    assert.match(
      allowed,
      /HTTP GET \/public \(Host [\d.]+\): allowed by CiliumNetworkPolicy app\/server-l7 ingress\[0\] toPorts\[\]\.rules\.http\[0\] \{method: GET, path: \/public\}/,
    );
    assert.match(allowed, /engine and datapath agree/);
    const denied = await trace('/private');
    assert.match(denied, /TCP\/80 GET \/private: DENIED/);
    assert.match(
      denied,
      /the proxy answers 403 Access denied: no HTTP rule matches \(HTTP rules of CiliumNetworkPolicy app\/server-l7 ingress\[0\]\)/,
    );
    const json = JSON.parse(await trace('/private', '-o', 'json')) as {
      allowed: boolean;
      ingress: { http?: { code?: number } };
    };
    assert.equal(json.allowed, false);
    assert.equal(json.ingress.http?.code, 403);
  });
});
