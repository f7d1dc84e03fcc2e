// The raw flow pipeline against the object one: the same records, checked, counted and stored as
// bytes (RawFlowCounters, FlowObserver.ingestRaw), must give what users see from the object path —
// the same flows when read or followed, the same Prometheus lines — and bad records are counted as
// lost, not stored.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DropReason } from '../datapath/drop-reasons.js';
import {
  EventFlag,
  EventType,
  FlowEventLayout,
  TraceType,
  decodeFlowEvent,
} from '../datapath/maps/events/index.js';
import { Enricher, type EnrichmentSource } from '../observe/enrich.js';
import type { FlowsLine } from '../observe/flow.js';
import { FlowParser, KtimeClock } from '../observe/parser.js';
import { RawFlowCounters, isRawFlowEvent } from '../observe/raw.js';
import { FlowObserver } from '../observe/stream.js';
import { countFlow } from './flows.js';
import { AgentMetrics } from './metrics.js';

const pod = (id: number) => ({
  id,
  namespace: 'app',
  pod: `p${id}`,
  identity: 256 + id,
  labels: [`k8s:app=p${id}`],
});
const source: EnrichmentSource = {
  endpointByIfindex: (i) => (i >= 10 && i < 14 ? pod(i - 10) : undefined),
  endpointByIp: (ip) => (ip.startsWith('10.0.0.') ? pod(Number(ip.slice(7)) % 4) : undefined),
  identityLabels: (id) => (id === 16777217 ? ['cidr:192.0.2.10/32'] : undefined),
  rule: (c) =>
    c === 5
      ? {
          kind: 'NetworkPolicy',
          namespace: 'app',
          name: 'web',
          direction: 'ingress',
          ruleIndex: 0,
          deny: false,
        }
      : undefined,
};

const ip = (n: number) => Buffer.from([10, 0, 0, n, ...new Array<number>(12).fill(0)]);

/** Every kind of record the datapath sends, with both directions, replies, cookies known or not. */
function records(): Buffer[] {
  const out: Buffer[] = [];
  const kinds = [
    { type: EventType.POLICY_VERDICT, subtype: 0, reason: 0, flags: 0 },
    { type: EventType.POLICY_VERDICT, subtype: 0, reason: DropReason.POLICY, flags: 0 },
    { type: EventType.POLICY_VERDICT, subtype: 0, reason: 0, flags: EventFlag.TO_PROXY },
    { type: EventType.POLICY_VERDICT, subtype: 0, reason: 0, flags: EventFlag.REPLY },
    { type: EventType.POLICY_VERDICT, subtype: 0, reason: DropReason.POLICY, flags: EventFlag.AUDIT },
    { type: EventType.TRACE, subtype: TraceType.OPEN, reason: 0, flags: 0 },
    { type: EventType.TRACE, subtype: TraceType.CLOSE, reason: 0, flags: EventFlag.FROM_PROXY },
    { type: EventType.DROP, subtype: 0, reason: DropReason.POLICY, flags: 0 },
    { type: EventType.DROP, subtype: 0, reason: 203, flags: EventFlag.RELATED },
  ];
  const protos = [6, 17, 1, 58, 132, 0];
  for (let i = 0; i < 99; i++) {
    const k = kinds[i % kinds.length] as (typeof kinds)[number];
    const buf = Buffer.alloc(FlowEventLayout.size);
    FlowEventLayout.encode(
      {
        ...k,
        direction: 1 + ((i >> 3) & 1),
        family: i % 11 === 0 ? 0 : 4,
        nexthdr: protos[i % protos.length] as number,
        tcpFlags: i & 0x1f,
        ifindex: 10 + (i % 5),
        endpointId: i % 5,
        srcIdentity: 256 + (i % 4),
        dstIdentity: i % 7 === 0 ? 16777217 : 257,
        cookie: i % 3 === 0 ? 5 : i % 3 === 1 ? 9 : 0,
        len: 60 + i,
        saddr: ip(i % 6),
        daddr: ip((i * 5) % 7),
        sport: 1000 + i,
        dport: 80,
        proxyPort: k.flags & EventFlag.TO_PROXY ? 10001 : 0,
        ktimeNs: 1_000_000n * BigInt(i),
        packetsFwd: BigInt(i),
        bytesFwd: 100n * BigInt(i),
        packetsRev: 2n,
        bytesRev: 3n,
      },
      buf,
      0,
    );
    out.push(buf);
  }
  return out;
}

const clock = new KtimeClock(0n);
const noUuid = (l: FlowsLine) => JSON.stringify(l, (k, v: unknown) => (k === 'uuid' ? undefined : v));

/** Records as the kernel's ring lays them out: one buffer, 8-byte headers. */
function ringImage(recs: Buffer[]): { data: Uint8Array; offsets: number[] } {
  const data = new Uint8Array(recs.length * (8 + FlowEventLayout.size));
  const offsets = recs.map((r, i) => {
    const off = i * (8 + FlowEventLayout.size) + 8;
    data.set(r, off);
    return off;
  });
  return { data, offsets };
}

