// Parser, ring and observer: datapath events (built from struct flow_event's layout, decoded by the
// datapath's decoder) become Hubble-shaped flows; the ring keeps the newest; followers never block.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeFlowEvent,
  EventFlag,
  EventType,
  FlowEventLayout,
  TraceType,
} from '../datapath/maps/events/index.js';
import { Enricher, type EnrichmentSource } from './enrich.js';
import type { Flow, FlowsLine } from './flow.js';
import { compactLine } from './format.js';
import { FlowParser, KtimeClock } from './parser.js';
import { Ring } from './ring.js';
import { FlowObserver } from './stream.js';

const client = { id: 11, namespace: 'app', pod: 'client', identity: 256, labels: ['k8s:role=client'] };
const server = { id: 12, namespace: 'app', pod: 'server', identity: 257, labels: ['k8s:role=server'] };
const source: EnrichmentSource = {
  endpointByIfindex: (i) => (i === 7 ? client : i === 8 ? server : undefined),
  endpointByIp: (ip) => (ip === '10.0.0.1' ? client : ip === '10.0.0.2' ? server : undefined),
  identityLabels: (id) => (id === 16777217 ? ['cidr:192.0.2.10/32', 'reserved:world'] : undefined),
  rule: (c) =>
    c === 5
      ? {
          kind: 'CiliumNetworkPolicy',
          namespace: 'app',
          name: 'deny-db',
          direction: 'ingress',
          ruleIndex: 0,
          deny: true,
        }
      : c === 6
        ? {
            kind: 'NetworkPolicy',
            namespace: 'app',
            name: 'web',
            direction: 'egress',
            ruleIndex: 1,
            deny: false,
          }
        : undefined,
};

function record(
  over: Partial<ReturnType<typeof FlowEventLayout.decode>> & { src?: number[]; dst?: number[] },
): Buffer {
  const buf = Buffer.alloc(FlowEventLayout.size);
  const saddr = Buffer.alloc(16);
  const daddr = Buffer.alloc(16);
  Buffer.from(over.src ?? [10, 0, 0, 1]).copy(saddr);
  Buffer.from(over.dst ?? [10, 0, 0, 2]).copy(daddr);
  const { src: _s, dst: _d, ...fields } = over;
  FlowEventLayout.encode(
    {
      type: EventType.POLICY_VERDICT,
      subtype: 0,
      direction: 2,
      reason: 0,
      family: 4,
      nexthdr: 6,
      flags: 0,
      tcpFlags: 0x02,
      ifindex: 7,
      endpointId: 11,
      srcIdentity: 256,
      dstIdentity: 257,
      cookie: 0,
      len: 74,
      saddr,
      daddr,
      sport: 40000,
      dport: 80,
      proxyPort: 0,
      ktimeNs: 1_000_000_123n,
      packetsFwd: 0n,
      bytesFwd: 0n,
      packetsRev: 0n,
      bytesRev: 0n,
      ...fields,
    },
    buf,
    0,
  );
  return buf;
}

// Wall clock = ktime + 1.7e18 ns: 2023-11-14T22:13:20Z plus ktime.
const parser = new FlowParser({
  nodeName: 'node1',
  enricher: new Enricher(source),
  clock: new KtimeClock(1_700_000_000_000_000_000n),
  uuid: () => 'u-1',
});
const parse = (over: Parameters<typeof record>[0]) => parser.parse(decodeFlowEvent(record(over)));

