// Envoy Gateway's BackendTrafficPolicy on weir's gateway with real traffic: a lab external sends
// HTTP to a Gateway's address, the node proxy forwards to echo pods (the conformance echo server,
// with its control surface: a failure mode, and what it saw — requests and retries in flight,
// connections open and closed). Checked as a user sees it: the status codes and headers the
// client gets, when it gets them, what the backend saw, and the proxy's weir_gateway_* metrics.
//   circuit breaker — maxConnections + maxPendingRequests, maxParallelRequests: trips, recovers
//   outlier detection — an endpoint answering 5xx is ejected, returns after its time (× ejections)
//   local rate limit — N per second under bursts, 429 for the rest
//   retries — numRetries, and never more outstanding than the retry budget allows
//   timeouts — request, per-try, connect, connection idle and max duration, within 10 %
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ok } from '../support/cli.js';
import { GatewayLab } from '../support/echo-pods.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-gw-resil');
const NS = 'rs';
const labSpec = `name: ${LAB}\nexternals:\n  - { name: client, ip: 192.0.2.61 }\n`;

const pod = (name: string, app: string) => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${NS}, labels: { app: ${app}, pod: ${name} }, annotations: { weir.dev/workload: "none" } }
spec: { containers: [{ name: echo, ports: [{ containerPort: 3000 }] }] }
---`;
const service = (name: string, app: string) => `
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: ${NS} }
spec: { selector: { app: ${app} }, ports: [{ port: 8080, targetPort: 3000 }] }
---`;
/** An HTTPRoute for one path prefix and a BackendTrafficPolicy (spec lines) on it. */
const routed = (name: string, svc: string, policy: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ${name}, namespace: ${NS} }
spec:
  parentRefs: [{ name: edge }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /${name} } }], backendRefs: [{ name: ${svc}, port: 8080 }] }]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: ${name}, namespace: ${NS} }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: ${name} }]
${policy}
---`;

const objects = `
apiVersion: v1
kind: Namespace
metadata: { name: ${NS} }
---
${pod('echo-1', 'pair')}
${pod('echo-2', 'pair')}
${pod('echo-3', 'solo')}
${pod('echo-4', 'conn')}
${service('pair', 'pair')}
${service('solo', 'solo')}
${service('conn', 'conn')}
apiVersion: v1
kind: Service
metadata: { name: one, namespace: ${NS} }
spec: { selector: { pod: echo-1 }, ports: [{ port: 8080, targetPort: 3000 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: control-one, namespace: ${NS} }
spec:
  parentRefs: [{ name: edge }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /control } }], backendRefs: [{ name: one, port: 8080 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: weir }
spec: { controllerName: weir.dev/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: ${NS} }
spec: { gatewayClassName: weir, listeners: [{ name: http, port: 80, protocol: HTTP }] }
---
${routed('cb', 'solo', '  circuitBreaker: { maxConnections: 2, maxPendingRequests: 1 }')}
${routed('par', 'solo', '  circuitBreaker: { maxParallelRequests: 2 }')}
${routed(
  'od',
  'pair',
  '  healthCheck: { passive: { consecutive5XxErrors: 3, interval: 10s, baseEjectionTime: 2s, maxEjectionPercent: 50 } }',
)}
${routed('rl', 'solo', '  rateLimit: { type: Local, local: { rules: [{ limit: { requests: 5, unit: Second } }] } }')}
${routed(
  'rb',
  'solo',
  `  retry:
    numRetries: 3
    retryOn: { triggers: [retriable-status-codes], httpStatusCodes: [503] }
    perRetry: { backOff: { baseInterval: 10ms, maxInterval: 50ms } }
    budget: { budgetPercent: 20, minRetryConcurrency: 1 }`,
)}
${routed(
  'pt',
  'solo',
  `  retry:
    numRetries: 2
    retryOn: { triggers: [reset] }
    perRetry: { timeout: 400ms, backOff: { baseInterval: 1ms, maxInterval: 1ms } }`,
)}
${routed('rt', 'solo', '  timeout: { http: { requestTimeout: 1s } }')}
${routed('idle', 'conn', '  timeout: { http: { connectionIdleTimeout: 1s } }')}
${routed('life', 'conn', '  timeout: { http: { maxConnectionDuration: 1500ms } }')}
${routed('ct', 'conn', '  timeout: { tcp: { connectTimeout: 1s } }')}
`;

/**
 * The client on the external (node): get(path) sends one request on its own connection to the
 * Gateway and resolves with its status, the headers that matter here and the echo's pod.
 */
