import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Verdict } from '../../observe/flow.js';
import { flowRow, type Flow } from './flow.js';
import { ServiceMap, estimateWidth, renderSvg, type MapLayout, type Rect } from './service-map.js';

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

  it("names each pod's node and marks edges between nodes (a lab of several nodes)", () => {
    const remote = (verdict: Verdict, dir: 'EGRESS' | 'INGRESS', node: string, id: number) =>
      tcp(['default', 'other'], ['default', 'server'], verdict, {
        node_name: node,
        traffic_direction: dir,
        destination: { ID: id, namespace: 'default', pod_name: 'server', labels: [] },
      });
    const cluster = () => {
      const m = new ServiceMap();
      m.addPod('default', 'client', 'node1');
      m.addPod('default', 'other', 'node1');
      m.addPod('default', 'server', 'node2');
      // node1 lets other's packet leave (the server is a remote endpoint: ID 0), node2 drops it.
      m.addFlow(remote('FORWARDED', 'EGRESS', 'node1', 0));
      m.addFlow(remote('DROPPED', 'INGRESS', 'node2', 7));
      m.addFlow(tcp(['default', 'client'], ['default', 'server'], 'FORWARDED', { node_name: 'node2' }));
      return m;
    };
    const m = cluster();
    const l = m.layout();
    assert.deepEqual(
      l.edges.map((e) => [e.from, e.to, e.cls, e.fromNode, e.toNode]),
      [
        ['default/client', 'default/server', 'forwarded', 'node1', 'node2'],
        // Every node's flows: the drop at node2's ingress decides, no green edge from node1's egress.
        ['default/other', 'default/server', 'dropped', 'node1', 'node2'],
      ],
    );
    assert.deepEqual(
      l.nodes.map((n) => [n.peer.key, n.nodeName, n.nodeIndex]),
      [
        ['default/client', 'node1', 0],
        ['default/other', 'node1', 0],
        ['default/server', 'node2', 1],
      ],
    );
    const svg = renderSvg(l);
    assert.match(
      svg,
      /<g class="edge edge-forwarded cross-node" data-from="default\/client" data-to="default\/server"[^>]* data-from-node="node1" data-to-node="node2">/,
    );
    assert.match(svg, /data-k8s-node="node2" data-node="default\/server"/);
    assert.match(svg, /<text class="node-name"[^>]*>node2<\/text>/);
    // One node's flows (node1's): its forwarded egress is all the stream says about other → server.
    const one = new ServiceMap();
    one.setEveryNode(false);
    one.addPod('default', 'server', 'node2');
    one.addPod('default', 'other', 'node1');
    one.addFlow(remote('FORWARDED', 'EGRESS', 'node1', 0));
    assert.deepEqual(
      one.layout().edges.map((e) => [e.from, e.to, e.cls]),
      [['default/other', 'default/server', 'forwarded']],
    );
    // A lab of one node: no node names drawn.
    const single = new ServiceMap();
    single.addPod('app', 'a', 'node1');
    single.addPod('app', 'b', 'node1');
    assert.ok(single.layout().nodes.every((n) => n.nodeName === undefined));
    assert.doesNotMatch(renderSvg(single.layout()), /node-name|data-k8s-node/);
    assert.equal(flowRow(remote('DROPPED', 'INGRESS', 'node2', 7)).node, 'node2');
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
    assert.ok(ab && ba && ab.d !== ba.d && !overlap(ab.label, ba.label));
  });

  it('escapes names in the SVG', () => {
    const m = new ServiceMap();
    m.addPod('ns', '<script>');
    const svg = renderSvg(m.layout());
    assert.ok(!svg.includes('<script>'));
    assert.ok(svg.includes('&#60;script&#62;'));
  });
});

const overlap = (a: Rect, b: Rect) =>
  a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

/** Every pair of labels, and every label with every box and drop badge, that intersect. */
function clashes(l: MapLayout): string[] {
  const out: string[] = [];
  const boxes: (Rect & { what: string })[] = [];
  for (const n of l.nodes) {
    boxes.push({ ...n, what: n.peer.key });
    if (n.drops > 0)
      boxes.push({ x: n.x + n.w - 11, y: n.y - 11, w: 22, h: 22, what: `${n.peer.key} badge` });
  }
  l.edges.forEach((e, i) => {
    for (const f of l.edges.slice(i + 1))
      if (overlap(e.label, f.label)) out.push(`${e.label.text} / ${f.label.text}`);
    for (const b of boxes) if (overlap(e.label, b)) out.push(`${e.label.text} / box ${b.what}`);
    if (e.label.x < 0 || e.label.y < 0 || e.label.x + e.label.w > l.width || e.label.y + e.label.h > l.height)
      out.push(`${e.label.text} outside the map`);
  });
  return out;
}

