// hubble observe filter semantics: repeated flags OR, different flags AND, two-sided flags match
// either side (with the other criteria on the same side), bad values name their flag.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileFilter, parseFlowQuery, toSearchParams, type FlowQuery } from './filters.js';
import type { Flow, FlowEndpoint } from './flow.js';
import { compactLine, flowRow } from './format.js';

const ep = (ns: string, pod: string, identity: number, labels: string[]): FlowEndpoint => ({
  ID: identity - 255,
  identity,
  namespace: ns,
  pod_name: pod,
  labels,
});
const client = ep('app', 'client-7f9', 256, ['k8s:role=client', 'k8s:tier=web']);
const server = ep('app', 'server', 257, ['k8s:role=server']);
const db = ep('data', 'db', 258, ['k8s:role=db']);
const world: FlowEndpoint = { ID: 0, identity: 2, labels: ['reserved:world'] };

function flow(
  src: FlowEndpoint,
  dst: FlowEndpoint,
  o: {
    sport?: number;
    dport?: number;
    udp?: boolean;
    verdict?: Flow['verdict'];
    type?: Flow['weir']['type'];
    time?: string;
    srcIp?: string;
    dstIp?: string;
  } = {},
): Flow {
  const ports = { source_port: o.sport ?? 40000, destination_port: o.dport ?? 80 };
  return {
    time: o.time ?? '2026-01-01T00:00:00.000000000Z',
    uuid: 'x',
    verdict: o.verdict ?? 'FORWARDED',
    IP: { source: o.srcIp ?? '10.0.0.1', destination: o.dstIp ?? '10.0.0.2', ipVersion: 'IPv4' },
    l4: o.udp ? { UDP: ports } : { TCP: ports },
    source: src,
    destination: dst,
    Type: 'L3_L4',
    node_name: 'n',
    event_type: { type: 9, sub_type: 0 },
    traffic_direction: 'EGRESS',
    trace_observation_point: 'FROM_ENDPOINT',
    is_reply: false,
    Summary: 'TCP',
    weir: { type: o.type ?? 'policy-verdict' },
  };
}

const q = (filters: FlowQuery['filters'], extra: Partial<FlowQuery> = {}) =>
  compileFilter({ filters, ...extra }, Date.parse('2026-01-01T00:10:00Z'));
const a = flow(client, server);
const b = flow(server, db, { dport: 5432 });
const c = flow(db, world, { udp: true, dport: 53, verdict: 'DROPPED', type: 'drop', dstIp: '8.8.8.8' });
const all = [a, b, c];
const pick = (pred: (f: Flow) => boolean) => all.filter(pred).map((f) => all.indexOf(f));