describe('parser', () => {
  it('turns an allowed egress policy verdict into a FORWARDED flow with both pods and the allowing rule', () => {
    const f = parse({ cookie: 6 });
    assert.equal(f.time, '2023-11-14T22:13:21.000000123Z');
    assert.equal(f.verdict, 'FORWARDED');
    assert.equal(f.drop_reason_desc, undefined);
    assert.deepEqual(f.IP, { source: '10.0.0.1', destination: '10.0.0.2', ipVersion: 'IPv4' });
    assert.deepEqual(f.l4, { TCP: { source_port: 40000, destination_port: 80, flags: { SYN: true } } });
    assert.deepEqual(f.source, {
      ID: 11,
      identity: 256,
      namespace: 'app',
      labels: ['k8s:role=client'],
      pod_name: 'client',
    });
    assert.equal(f.destination.pod_name, 'server');
    assert.equal(f.traffic_direction, 'EGRESS');
    assert.equal(f.trace_observation_point, 'FROM_ENDPOINT');
    assert.equal(f.is_reply, false);
    assert.deepEqual(f.event_type, { type: 9, sub_type: 0 });
    assert.equal(f.Summary, 'TCP Flags: SYN');
    assert.deepEqual(f.egress_allowed_by, [
      { name: 'web', namespace: 'app', kind: 'NetworkPolicy', rule: 'NetworkPolicy app/web egress[1]' },
    ]);
    assert.equal(f.weir.type, 'policy-verdict');
  });

  it('a connection handed to the node proxy is REDIRECTED with its listener port; the proxy upstream is marked', () => {
    const f = parse({ cookie: 6, flags: EventFlag.TO_PROXY, proxyPort: 10001 });
    assert.equal(f.verdict, 'REDIRECTED');
    assert.equal(f.proxy_port, 10001);
    assert.match(compactLine(f), /policy-verdict:L3-L4 EGRESS REDIRECTED to proxy port 10001/);
    const up = parse({ direction: 1, flags: EventFlag.FROM_PROXY });
    assert.equal(up.verdict, 'FORWARDED');
    assert.equal(up.weir.from_proxy, true);
    assert.equal(up.proxy_port, undefined);
    const lost = parse({ type: EventType.DROP, direction: 1, reason: 178 });
    assert.equal(lost.drop_reason_desc, 'SOCKET_LOOKUP_FAILED');
    assert.match(compactLine(lost), /DROPPED \(Proxy redirection not possible\)/);
  });

  it('names drop reasons like Hubble and attributes explicit denies', () => {
    const f = parse({
      type: EventType.DROP,
      direction: 1,
      reason: 181,
      cookie: 5,
      ifindex: 8,
      endpointId: 12,
    });
    assert.equal(f.verdict, 'DROPPED');
    assert.equal(f.drop_reason, 181);
    assert.equal(f.drop_reason_desc, 'POLICY_DENY');
    assert.equal(f.traffic_direction, 'INGRESS');
    assert.equal(f.trace_observation_point, 'TO_ENDPOINT');
    assert.deepEqual(f.event_type, { type: 1, sub_type: 181 });
    assert.equal(f.ingress_denied_by?.[0]?.name, 'deny-db');
    assert.match(
      compactLine(f),
      /app\/client:40000 \(ID:256\) -> app\/server:80 \(ID:257\) drop INGRESS DROPPED \(Policy denied by denylist\) \(TCP Flags: SYN\) by CiliumNetworkPolicy app\/deny-db ingressDeny\[0\]$/,
    );
    const d = parse({ type: EventType.POLICY_VERDICT, direction: 1, reason: 133, ifindex: 8 });
    assert.equal(d.drop_reason_desc, 'POLICY_DENIED');
    assert.equal(d.ingress_denied_by, undefined);
  });

  it('an audited verdict (EVENT_F_AUDIT) is AUDIT, keeps what would have dropped it and the denying rule', () => {
    const deny = parse({
      direction: 1,
      reason: 181,
      cookie: 5,
      ifindex: 8,
      endpointId: 12,
      flags: EventFlag.AUDIT,
    });
    assert.equal(deny.verdict, 'AUDIT');
    assert.equal(deny.drop_reason_desc, 'POLICY_DENY');
    assert.equal(deny.ingress_denied_by?.[0]?.name, 'deny-db');
    assert.match(compactLine(deny), /policy-verdict:L3-L4 INGRESS AUDIT \(policy would deny: POLICY_DENY\)/);
    const none = parse({ direction: 1, reason: 133, ifindex: 8, endpointId: 12, flags: EventFlag.AUDIT });
    assert.equal(none.verdict, 'AUDIT');
    assert.equal(none.drop_reason_desc, 'POLICY_DENIED');
    assert.match(compactLine(none), /policy-verdict:none INGRESS AUDIT \(policy would deny: POLICY_DENIED\)/);
    // The flag only matters on a denial.
    assert.equal(parse({ cookie: 6, flags: EventFlag.AUDIT }).verdict, 'FORWARDED');
  });

  it('records reserved and CIDR peers with their labels', () => {
    const world = parse({ dst: [8, 8, 8, 8], dstIdentity: 2 });
    assert.deepEqual(world.destination, { ID: 0, identity: 2, labels: ['reserved:world'] });
    assert.match(compactLine(world), /-> 8\.8\.8\.8:80 \(world\)/);
    const cidr = parse({ dst: [192, 0, 2, 10], dstIdentity: 16777217 });
    assert.deepEqual(cidr.destination.labels, ['cidr:192.0.2.10/32', 'reserved:world']);
    assert.match(compactLine(cidr), /-> 192\.0\.2\.10:80 \(ID:16777217\)/);
  });

  it('turns a reply close trace into an is_reply flow of the connection direction, with counters', () => {
    const f = parse({
      type: EventType.TRACE,
      subtype: TraceType.CLOSE,
      direction: 1,
      flags: EventFlag.REPLY,
      src: [10, 0, 0, 2],
      dst: [10, 0, 0, 1],
      srcIdentity: 257,
      dstIdentity: 256,
      sport: 80,
      dport: 40000,
      tcpFlags: 0x11,
      packetsFwd: 3n,
      bytesFwd: 206n,
      packetsRev: 2n,
      bytesRev: 140n,
    });
    assert.equal(f.is_reply, true);
    assert.equal(f.traffic_direction, 'EGRESS');
    assert.equal(f.source.pod_name, 'server');
    assert.equal(f.destination.pod_name, 'client');
    assert.equal(f.Summary, 'TCP Flags: FIN, ACK');
    assert.deepEqual(f.weir, {
      type: 'trace',
      trace_subtype: 'close',
      packets_fwd: 3,
      bytes_fwd: 206,
      packets_rev: 2,
      bytes_rev: 140,
    });
    assert.match(
      compactLine(f),
      /app\/client:40000 \(ID:256\) <- app\/server:80 \(ID:257\) trace:close EGRESS/,
    );
  });

  it('parses UDP, ICMP and IPv6', () => {
    assert.deepEqual(parse({ nexthdr: 17 }).l4, { UDP: { source_port: 40000, destination_port: 80 } });
    assert.equal(parse({ nexthdr: 17 }).Summary, 'UDP');
    assert.deepEqual(parse({ nexthdr: 1, sport: 0, dport: 0 }).l4, { ICMPv4: { type: 0, code: 0 } });
    const v6 = parse({
      family: 6,
      src: [0xfd, 0, ...Array<number>(13).fill(0), 1],
      dst: [0xfd, 0, ...Array<number>(13).fill(0), 2],
    });
    assert.equal(v6.IP?.ipVersion, 'IPv6');
    assert.equal(v6.IP?.source, 'fd00::1');
  });
});