/** A small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const l7 = (
  src: [string, string],
  dst: [string, string],
  verdict: Verdict,
  method: string,
  url: string,
  code: number,
): Flow =>
  tcp(dst, src, verdict, {
    Type: 'L7',
    is_reply: true,
    l4: { TCP: { source_port: 80, destination_port: 40000 } },
    l7: { type: 'RESPONSE', latency_ns: 1e6, http: { code, method, url, protocol: 'HTTP/1.1', headers: [] } },
    weir: { type: 'l7' },
  });

describe('ui: L7 edges', () => {
  it('fold HTTP responses into their edge by method, path and status; denied ones on the dropped edge', () => {
    const m = new ServiceMap();
    const c: [string, string] = ['app', 'client'];
    const w: [string, string] = ['app', 'web'];
    for (let i = 0; i < 5; i++) m.addFlow(l7(c, w, 'FORWARDED', 'GET', 'http://10.0.0.3/public?i=' + i, 200));
    m.addFlow(l7(c, w, 'FORWARDED', 'GET', 'http://10.0.0.3/api/v1', 200));
    m.addFlow(l7(c, w, 'DROPPED', 'GET', 'http://10.0.0.3/private', 403));
    m.addFlow(l7(c, w, 'DROPPED', 'GET', 'http://10.0.0.3/private', 403));
    // A request flow counts, but adds no exchange (its response does).
    m.addFlow({
      ...tcp(c, w, 'FORWARDED'),
      Type: 'L7',
      traffic_direction: 'EGRESS',
      destination: { ID: 3, namespace: 'app', pod_name: 'web', labels: [] },
      l7: { type: 'REQUEST', http: { method: 'GET', url: 'http://x/public', code: 0 } },
      weir: { type: 'l7' },
    });
    const l = m.layout();
    const ok = l.edges.find((e) => e.cls === 'forwarded');
    const no = l.edges.find((e) => e.cls === 'dropped');
    assert.deepEqual([ok?.from, ok?.to, ok?.count], ['app/client', 'app/web', 7]);
    assert.deepEqual(ok?.l7, [
      ['GET /public 200', 5],
      ['GET /api/v1 200', 1],
    ]);
    assert.equal(ok?.label.text, '\u2713 GET /public 200 \u00d75 +1');
    assert.deepEqual(no?.l7, [['GET /private 403', 2]]);
    assert.equal(no?.label.text, '\u2717 GET /private 403 \u00d72');
    const svg = renderSvg(l);
    assert.ok(
      svg.includes('data-l7="GET /public 200 &#215;5; GET /api/v1 200 &#215;1"') ||
        svg.includes('data-l7="GET /public 200 \u00d75; GET /api/v1 200 \u00d71"'),
    );
    assert.ok(svg.includes('HTTP: GET /private 403 \u00d72'), 'the whole summary on hover');
  });
});

describe('ui: labels never overlap', () => {
  it('no label covers a box, a badge or another label, on many generated maps', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const r = rng(seed);
      const namespaces = ['app', 'data', 'other', 'tools'].slice(0, 1 + Math.floor(r() * 4));
      const pods: [string, string][] = [];
      for (const ns of namespaces)
        for (let i = 0, n = 1 + Math.floor(r() * 5); i < n; i++) pods.push([ns, `pod-${i}`]);
      const m = new ServiceMap();
      for (const [ns, p] of pods) m.addPod(ns, p);
      const edges = Math.floor(r() * 30);
      for (let i = 0; i < edges; i++) {
        const a = pods[Math.floor(r() * pods.length)]!;
        const b = pods[Math.floor(r() * pods.length)]!;
        const verdict: Verdict = r() < 0.3 ? 'DROPPED' : 'FORWARDED';
        if (r() < 0.3)
          m.addFlow(
            l7(
              a,
              b,
              verdict,
              'GET',
              `http://x/${'p'.repeat(Math.floor(r() * 20))}`,
              verdict === 'DROPPED' ? 403 : 200,
            ),
          );
        else if (r() < 0.1)
          m.addFlow({
            ...tcp(a, a, verdict),
            destination: { labels: ['reserved:world'] },
            IP: { source: '10.0.0.1', destination: '192.0.2.1' },
          });
        else
          m.addFlow(
            tcp(a, b, verdict, {
              l4: { TCP: { source_port: 40000, destination_port: 80 + Math.floor(r() * 3) } },
            }),
          );
      }
      const l = m.layout({ measure: estimateWidth });
      assert.deepEqual(clashes(l), [], `seed ${seed}`);
      assert.ok(l.edges.every((e) => e.label.text.length > 0));
    }
  });

  it('lists a label below the map when its edge has no room, naming the pair', () => {
    const m = new ServiceMap();
    const pods: [string, string][] = [
      ['a', 'x'],
      ['a', 'y'],
      ['a', 'z'],
    ];
    // Every pair both ways, allowed and denied, with wide labels: more than the spots along them.
    for (const p of pods)
      for (const q of pods)
        for (const v of ['FORWARDED', 'DROPPED'] as const)
          m.addFlow(l7(p, q, v, 'GET', `http://h/${'long-path-'.repeat(3)}`, v === 'DROPPED' ? 403 : 200));
    const l = m.layout({ measure: (t) => t.length * 12 });
    assert.deepEqual(clashes(l), []);
    const below = l.edges.filter((e) => e.label.overflow);
    assert.ok(below.length > 0, 'some labels are listed below');
    assert.ok(below.length < l.edges.length, 'most find a spot along their edge');
    for (const e of below) {
      assert.ok(e.label.text.startsWith(`${e.from} \u2192 ${e.to}: `));
      assert.ok(e.label.y >= l.bodyHeight - 4);
    }
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

  it('shows L7 flows by kind, with the proxy detail as the reason', () => {
    const row = flowRow({
      verdict: 'DROPPED',
      Type: 'L7',
      l7: { type: 'RESPONSE', http: { code: 403, method: 'GET', url: 'http://x/private' } },
      weir: { type: 'l7', detail: 'l7_policy_denied' },
      Summary: 'HTTP/1.1 403 0ms (GET http://x/private)',
      source: { namespace: 'app', pod_name: 'web' },
      destination: { namespace: 'app', pod_name: 'client' },
    });
    assert.equal(row.type, 'http-response');
    assert.equal(row.dropReason, 'l7_policy_denied');
    assert.equal(row.summary, 'HTTP/1.1 403 0ms (GET http://x/private)');
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

  it('draws a pending diff: added and removed edges per pair with their ports, apart from traffic', () => {
    const m = new ServiceMap();
    m.addPod('app', 'server');
    m.addFlow(tcp(['app', 'client'], ['app', 'server'], 'FORWARDED'));
    m.addFlow(tcp(['app', 'client'], ['app', 'server'], 'AUDIT'));
    m.setPending([
      { from: 'app/client', to: 'app/server', port: 80, protocol: 'TCP', before: 'allowed', after: 'denied' },
      { from: 'app/client', to: 'app/server', port: 81, protocol: 'UDP', before: 'allowed', after: 'denied' },
      { from: 'other/new', to: 'app/server', port: 80, protocol: 'TCP', before: 'denied', after: 'allowed' },
      { from: 'world', to: 'app/server', port: 80, protocol: 'TCP', before: 'denied', after: 'allowed' },
    ]);
    const l = m.layout();
    assert.deepEqual(
      l.edges.map((e) => [e.from, e.to, e.cls, e.count, e.ports]),
      [
        ['app/client', 'app/server', 'audit', 1, ['80/TCP']],
        ['app/client', 'app/server', 'forwarded', 1, ['80/TCP']],
        ['app/client', 'app/server', 'removed', 2, ['80/TCP', '81/UDP']],
        ['other/new', 'app/server', 'added', 1, ['80/TCP']],
        ['world', 'app/server', 'added', 1, ['80/TCP']],
      ],
    );
    assert.deepEqual(l.nodes.map((n) => n.peer.key).sort(), [
      'app/client',
      'app/server',
      'other/new',
      'world',
    ]);
    const svg = renderSvg(l);
    assert.match(
      svg,
      /class="edge edge-added" data-from="other\/new" data-to="app\/server" data-verdict="added"/,
    );
    assert.match(svg, /pending change, 2 connections would be denied \(80\/TCP, 81\/UDP\)/);
    assert.match(svg, /marker-end="url\(#arrow-removed\)"/);
    // Clearing the traffic keeps the pending edges; an empty diff clears them.
    m.clearFlows();
    assert.deepEqual(
      m.layout().edges.map((e) => e.cls),
      ['removed', 'added', 'added'],
    );
    m.setPending([]);
    assert.deepEqual(m.layout().edges, []);
  });
});
