// The node proxy's HTTP records on the agent's lazy path (compact lines counted from their head,
// stored as they came, made flows when read) against the eager path (each record a Flow at once,
// counted by countFlow): the same flows when read, filtered (--type l7, --http-status,
// --http-method, --http-path) or followed, the same verdict naming the rule, the same Prometheus
// lines; and every line is stored or counted as lost.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Enricher, type EnrichmentSource } from '../observe/enrich.js';
import type { Flow, FlowsLine } from '../observe/flow.js';
import { compactLine as flowText } from '../observe/format.js';
import { compileFilter, type FlowQuery } from '../observe/filters.js';
import { FlowObserver } from '../observe/stream.js';
import { recordLine } from '../proxy/records.js';
import type { L7Record } from '../proxy/types.js';
import { L7Intake, countFlow } from './flows.js';
import { AgentMetrics } from './metrics.js';

const pod = (n: number) => ({
  id: n,
  namespace: 'app',
  pod: `p${n}`,
  identity: 256 + n,
  labels: [`k8s:app=p${n}`],
});
const source: EnrichmentSource = {
  endpointByIfindex: () => undefined,
  endpointByIp: (ip) => (ip.startsWith('10.0.0.') ? pod(Number(ip.slice(7))) : undefined),
  identityLabels: (id) => (id === 16777217 ? ['cidr:192.0.2.10/32'] : undefined),
  rule: (c) =>
    c === 5
      ? {
          kind: 'CiliumNetworkPolicy',
          namespace: 'app',
          name: 'web',
          direction: 'ingress',
          ruleIndex: 0,
          deny: false,
        }
      : undefined,
};

const web = { kind: 'CiliumNetworkPolicy' as const, namespace: 'app', name: 'web', cookie: 5 };

/** Requests and responses as the HTTP engine makes them, both directions, every verdict. */
function records(): L7Record[] {
  const out: L7Record[] = [];
  const methods = ['GET', 'POST', 'DELETE'];
  const statuses = [200, 404, 403, 503];
  for (let i = 0; i < 40; i++) {
    const direction = i % 3 === 0 ? 'egress' : 'ingress';
    const code = statuses[i % statuses.length] as number;
    const verdict = code === 403 ? 'DENIED' : code === 503 ? 'ERROR' : 'FORWARDED';
    const method = methods[i % methods.length] as string;
    const base = {
      timeNs: `17000000001234${String(56789 + i).padStart(5, '0')}`,
      direction,
      endpointId: 1 + (i % 2),
      source: { ip: `10.0.0.${1 + (i % 2)}`, port: 40000 + i, identity: 257 + (i % 2) },
      destination:
        i % 5 === 4
          ? { ip: '192.0.2.10', port: 443, identity: 16777217 }
          : { ip: '10.0.0.3', port: 80, identity: 259 },
      ...(i % 4 === 1 ? {} : { policy: web }),
    } as const;
    const http = {
      method,
      url: `http://server/api/v${i % 2}/items?n=${i}`,
      protocol: i % 2 ? 'HTTP/2' : 'HTTP/1.1',
      headers: i % 3 ? [{ key: 'user-agent', value: 'curl/8' }] : [],
    };
    out.push({
      ...base,
      type: 'REQUEST',
      verdict,
      http,
      ...(verdict === 'DENIED' ? { detail: 'l7_policy_denied' } : {}),
    });
    out.push({
      ...base,
      type: 'RESPONSE',
      verdict,
      http: { ...http, code },
      latencyNs: [40_000, 2_000_000, 7_000_000, 30_000_000, 12_000_000_000][i % 5] as number,
      ...(verdict === 'ERROR' ? { detail: 'upstream_reset' } : {}),
    });
  }
  // Shapes that go as JSON lines: text a compact line cannot carry, a DNS answer.
  out.push({ ...(out[0] as L7Record), http: { ...(out[0] as L7Record).http!, url: 'http://server/a\tb' } });
  out.push({
    ...(out[1] as L7Record),
    http: undefined,
    transport: 'UDP',
    dns: {
      query: 'a.example.',
      qtypes: ['A'],
      rcode: 'NOERROR',
      ips: ['192.0.2.1'],
      ttl: 30,
      rrtypes: ['A'],
    },
  });
  return out;
}

const strip = (l: FlowsLine) => JSON.stringify(l, (k, v: unknown) => (k === 'uuid' ? undefined : v));

function eager() {
  const observer = new FlowObserver({ capacity: 4095 });
  const metrics = new AgentMetrics();
  observer.onFlow((f) => countFlow(metrics, f));
  const intake = new L7Intake({ observer, nodeName: 'n1', enricher: new Enricher(source), metrics });
  return { observer, metrics, run: (r: L7Record) => intake.ingestL7(r) };
}

function lazy() {
  const observer = new FlowObserver({ capacity: 4095 });
  const metrics = new AgentMetrics();
  observer.onFlow((f) => countFlow(metrics, f));
  const intake = new L7Intake({ observer, nodeName: 'n1', enricher: new Enricher(source), metrics });
  return { observer, metrics, intake, run: (r: L7Record) => intake.ingestRecordLine(recordLine(r)) };
}