describe('flow filters', () => {
  it('matches everything without filters', () => assert.deepEqual(pick(q({})), [0, 1, 2]));

  it('--pod matches either side by [ns/]name prefix; --namespace is its namespace', () => {
    assert.deepEqual(pick(q({ pod: ['app/server'] })), [0, 1]);
    assert.deepEqual(pick(q({ pod: ['client'], namespace: ['app'] })), [0]);
    assert.deepEqual(pick(q({ pod: ['client'] })), [], 'default namespace is "default"');
    assert.deepEqual(pick(q({ 'from-pod': ['app/server'] })), [1]);
    assert.deepEqual(pick(q({ 'to-pod': ['app/server'] })), [0]);
  });

  it('repeating a flag ORs, different flags AND', () => {
    assert.deepEqual(pick(q({ 'from-pod': ['app/client', 'data/db'] })), [0, 2]);
    assert.deepEqual(pick(q({ 'from-pod': ['app/client', 'data/db'], protocol: ['udp'] })), [2]);
    assert.deepEqual(pick(q({ verdict: ['DROPPED'] })), [2]);
    assert.deepEqual(pick(q({ type: ['drop', 'policy-verdict'] })), [0, 1, 2]);
  });

  it('a two-sided flag keeps the other criteria on its side (hubble: --pod x --port 80)', () => {
    // server is the source of b (sport 40000) and the destination of a (dport 80).
    assert.deepEqual(pick(q({ pod: ['app/server'], port: ['80'] })), [0]);
    assert.deepEqual(pick(q({ pod: ['app/server'], port: ['40000'] })), [1]);
    assert.deepEqual(pick(q({ 'to-port': ['5432'] })), [1]);
  });

  it('namespaces, label selectors, identities (numbers and reserved names), IPs and CIDRs', () => {
    assert.deepEqual(pick(q({ namespace: ['data'] })), [1, 2]);
    assert.deepEqual(pick(q({ 'to-namespace': ['data'] })), [1]);
    assert.deepEqual(pick(q({ label: ['role=client'] })), [0]);
    assert.deepEqual(pick(q({ 'from-label': ['k8s:role=client,tier'] })), [0]);
    assert.deepEqual(pick(q({ 'from-label': ['role=client,!tier'] })), []);
    assert.deepEqual(pick(q({ 'to-label': ['reserved:world'] })), [2]);
    assert.deepEqual(pick(q({ label: ['role!=server'] })), [0, 1, 2]);
    assert.deepEqual(pick(q({ 'to-identity': ['world'] })), [2]);
    assert.deepEqual(pick(q({ identity: ['258'] })), [1, 2]);
    assert.deepEqual(pick(q({ 'to-ip': ['8.8.8.0/24'] })), [2]);
    assert.deepEqual(pick(q({ ip: ['10.0.0.2'] })), [0, 1]);
  });

  it('since/until take RFC 3339 or durations back from now', () => {
    const old = flow(client, server, { time: '2026-01-01T00:00:00.000000000Z' });
    const recent = flow(client, server, { time: '2026-01-01T00:08:00.123456789Z' });
    assert.equal(q({}, { since: '5m' })(old), false);
    assert.equal(q({}, { since: '5m' })(recent), true);
    assert.equal(q({}, { until: '2026-01-01T00:05:00Z' })(recent), false);
    assert.equal(q({}, { since: '1h' })(old), true);
  });

  it('rejects bad values naming the flag', () => {
    const bad = (filters: FlowQuery['filters'], field: string) =>
      assert.throws(
        () => q(filters),
        (e: { code: string; location: { field: string } }) =>
          e.code === 'ERR_OBSERVE_FILTER' && e.location.field === field,
      );
    bad({ verdict: ['MAYBE'] }, 'verdict');
    bad({ protocol: ['quic'] }, 'protocol');
    bad({ port: ['http'] }, 'port');
    bad({ 'to-ip': ['10.0.0.300'] }, 'to-ip');
    bad({ identity: ['nobody'] }, 'identity');
    bad({ type: ['trace:sideways'] }, 'type');
    bad({ 'from-label': ['a=b,,'] }, 'from-label');
    assert.throws(() => q({}, { since: 'yesterday' }), { code: 'ERR_OBSERVE_FILTER' });
  });

  it('round-trips through URL query parameters and refuses unknown ones', () => {
    const query: FlowQuery = {
      filters: { 'from-pod': ['app/a', 'app/b'], verdict: ['DROPPED'] },
      since: '5m',
      last: 3,
      follow: true,
    };
    assert.deepEqual(parseFlowQuery(toSearchParams(query)), query);
    assert.throws(() => parseFlowQuery(new URLSearchParams('colour=red')), { code: 'ERR_OBSERVE_FILTER' });
    assert.throws(() => parseFlowQuery(new URLSearchParams('last=-1')), { code: 'ERR_OBSERVE_FILTER' });
  });

  describe('L7 (Hubble http filters)', () => {
    const l7 = (
      type: 'REQUEST' | 'RESPONSE',
      method: string,
      url: string,
      code = 0,
      headers: { key: string; value: string }[] = [],
    ): Flow => ({
      ...flow(client, server, { type: 'l7', verdict: code === 403 ? 'DROPPED' : 'FORWARDED' }),
      Type: 'L7',
      event_type: { type: 129, sub_type: 0 },
      is_reply: type === 'RESPONSE',
      l7: { type, latency_ns: 1000, http: { code, method, url, protocol: 'HTTP/1.1', headers } },
    });
    const flows = [
      l7('REQUEST', 'GET', 'http://10.0.0.2/public?x=1', 0, [{ key: 'x-team', value: 'blue' }]),
      l7('RESPONSE', 'GET', 'http://10.0.0.2/public?x=1', 200),
      l7('REQUEST', 'POST', 'http://10.0.0.2/private'),
      l7('RESPONSE', 'POST', 'http://10.0.0.2/private', 403),
      l7('RESPONSE', 'GET', 'http://10.0.0.2/api/v1/a%20b', 503),
      a, // an L3/L4 flow
    ];
    const sel = (filters: FlowQuery['filters']) => {
      const m = q(filters);
      return flows.flatMap((f, i) => (m(f) ? [i] : []));
    };

    it('--type l7 and --protocol http take the L7 flows', () => {
      assert.deepEqual(sel({ type: ['l7'] }), [0, 1, 2, 3, 4]);
      assert.deepEqual(sel({ protocol: ['http'] }), [0, 1, 2, 3, 4]);
      assert.deepEqual(sel({ protocol: ['http', 'tcp'] }), [0, 1, 2, 3, 4, 5]);
    });

    it('--http-status: a full code or a prefix, responses only', () => {
      assert.deepEqual(sel({ 'http-status': ['200'] }), [1]);
      assert.deepEqual(sel({ 'http-status': ['403'] }), [3]);
      assert.deepEqual(sel({ 'http-status': ['4+'] }), [3]);
      assert.deepEqual(sel({ 'http-status': ['5+'] }), [4]);
      assert.deepEqual(sel({ 'http-status': ['50+'] }), [4]);
      assert.deepEqual(sel({ 'http-status': ['2+', '4+'] }), [1, 3]);
      assert.deepEqual(sel({ 'http-status': ['20+'] }), [1]);
      assert.deepEqual(sel({ 'http-status': ['201'] }), []);
    });

    it('--http-method ignores case; --http-path is an unanchored regex on the path (no query)', () => {
      assert.deepEqual(sel({ 'http-method': ['get'] }), [0, 1, 4]);
      assert.deepEqual(sel({ 'http-method': ['POST', 'PUT'] }), [2, 3]);
      assert.deepEqual(sel({ 'http-path': ['^/public$'] }), [0, 1]);
      assert.deepEqual(sel({ 'http-path': ['riv'] }), [2, 3]);
      assert.deepEqual(sel({ 'http-path': ['x=1'] }), [], 'the query is not part of the path');
      assert.deepEqual(sel({ 'http-path': ['^/api/v1/a b$'] }), [4], 'percent-decoded like Go');
      assert.deepEqual(sel({ 'http-path': ['^/public$'], 'http-status': ['200'] }), [1]);
    });

    it('--http-url is an unanchored regex on the whole URL; --http-header name:value', () => {
      assert.deepEqual(sel({ 'http-url': ['x=1$'] }), [0, 1]);
      assert.deepEqual(sel({ 'http-url': ['^http://10\\.0\\.0\\.2/p'] }), [0, 1, 2, 3]);
      assert.deepEqual(sel({ 'http-url': ['v1/a{1,3}%20'] }), [4], 'commas stay inside one regex');
      assert.deepEqual(sel({ 'http-header': ['X-Team:blue'] }), [0]);
      assert.deepEqual(sel({ 'http-header': ['x-team: blue'] }), [0]);
      assert.deepEqual(sel({ 'http-header': ['x-team:red'] }), []);
    });

    it('prints L7 flows like hubble: kind, verdict, summary, rule', () => {
      const f: Flow = {
        ...flows[0]!,
        Summary: 'HTTP/1.1 GET http://10.0.0.2/public?x=1',
        ingress_allowed_by: [{ name: 'p', namespace: 'app', kind: 'CiliumNetworkPolicy', rule: 'CNP-rule' }],
      };
      assert.match(
        compactLine(f),
        /: app\/client-7f9:40000 \(ID:256\) -> app\/server:80 \(ID:257\) http-request FORWARDED \(HTTP\/1\.1 GET http:\/\/10\.0\.0\.2\/public\?x=1\) by CNP-rule$/,
      );
      const denied: Flow = { ...flows[3]!, weir: { type: 'l7', detail: 'l7_policy_denied' } };
      assert.equal(flowRow(denied).type, 'http-response');
      assert.equal(flowRow(denied).verdict, 'DROPPED (l7_policy_denied)');
    });

    it('refuses bad L7 values and a --type without l7, naming the flag', () => {
      const bad = (filters: FlowQuery['filters'], field: string) =>
        assert.throws(
          () => q(filters),
          (e: { code: string; location: { field: string } }) =>
            e.code === 'ERR_OBSERVE_FILTER' && e.location.field === field,
          JSON.stringify(filters),
        );
      bad({ 'http-status': ['2xx'] }, 'http-status');
      bad({ 'http-status': ['600'] }, 'http-status');
      bad({ 'http-status': ['+'] }, 'http-status');
      bad({ 'http-path': ['(unclosed'] }, 'http-path');
      bad({ 'http-url': ['[z-a]'] }, 'http-url');
      bad({ 'http-header': ['novalue'] }, 'http-header');
      bad({ 'http-method': [''] }, 'http-method');
      bad({ type: ['drop'], 'http-status': ['200'] }, 'http-status');
      bad({ type: ['l7:http'] }, 'type');
      assert.doesNotThrow(() => q({ type: ['drop', 'l7'], 'http-status': ['200'] }));
    });

    it('keeps regexes and header values whole through the query string', () => {
      const query: FlowQuery = {
        filters: { 'http-url': ['a{1,3}'], 'http-header': ['x:a,b'], 'http-status': ['200', '4+'] },
      };
      assert.deepEqual(parseFlowQuery(toSearchParams(query)), query);
      assert.deepEqual(parseFlowQuery(new URLSearchParams('http-status=200,4%2B')).filters['http-status'], [
        '200',
        '4+',
      ]);
    });
  });
});