const clientPrelude = `
const http = require('http');
const spec = JSON.parse(process.argv[1]);
const get = (path) => new Promise((resolve) => {
  const req = http.request({ host: spec.address, port: 80, path, headers: { host: 'resil.example' }, agent: false }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => {
      let pod;
      try { pod = JSON.parse(Buffer.concat(chunks).toString()).pod; } catch {}
      resolve({ code: res.statusCode, overloaded: res.headers['x-envoy-overloaded'],
        limit: res.headers['x-ratelimit-limit'], remaining: res.headers['x-ratelimit-remaining'], pod });
    });
  });
  req.on('error', (e) => resolve({ code: 0, error: e.message }));
  req.setTimeout(20000, () => req.destroy(new Error('client timeout')));
  req.end();
});
`;

/** spec.requests sent at once or `at` ms after the start; each answer with its start and duration. */
const loadScript = `${clientPrelude}
const t0 = performance.now();
const one = (r, i) => new Promise((resolve) => setTimeout(() => {
  const s = performance.now();
  get(r.path).then((a) => resolve({ i, ...a, start: s - t0, ms: performance.now() - s }));
}, r.at || 0));
Promise.all(spec.requests.map(one)).then((r) => console.log(JSON.stringify(r)));
`;

/**
 * Outlier detection, timed in one run on the external (the lab shares the host's clock): echo-1
 * (through the Gateway's /control route) fails, requests go every 40 ms until its third 503, it
 * is made healthy and the run waits for it to answer again; twice. Prints the times (ms, Date.now()).
 */
const outlierScript = `${clientPrelude}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const out = { ejected: [], back: [], others: [] };
  for (let round = 0; round < 2; round++) {
    await get('/control/fail?code=503');
    let fails = 0;
    while (fails < 3) {
      const a = await get('/od/x');
      if (a.code === 503) fails++;
      else out.others.push(a.pod || a.code);
      await sleep(40);
    }
    out.ejected.push(Date.now());
    await get('/control/fail?code=0');
    for (;;) {
      const a = await get('/od/y');
      if (a.pod === 'echo-1') break;
      out.others.push(a.pod || a.code);
      if (Date.now() - out.ejected[round] > 15000) break;
      await sleep(40);
    }
    out.back.push(Date.now());
  }
  console.log(JSON.stringify(out));
})();
`;

interface Answer {
  i: number;
  code: number;
  start: number;
  ms: number;
  overloaded?: string;
  limit?: string;
  remaining?: string;
  pod?: string;
  error?: string;
}

interface EchoStats {
  requests: number;
  maxInFlight: number;
  retries: number;
  maxRetriesInFlight: number;
  connections: number;
  maxOpen: number;
  closed: { lifeMs: number; idleMs: number }[];
}