/** The flow and L7 metric lines; sums rounded (the lazy path sums whole ns, the eager one seconds). */
const metricLines = async (m: AgentMetrics) =>
  (await m.registry.metrics())
    .split('\n')
    .filter((l) => /^hubble_(http_|flows_processed|dns_)/.test(l))
    .map((l) =>
      /_sum\{/.test(l) ? l.replace(/ ([\d.e+-]+)$/, (_, v: string) => ` ${Number(v).toFixed(9)}`) : l,
    )
    .sort();

const query = (filters: FlowQuery['filters']) => compileFilter({ filters });

describe('L7 records on the lazy path', () => {
  it('most HTTP records travel as compact lines, the rest as JSON', () => {
    const lines = records().map(recordLine);
    assert.equal(lines.filter((l) => l.startsWith('H')).length, 80);
    assert.equal(lines.filter((l) => l.startsWith('{')).length, 2);
  });

  it('are stored as lines and read as the same flows the eager path stores, whatever the filter', () => {
    const a = eager();
    const b = lazy();
    for (const r of records()) {
      a.run(r);
      b.run(r);
    }
    for (const filters of <FlowQuery['filters'][]>[
      {},
      { type: ['l7'] },
      { type: ['l7'], 'http-status': ['4+'] },
      { type: ['l7'], 'http-method': ['POST'] },
      { type: ['l7'], 'http-path': ['/api/v1/.*'] },
      { verdict: ['DROPPED'] },
      { 'to-pod': ['app/p3'] },
    ]) {
      const want = a.observer.read({ filter: query(filters) });
      const got = b.observer.read({ filter: query(filters) });
      assert.ok(want.length > 0, JSON.stringify(filters));
      assert.deepEqual(got.map(strip), want.map(strip), JSON.stringify(filters));
    }
    // What `weir observe` prints, including the rule that decided.
    const texts = b.observer
      .read({ filter: query({ verdict: ['DROPPED'] }) })
      .map((l) => flowText((l as { flow: Flow }).flow));
    assert.ok(texts.length > 0 && texts.every((t) => t.includes('DROPPED')), texts.join('\n'));
    const denied = b.observer.read({ filter: query({ verdict: ['DROPPED'] }) })[0] as { flow: Flow };
    assert.equal((denied.flow.ingress_denied_by ?? denied.flow.egress_denied_by)?.[0]?.name, 'web');
  });

  it('give each stored flow one uuid, the same on every read', () => {
    const b = lazy();
    for (const r of records()) b.run(r);
    const uuids = (b.observer.read({ filter: () => true }) as { flow: Flow }[]).map((l) => l.flow.uuid);
    assert.deepEqual(
      (b.observer.read({ filter: () => true }) as { flow: Flow }[]).map((l) => l.flow.uuid),
      uuids,
    );
    assert.equal(new Set(uuids).size, uuids.length);
  });

  it('reach a follower as the flows the eager path sends it', () => {
    const follow = (o: FlowObserver) => {
      const got: FlowsLine[] = [];
      o.follow(
        { write: (l) => (got.push(l), true), onDrain: () => {}, full: () => false },
        query({ type: ['l7'], 'http-status': ['200'] }),
      );
      return got;
    };
    const a = eager();
    const b = lazy();
    const fa = follow(a.observer);
    const fb = follow(b.observer);
    for (const r of records()) {
      a.run(r);
      b.run(r);
    }
    assert.ok(fa.length > 0);
    assert.deepEqual(fb.map(strip), fa.map(strip));
  });

  it('are counted in the flow and HTTP metrics as the eager path counts them', async () => {
    const a = eager();
    const b = lazy();
    for (const r of records()) {
      a.run(r);
      b.run(r);
    }
    const want = await metricLines(a.metrics);
    assert.ok(want.some((l) => l.startsWith('hubble_http_request_duration_seconds_bucket')));
    assert.deepEqual(await metricLines(b.metrics), want);
    // Counting goes on after a scrape: only what is new is added.
    for (const r of records().slice(0, 10)) {
      a.run(r);
      b.run(r);
    }
    assert.deepEqual(await metricLines(b.metrics), await metricLines(a.metrics));
    const text = await b.metrics.registry.metrics();
    assert.match(
      text,
      /^hubble_http_requests_total\{method="GET",protocol="HTTP\/1\.1",reporter="client"\} \d+$/m,
    );
    assert.match(text, /^hubble_flows_processed_total\{type="L7",subtype="",verdict="DROPPED"\} \d+$/m);
  });

  it("are stored or counted as lost, never neither: bad lines and the proxy's own losses", () => {
    const b = lazy();
    const good = recordLine(records()[1] as L7Record);
    for (const line of [
      good,
      'HXeF\tGET\tHTTP/1.1\t200\t1\tx', // unknown type
      good.slice(0, good.lastIndexOf('\t')), // a field short
      'H',
      '{"record": 3',
      '{"lost":7}',
      'not a line',
    ])
      b.intake.ingestRecordLine(line);
    const all = b.observer.read({ filter: () => true, since: 0 });
    assert.equal(all.filter((l) => 'flow' in l).length, 1);
    assert.equal(b.observer.lost.OBSERVER_EVENTS_QUEUE, 5 + 7);
  });
});