function objectPipeline(capacity: number) {
  const parser = new FlowParser({ nodeName: 'n1', enricher: new Enricher(source), clock });
  const observer = new FlowObserver({ capacity });
  const metrics = new AgentMetrics();
  observer.onFlow((f) => countFlow(metrics, f));
  return { observer, metrics, put: (r: Buffer) => observer.ingest(parser.parse(decodeFlowEvent(r))) };
}

function rawPipeline(capacity: number) {
  const parser = new FlowParser({ nodeName: 'n1', enricher: new Enricher(source), clock });
  const observer = new FlowObserver({ capacity });
  observer.setDecoder((rec, uuid) => parser.parse(decodeFlowEvent(rec), { uuid }));
  const metrics = new AgentMetrics();
  const counters = new RawFlowCounters((c) => source.rule(c) !== undefined);
  metrics.sources.rawFlows = () =>
    counters.flushInto(metrics.flowsProcessed, metrics.hubbleDrops, metrics.policyVerdicts);
  const put = (data: Uint8Array, off: number, len: number) => {
    if (!isRawFlowEvent(data, off, len)) return observer.recordLost('OBSERVER_EVENTS_QUEUE', 1);
    counters.count(data, off);
    observer.ingestRaw(data, off);
  };
  return { observer, metrics, put };
}

const flowMetrics = async (m: AgentMetrics) =>
  (await m.registry.metrics())
    .split('\n')
    .filter((l) => /^(hubble_flows_processed_total|hubble_drop_total|weir_policy_verdict_total)\{/.test(l))
    .sort();

describe('raw flow pipeline', () => {
  it('stores what the object path stores: the same flows, newest kept, stable ids', () => {
    const recs = records();
    const { data, offsets } = ringImage(recs);
    const obj = objectPipeline(64);
    const raw = rawPipeline(64);
    recs.forEach((r, i) => {
      obj.put(r);
      raw.put(data, offsets[i] as number, r.length);
    });
    const all = { filter: () => true };
    const a = raw.observer.read(all);
    const b = obj.observer.read(all);
    assert.equal(a.length, 64, 'the newest 64 of 99');
    assert.deepEqual(a.map(noUuid), b.map(noUuid));
    const ids = a.map((l) => ('flow' in l ? l.flow.uuid : ''));
    assert.equal(new Set(ids).size, 64, 'one uuid per flow');
    assert.deepEqual(
      raw.observer.read(all).map((l) => ('flow' in l ? l.flow.uuid : '')),
      ids,
      'a stored flow keeps its uuid across reads',
    );
    const dropsOnly = { filter: (f: { verdict: string }) => f.verdict === 'DROPPED', last: 5 };
    assert.deepEqual(raw.observer.read(dropsOnly).map(noUuid), obj.observer.read(dropsOnly).map(noUuid));
    assert.equal(raw.observer.status().seenFlows, 99);
    assert.ok(
      a.some((l) => 'flow' in l && l.flow.verdict === 'AUDIT'),
      'audited verdicts among them',
    );
  });

  it('counts the same Prometheus lines as the object path', async () => {
    const recs = records();
    const { data, offsets } = ringImage(recs);
    const obj = objectPipeline(16);
    const raw = rawPipeline(16);
    recs.forEach((r, i) => {
      obj.put(r);
      raw.put(data, offsets[i] as number, r.length);
    });
    const want = await flowMetrics(obj.metrics);
    assert.ok(want.length >= 10, `${want.length} label sets`);
    assert.deepEqual(await flowMetrics(raw.metrics), want);
    // A second scrape adds only what came since.
    recs.slice(0, 8).forEach((r, i) => {
      obj.put(r);
      raw.put(data, offsets[i] as number, r.length);
    });
    assert.deepEqual(await flowMetrics(raw.metrics), await flowMetrics(obj.metrics));
  });

  it('gives followers the flows as they come, and counts bad records as lost', () => {
    const recs = records();
    const { data, offsets } = ringImage(recs);
    const raw = rawPipeline(8);
    const got: FlowsLine[] = [];
    raw.observer.follow(
      { write: (l) => (got.push(l), true), onDrain: () => {}, full: () => false },
      (f) => f.verdict === 'DROPPED',
    );
    recs.slice(0, 16).forEach((r, i) => raw.put(data, offsets[i] as number, r.length));
    const obj = objectPipeline(64);
    recs.slice(0, 16).forEach((r) => obj.put(r));
    const dropped = obj.observer.read({ filter: (f) => f.verdict === 'DROPPED' });
    assert.deepEqual(got.map(noUuid), dropped.map(noUuid));

    const bad = Buffer.from(recs[0] as Buffer);
    bad[FlowEventLayout.offsets.type] = 9;
    raw.put(bad, 0, bad.length);
    raw.put(recs[1] as Buffer, 0, 64); // short
    assert.equal(raw.observer.status().lost.OBSERVER_EVENTS_QUEUE, 2);
    const last = raw.observer.read({ filter: () => true, last: 2 });
    assert.deepEqual(
      last.filter((l) => 'lost_events' in l),
      [
        { lost_events: { source: 'OBSERVER_EVENTS_QUEUE', num_events_lost: 1 } },
        { lost_events: { source: 'OBSERVER_EVENTS_QUEUE', num_events_lost: 1 } },
      ],
    );
  });
});