describe('ring', () => {
  it('keeps the newest `capacity` items and reads last N of the matches, oldest first', () => {
    const r = new Ring<number>(5);
    for (let i = 1; i <= 12; i++) r.push(i);
    assert.equal(r.size, 5);
    assert.deepEqual(r.read(), [8, 9, 10, 11, 12]);
    assert.deepEqual(r.read({ last: 2 }), [11, 12]);
    assert.deepEqual(r.read({ filter: (n) => n % 2 === 0, last: 2 }), [10, 12]);
    assert.throws(() => new Ring(0), RangeError);
  });
});

describe('observer', () => {
  const flow = parse({});
  it('never blocks on a slow follower: it sheds beyond its queue and reports the loss when it drains', () => {
    const obs = new FlowObserver({ capacity: 7, queueSize: 3 });
    const got: FlowsLine[] = [];
    let full = false;
    let drain = () => {};
    obs.follow(
      {
        write: (l) => (got.push(l), !full),
        onDrain: (cb) => (drain = cb),
        full: () => false,
      },
      () => true,
    );
    full = true;
    for (let i = 0; i < 10; i++) obs.ingest(flow);
    // 1 written (then full), 3 queued, 6 shed.
    assert.equal(got.length, 1);
    assert.equal(obs.lost.OBSERVER_EVENTS_QUEUE, 6);
    full = false;
    drain();
    assert.deepEqual(got[1], { lost_events: { source: 'OBSERVER_EVENTS_QUEUE', num_events_lost: 6 } });
    assert.equal(got.length, 5);
    assert.equal(obs.status().currentFlows, 7);
    assert.equal(obs.status().seenFlows, 10);
  });

  it('stores kernel losses in the ring, where --last shows them', () => {
    const obs = new FlowObserver({ capacity: 10 });
    obs.ingest(flow);
    obs.recordLost('PERF_EVENT_RING_BUFFER', 42);
    obs.ingest(flow);
    const lines = obs.read({ filter: () => true });
    assert.deepEqual(lines[1], { lost_events: { source: 'PERF_EVENT_RING_BUFFER', num_events_lost: 42 } });
    assert.equal(obs.read({ filter: (f: Flow) => f.verdict === 'DROPPED' }).length, 1);
  });
});
