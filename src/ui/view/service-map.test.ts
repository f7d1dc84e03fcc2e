import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Verdict } from '../../observe/flow.js';
import { flowRow, type Flow } from './flow.js';
import { ServiceMap, renderSvg } from './service-map.js';

function tcp(
  src: [string, string],
  dst: [string, string],
  verdict: Verdict,
  extra: Partial<Flow> = {},
): Flow {
  return {
    time: '2026-01-02T03:04:05.678Z',
    verdict,
    IP: { source: '10.244.0.2', destination: '10.244.0.3', ipVersion: 'IPv4' },
    l4: { TCP: { source_port: 40000, destination_port: 80, flags: { SYN: true } } },
    source: { namespace: src[0], pod_name: src[1], labels: [] },
    destination: { namespace: dst[0], pod_name: dst[1], labels: [] },
    traffic_direction: 'INGRESS',
    Type: 'L3_L4',
    ...extra,
  };
}

describe('ui: service map', () => {
  it('folds flows into one edge per pair and verdict, replies onto their request, drops onto both ends', () => {
    const m = new ServiceMap();
    m.addPod('app', 'server');
    m.addFlow(tcp(['app', 'client'], ['app', 'server'], 'FORWARDED'));
    m.addFlow(tcp(['app', 'server'], ['app', 'client'], 'FORWARDED', { is_reply: true }));
    m.addFlow(tcp(['other', 'intruder'], ['app', 'server'], 'DROPPED'));
    m.addFlow(tcp(['other', 'intruder'], ['app', 'server'], 'DROPPED'));
    // Leaving the intruder was allowed; the server's ingress decided (the drop above).
    m.addFlow(
      tcp(['other', 'intruder'], ['app', 'server'], 'FORWARDED', {
        traffic_direction: 'EGRESS',
        destination: { ID: 7, namespace: 'app', pod_name: 'server', labels: [] },
      }),
    );
    const l = m.layout();
    assert.deepEqual(
      l.edges.map((e) => [e.from, e.to, e.cls, e.count, e.ports]),
      [
        ['app/client', 'app/server', 'forwarded', 2, ['80/TCP']],
        ['other/intruder', 'app/server', 'dropped', 2, ['80/TCP']],
      ],
    );
    const drops = Object.fromEntries(l.nodes.map((n) => [n.peer.key, n.drops]));
    assert.deepEqual(drops, { 'app/client': 0, 'app/server': 2, 'other/intruder': 2 });
    assert.deepEqual(
      l.columns.map((c) => c.title),
      ['app', 'other'],
    );
  });

  it('lays out the same way whatever order flows come in', () => {
    const flows = [
      tcp(['b', 'y'], ['a', 'x'], 'FORWARDED'),
      tcp(['a', 'x'], ['b', 'y'], 'DROPPED'),
      {
        ...tcp(['a', 'x'], ['a', 'x'], 'FORWARDED'),
        destination: { labels: ['reserved:world'] },
        IP: { destination: '192.0.2.1' },
      },
    ];
    const one = new ServiceMap();
    const two = new ServiceMap();
    flows.forEach((f) => one.addFlow(f));
    [...flows].reverse().forEach((f) => two.addFlow(f));
    assert.equal(renderSvg(one.layout()), renderSvg(two.layout()));
    const l = one.layout();
    assert.deepEqual(
      l.columns.map((c) => c.title),
      ['a', 'b', 'outside the cluster'],
    );
    assert.equal(l.nodes.find((n) => n.peer.key === 'world')?.peer.kind, 'world');
    // Opposite directions between one pair run apart, labels too.
    const [ab, ba] = [l.edges.find((e) => e.from === 'a/x'), l.edges.find((e) => e.from === 'b/y')];
    assert.ok(ab && ba && ab.d !== ba.d && ab.labelY !== ba.labelY);
  });

  it('escapes names in the SVG', () => {
    const m = new ServiceMap();
    m.addPod('ns', '<script>');
    const svg = renderSvg(m.layout());
    assert.ok(!svg.includes('<script>'));
    assert.ok(svg.includes('&#60;script&#62;'));
  });
});

describe('ui: flow rows', () => {
  it('shows peers, port, verdict, reason and the deciding policies', () => {
    const f = tcp(['app', 'intruder'], ['app', 'server'], 'DROPPED', {
      drop_reason_desc: 'POLICY_DENIED',
      ingress_denied_by: [{ name: 'deny-intruder', namespace: 'app', kind: 'CiliumNetworkPolicy' }],
      egress_allowed_by: [{ name: 'allow-all', namespace: 'app' }],
    });
    const row = flowRow(f);
    assert.equal(row.source, 'app/intruder');
    assert.equal(row.destination, 'app/server');
    assert.equal(row.port, '80/TCP');
    assert.equal(row.verdict, 'DROPPED');
    assert.equal(row.dropReason, 'POLICY_DENIED');
    assert.equal(row.policy, 'allowed by app/allow-all; denied by app/deny-intruder');
    assert.equal(row.direction, 'INGRESS');
    assert.equal(row.summary, 'SYN');
    assert.match(row.time, /^\d\d:\d\d:05\.678$/);
  });

  it('names outside peers by address and identity', () => {
    const row = flowRow({
      verdict: 'FORWARDED',
      IP: { source: '10.244.0.2', destination: '192.0.2.9' },
      source: { namespace: 'app', pod_name: 'client' },
      destination: { labels: ['reserved:world'] },
      l4: { ICMPv4: { type: 8, code: 0 } },
    });
    assert.equal(row.destination, '192.0.2.9 (world)');
    assert.equal(row.port, 'ICMPv4 8/0');
  });
});