describe('BackendTrafficPolicy resilience: real traffic through a Gateway', () => {
  const lab = new GatewayLab(LAB, {
    labSpec,
    objects,
    ns: NS,
    pods: ['echo-1', 'echo-2', 'echo-3', 'echo-4'],
  });
  let address = '';

  async function send(requests: { path: string; at?: number }[]): Promise<Answer[]> {
    const out = await ok(
      [
        'lab',
        'exec',
        'ext:client',
        '--',
        process.execPath,
        '-e',
        loadScript,
        JSON.stringify({ address, requests }),
      ],
      LAB,
    );
    return JSON.parse(out) as Answer[];
  }
  const burst = (path: string, n: number, at = 0) => Array.from({ length: n }, () => ({ path, at }));
  const codes = (as: Answer[]) => {
    const m: Record<number, number> = {};
    for (const a of as) m[a.code] = (m[a.code] ?? 0) + 1;
    return m;
  };

  /**
   * Answers of a timeout set to `ms`: each `code`, none before `ms` (as the client sees it, it
   * cannot be earlier), and their median within 10 % after it. The median, because this 2-core
   * machine is shared: one answer may be held up by the scheduler (load average ~14).
   */
  function timely(as: Answer[], code: number, ms: number, what: string) {
    for (const a of as) {
      assert.equal(a.code, code, JSON.stringify(a));
      assert.ok(a.ms >= ms, `${what} answered after ${a.ms.toFixed(0)} ms, early`);
    }
    const sorted = as.map((a) => a.ms).sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    assert.ok(median <= ms * 1.1, `${what}: answered after ${sorted.map((x) => x.toFixed(0)).join(', ')} ms`);
  }

  /** The echo pod's control surface, asked from inside the pod. */
  async function control(podName: string, what: string): Promise<EchoStats> {
    const out = await ok(
      [
        'lab',
        'exec',
        `${NS}/${podName}`,
        '--',
        'curl',
        '-s',
        '--max-time',
        '5',
        `http://127.0.0.1:3000/control/${what}`,
      ],
      LAB,
    );
    return JSON.parse(out) as EchoStats;
  }

  /** A weir_gateway_* series of the proxy (through the agent's /metrics), 0 when absent. */
  async function metric(name: string, labels: Record<string, string>): Promise<number> {
    const text = await ok(['agent', 'metrics'], LAB);
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
        sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }

  before(async () => {
    await lab.up();
    address = lab.address;
    // Every route serves before the tests start.
    for (let i = 0; i < 60; i++) {
      // Not the routes to echo-3 (the breaker test counts its connections) nor /ct (a pooled
      // connection would never need to connect).
      const a = await send(['od', 'idle', 'life'].map((r) => ({ path: `/${r}/warm` })));
      if (a.every((x) => x.code === 200)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  });

  after(lab.down);

  it('circuit breaker: maxConnections + maxPendingRequests trip with 503 x-envoy-overloaded, then recover', async (t) => {
    // 2 connections busy for 1.5 s, 1 request waits as pending, the other 3 overflow at once.
    const first = await send(burst('/cb/x?delay=1500ms', 6));
    assert.deepEqual(codes(first), { 200: 3, 503: 3 }, JSON.stringify(first));
    for (const a of first.filter((x) => x.code === 503)) {
      assert.equal(a.overloaded, 'true');
      assert.ok(a.ms < 1000, `an overflow is answered at once, not after ${a.ms} ms`);
    }
    // The pending one ran when a connection came free: after the first two.
    const ok200 = first.filter((x) => x.code === 200).sort((a, b) => a.ms - b.ms);
    assert.ok((ok200[2]?.ms ?? 0) >= 2900, `the pending request was served after ${ok200[2]?.ms} ms`);
    const seen = await control('echo-3', 'stats');
    assert.ok(seen.maxOpen <= 2, `the backend saw ${seen.maxOpen} connections open at once`);
    assert.equal(seen.requests, 3, 'only admitted requests reached the backend');
    assert.ok(
      (await metric('weir_gateway_upstream_overflow_total', {
        backend: `${NS}/solo:8080`,
        limit: 'pending',
      })) >= 3,
    );
    assert.ok((await metric('weir_gateway_upstream_cx_overflow_total', { backend: `${NS}/solo:8080` })) >= 4);
    // Recovered: within the limits every request is served.
    t.diagnostic(
      `maxConnections 2 + maxPendingRequests 1, 6 × 1.5 s requests: 200 after ${ok200.map((x) => x.ms.toFixed(0)).join(', ')} ms; 503 after ${first
        .filter((x) => x.code === 503)
        .map((x) => x.ms.toFixed(0))
        .join(', ')} ms; backend saw ${seen.maxOpen} connections at most`,
    );
    const again = await send(burst('/cb/y?delay=200ms', 3));
    assert.deepEqual(codes(again), { 200: 3 }, JSON.stringify(again));
  });

  it('circuit breaker: maxParallelRequests trips and recovers', async () => {
    const first = await send(burst('/par/x?delay=1s', 5));
    assert.deepEqual(codes(first), { 200: 2, 503: 3 }, JSON.stringify(first));
    assert.ok(first.filter((x) => x.code === 503).every((x) => x.overloaded === 'true'));
    assert.ok((await metric('weir_gateway_upstream_overflow_total', { limit: 'requests' })) >= 3);
    assert.deepEqual(codes(await send(burst('/par/y?delay=100ms', 2))), { 200: 2 });
  });

  it('outlier detection: a 5xx endpoint is ejected, returns after baseEjectionTime, then for twice as long', async (t) => {
    const out = JSON.parse(
      await ok(
        [
          'lab',
          'exec',
          'ext:client',
          '--',
          process.execPath,
          '-e',
          outlierScript,
          JSON.stringify({ address }),
        ],
        LAB,
      ),
    ) as { ejected: number[]; back: number[]; others: (string | number)[] };
    // While echo-1 fails or is ejected every other answer comes from echo-2.
    assert.ok(
      out.others.every((x) => x === 'echo-2'),
      JSON.stringify(out.others),
    );
    const [e1 = 0, e2 = 0] = out.ejected;
    const [b1 = 0, b2 = 0] = out.back;
    // baseEjectionTime 2 s, then 2 × 2 s: no interval (10 s) of health forgave the first ejection.
    // Times are the client's, which sees the third 503 a little after the proxy ejected (-10 %);
    // the first request after the time is up reaches echo-1 half of the time (a few 40 ms steps).
    assert.ok(b1 - e1 >= 1800 && b1 - e1 <= 2600, `echo-1 came back ${b1 - e1} ms after its ejection (2 s)`);
    assert.ok(
      b2 - e2 >= 3600 && b2 - e2 <= 4600,
      `echo-1 came back ${b2 - e2} ms after its second ejection (4 s)`,
    );
    t.diagnostic(`ejected → back: ${b1 - e1} ms (base 2 s), then ${b2 - e2} ms (2 × 2 s)`);
    assert.equal(
      await metric('weir_gateway_outlier_ejections_total', {
        backend: `${NS}/pair:8080`,
        reason: 'consecutive_5xx',
      }),
      2,
    );
  });

  it('local rate limit: 5 per second under bursts, 429 with x-ratelimit-* headers for the rest', async (t) => {
    // One run: the first request starts the bucket's second; bursts of 15 land 500 ms into the
    // first three seconds.
    const all = await send([{ path: '/rl/x' }, ...[500, 1500, 2500].flatMap((at) => burst('/rl/y', 15, at))]);
    const first = all[0];
    assert.equal(first?.code, 200);
    assert.equal(first?.limit, '5');
    assert.equal(first?.remaining, '4');
    const rounds = [0, 1, 2].map((k) => all.slice(1 + 15 * k, 16 + 15 * k));
    assert.deepEqual(codes(rounds[0] ?? []), { 200: 4, 429: 11 }, JSON.stringify(rounds[0]));
    assert.deepEqual(codes(rounds[1] ?? []), { 200: 5, 429: 10 }, JSON.stringify(rounds[1]));
    assert.deepEqual(codes(rounds[2] ?? []), { 200: 5, 429: 10 }, JSON.stringify(rounds[2]));
    t.diagnostic(
      `5/s, bursts of 15 at 0.5, 1.5, 2.5 s: ${rounds.map((r) => JSON.stringify(codes(r))).join(' ')}`,
    );
    const limited = rounds.flat().filter((a) => a.code === 429);
    assert.ok(limited.every((a) => a.limit === '5' && a.remaining === '0'));
    assert.equal(await metric('weir_gateway_rate_limited_total', { route: `${NS}/rl` }), 31);
  });

  it('retries: numRetries, and never more outstanding than the retry budget', async (t) => {
    await control('echo-3', 'reset');
    await control('echo-3', 'fail?code=503');
    // Alone, a failing request is tried 1 + 3 times (the budget's minimum allows one retry at once).
    const [one] = await send([{ path: '/rb/one' }]);
    assert.equal(one?.code, 503);
    let seen = await control('echo-3', 'reset');
    assert.equal(seen.requests, 4, JSON.stringify(seen));
    assert.equal(seen.retries, 3);
    // 10 at once, each attempt 300 ms: 20 % of 10 in flight = 2 retries outstanding at most.
    const many = await send(burst('/rb/many?delay=300ms', 10));
    assert.deepEqual(codes(many), { 503: 10 });
    seen = await control('echo-3', 'stats');
    await control('echo-3', 'fail?code=0');
    assert.ok(seen.retries >= 2, `some retries were made: ${seen.retries}`);
    assert.ok(
      seen.maxRetriesInFlight <= 2,
      `${seen.maxRetriesInFlight} retries were in flight at once (budget 2)`,
    );
    assert.ok(seen.retries < 30, 'the budget refused some of the 30 retries asked for');
    t.diagnostic(
      `10 failing requests × numRetries 3, budget 20 %/min 1: ${seen.retries} retries reached the backend, at most ${seen.maxRetriesInFlight} at once`,
    );
    assert.ok(
      (await metric('weir_gateway_upstream_overflow_total', {
        backend: `${NS}/solo:8080`,
        limit: 'retries',
      })) > 0,
    );
    assert.ok((await metric('weir_gateway_upstream_rq_retry_total', { route: `${NS}/rb` })) >= 5);
  });

  it('timeouts: request and per-try timeouts fire within 10 % of their setting', async (t) => {
    const rt = await send(burst('/rt/x?delay=3s', 3));
    timely(rt, 504, 1000, 'requestTimeout 1s');
    await control('echo-3', 'reset');
    // Three attempts of 400 ms each (1 ms back-off), three requests at once.
    const pt = await send(burst('/pt/x?delay=3s', 3));
    timely(pt, 504, 1200, '3 × perRetry.timeout 400ms');
    assert.equal((await control('echo-3', 'stats')).requests, 9);
    t.diagnostic(
      `requestTimeout 1s: 504 after ${rt.map((a) => a.ms.toFixed(0)).join(', ')} ms; 3 × perRetry.timeout 400ms: 504 after ${pt.map((a) => a.ms.toFixed(0)).join(', ')} ms`,
    );
    assert.equal(
      await metric('weir_gateway_upstream_timeouts_total', { backend: `${NS}/solo:8080`, kind: 'per_try' }),
      9,
    );
  });

  it('timeouts: connectionIdleTimeout and maxConnectionDuration close upstream connections on time', async (t) => {
    await new Promise((r) => setTimeout(r, 1500));
    await control('echo-4', 'reset');
    await send([{ path: '/idle/x' }]);
    await new Promise((r) => setTimeout(r, 1600));
    let seen = await control('echo-4', 'reset');
    assert.equal(seen.closed.length, 1, JSON.stringify(seen));
    const idle = seen.closed[0]?.idleMs ?? 0;
    assert.ok(Math.abs(idle - 1000) <= 100, `an idle connection was closed after ${idle} ms (1s)`);
    // (Measured by the backend, ±10 %.) One request every 200 ms for 2.4 s over the pool: its
    // connection is closed at 1.5 s.
    await send(Array.from({ length: 12 }, (_, k) => ({ path: '/life/x', at: k * 200 })));
    seen = await control('echo-4', 'stats');
    const life = seen.closed[0]?.lifeMs ?? 0;
    t.diagnostic(
      `connectionIdleTimeout 1s: closed after ${idle} ms idle; maxConnectionDuration 1500ms: after ${life} ms`,
    );
    assert.ok(
      Math.abs(life - 1500) <= 150,
      `a connection was closed after ${life} ms (1.5s): ${JSON.stringify(seen)}`,
    );
  });

  it('timeouts: tcp connectTimeout answers 503 within 10 %', async (t) => {
    // The endpoint's SYNs are dropped in its own namespace: connect attempts hang.
    await ok(
      [
        'lab',
        'exec',
        `${NS}/echo-4`,
        '--',
        'iptables',
        '-A',
        'INPUT',
        '-p',
        'tcp',
        '--dport',
        '3000',
        '--syn',
        '-j',
        'DROP',
      ],
      LAB,
    );
    const as = await send(burst('/ct/x', 3));
    timely(as, 503, 1000, 'connectTimeout 1s');
    t.diagnostic(`connectTimeout 1s: 503 after ${as.map((a) => a.ms.toFixed(0)).join(', ')} ms`);
    assert.ok(
      (await metric('weir_gateway_upstream_timeouts_total', {
        backend: `${NS}/conn:8080`,
        kind: 'connect',
      })) >= 2,
    );
  });

  it('metrics per route and backend; L7 flows name the route and the backend', async () => {
    assert.ok(
      (await metric('weir_gateway_requests_total', {
        gateway: `${NS}/edge`,
        route: `${NS}/cb`,
        backend: `${NS}/solo:8080`,
        code: '503',
      })) >= 3,
    );
    const out = await ok(['observe', '--type', 'l7', '--last', '2000', '-o', 'json'], LAB);
    const flows = out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(
        (l) =>
          JSON.parse(l) as {
            l7?: { http?: { url: string; code: number } };
            weir: { route?: { name: string }; backend?: string };
          },
      );
    const f = flows.find((x) => x.l7?.http?.url.includes('/par/x') && x.l7.http.code === 503);
    assert.ok(f, 'an L7 flow of an overflowed request');
    assert.equal(f.weir.route?.name, 'par');
    assert.equal(f.weir.backend, `${NS}/solo:8080`);
    // route trace names the policy in force and what it sets.
    const trace = JSON.parse(
      await ok(
        [
          'route',
          'trace',
          '--gateway',
          `${NS}/edge`,
          '--host',
          'resil.example',
          '--path',
          '/cb/x',
          '-o',
          'json',
        ],
        LAB,
      ),
    ) as { policy?: string };
    assert.match(
      trace.policy ?? '',
      /^rs\/cb: circuit breaker connections 2, pending 1, requests 1024, retries 1024$/,
    );
  });
});
