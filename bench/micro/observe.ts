// Micro-benchmark of the agent's flow pipeline on one core, both ways, same run:
// - objects (the earlier path): each ring-buffer record (the real struct flow_event layout)
//   decoded, parsed into a Hubble-shaped flow, enriched with endpoints, identities and rule
//   names, stored in the flow ring and counted in the Prometheus counters;
// - raw (the agent's path): each record checked, counted (RawFlowCounters) and stored as bytes
//   (FlowObserver.ingestRaw), read from a buffer laid out as the kernel's ring (8-byte headers);
//   the flows are made when read: `read` times decoding + enriching a full ring of 4095.
// And the node proxy's L7 records (two per HTTP request), both ways, same run:
// - json (the earlier path): the proxy renders each record as a JSON line, the agent JSON.parses
//   it and makes the flow at once (l7Flow: enrichment, uuid, time), stores and counts it
//   (countFlow into prom-client);
// - lines (the agent's path): the proxy renders the compact line, the agent counts it from its
//   head (L7LineCounters) and stores the line (FlowObserver.ingestL7Line); flows made when read.
// Run: node dist/bench/micro/observe.js [--events 200000]
import { fileURLToPath } from 'node:url';
import {
  EventType,
  FlowEventLayout,
  TraceType,
  decodeFlowEvent,
} from '../../src/datapath/maps/events/index.js';
import { DropReason } from '../../src/datapath/drop-reasons.js';
import { Enricher, type EndpointMeta, type EnrichmentSource } from '../../src/observe/enrich.js';
import { FlowParser, KtimeClock } from '../../src/observe/parser.js';
import { FlowObserver } from '../../src/observe/stream.js';
import { RawFlowCounters, isRawFlowEvent } from '../../src/observe/raw.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { countFlow } from '../../src/agent/flows.js';
import { L7Intake } from '../../src/agent/flows.js';
import { jsonNumber, jsonString } from '../../src/proxy/json.js';
import { recordLine } from '../../src/proxy/records.js';
import type { L7Record } from '../../src/proxy/types.js';
import type { RuleRef } from '../../src/policy/api/types.js';

export interface ObserveFigures {
  events: number;
  endpoints: number;
  /** Objects: decoded + parsed + enriched + stored + counted, per second, on one core. */
  eventsPerSecond: number;
  /** Microseconds per event (objects). */
  usPerEvent: number;
  /** Raw: checked + counted + stored, per second, on one core. */
  rawEventsPerSecond: number;
  rawNsPerEvent: number;
  /** Raw: flows decoded + enriched per second when a full ring is read. */
  readFlowsPerSecond: number;
  /** Whether the raw path's stored flows equal the objects path's (uuid aside): checked each run. */
  sameFlows: boolean;
}

const ip4 = (n: number) => Buffer.from([10, 244, (n >> 8) & 255, n & 255, ...new Array<number>(12).fill(0)]);

/** A realistic mix: policy verdicts, opens, closes and drops between `endpoints` pods. */
function records(count: number, endpoints: number): Buffer[] {
  const kinds = [
    { type: EventType.POLICY_VERDICT, subtype: 0, reason: 0 },
    { type: EventType.TRACE, subtype: TraceType.OPEN, reason: 0 },
    { type: EventType.TRACE, subtype: TraceType.CLOSE, reason: 0 },
    { type: EventType.DROP, subtype: 0, reason: DropReason.POLICY },
  ];
  const distinct = Math.min(count, 4096);
  const out: Buffer[] = [];
  for (let i = 0; i < distinct; i++) {
    const k = kinds[i % kinds.length] as (typeof kinds)[number];
    const a = (i % endpoints) + 2;
    const b = ((i * 7) % endpoints) + 2;
    const buf = Buffer.alloc(FlowEventLayout.size);
    FlowEventLayout.encode(
      {
        ...k,
        direction: 1 + (i & 1),
        family: 4,
        nexthdr: 6,
        flags: 0,
        tcpFlags: 0x02,
        ifindex: 1000 + a,
        endpointId: a,
        srcIdentity: 256 + (a % 50),
        dstIdentity: 256 + (b % 50),
        cookie: i % 3 === 0 ? 0 : 7 + (i % 5),
        len: 74,
        saddr: ip4(a),
        daddr: ip4(b),
        sport: 30000 + (i % 30000),
        dport: 80,
        proxyPort: 0,

        ktimeNs: BigInt(i) * 1000n,
        packetsFwd: 3n,
        bytesFwd: 200n,
        packetsRev: 2n,
        bytesRev: 140n,
      },
      buf,
      0,
    );
    out.push(buf);
  }
  return Array.from({ length: count }, (_, i) => out[i % distinct] as Buffer);
}

function source(endpoints: number): EnrichmentSource {
  const eps = new Map<number, EndpointMeta>();
  const byIp = new Map<string, EndpointMeta>();
  for (let n = 2; n < endpoints + 2; n++) {
    const meta: EndpointMeta = {
      id: n,
      namespace: `ns-${n % 10}`,
      pod: `pod-${n}`,
      identity: 256 + (n % 50),
      labels: [`k8s:app=app-${n % 50}`, `k8s:io.kubernetes.pod.namespace=ns-${n % 10}`],
    };
    eps.set(1000 + n, meta);
    byIp.set(`10.244.${(n >> 8) & 255}.${n & 255}`, meta);
  }
  const rules = new Map<number, RuleRef>();
  for (let c = 7; c < 12; c++)
    rules.set(c, {
      kind: 'CiliumNetworkPolicy',
      namespace: 'ns-1',
      name: `p-${c}`,
      direction: 'ingress',
      ruleIndex: 0,
      deny: false,
    });
  return {
    endpointByIfindex: (i) => eps.get(i),
    endpointByIp: (ip) => byIp.get(ip),
    identityLabels: (id) => [`k8s:app=app-${id - 256}`],
    rule: (c) => rules.get(c),
  };
}

/** The records as the kernel's ring holds them: [u32 len][u32 pg_off][112 bytes], 8-aligned. */
function ringImage(recs: Buffer[], count: number): { data: Uint8Array; offsets: Int32Array } {
  const stride = 8 + FlowEventLayout.size;
  const n = Math.min(count, 8192);
  const data = new Uint8Array(n * stride);
  const offsets = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const r = recs[i % recs.length] as Buffer;
    new DataView(data.buffer).setUint32(i * stride, r.length, true);
    data.set(r, i * stride + 8);
    offsets[i] = i * stride + 8;
  }
  return { data, offsets };
}

// One clock for both paths: a flow's time is the same whichever way it was made.
const clock = new KtimeClock();

function objectsPath(recs: Buffer[], src: EnrichmentSource) {
  const parser = new FlowParser({ nodeName: 'node1', enricher: new Enricher(src), clock });
  const observer = new FlowObserver({ capacity: 4095 });
  const metrics = new AgentMetrics();
  observer.onFlow((f) => countFlow(metrics, f));
  return { parser, observer, run: (r: Buffer) => observer.ingest(parser.parse(decodeFlowEvent(r))) };
}

function rawPath(src: EnrichmentSource) {
  const parser = new FlowParser({ nodeName: 'node1', enricher: new Enricher(src), clock });
  const observer = new FlowObserver({ capacity: 4095 });
  observer.setDecoder((rec, uuid) => parser.parse(decodeFlowEvent(rec), { uuid }));
  const counters = new RawFlowCounters((c) => src.rule(c) !== undefined);
  let lost = 0;
  return {
    observer,
    counters,
    lost: () => lost,
    run(data: Uint8Array, off: number, len: number): void {
      if (!isRawFlowEvent(data, off, len)) {
        lost++;
        return;
      }
      counters.count(data, off);
      observer.ingestRaw(data, off);
    },
  };
}

const strip = (l: object) => JSON.stringify(l, (k, v: unknown) => (k === 'uuid' ? undefined : v));

export function measureObserve(events = 200_000, endpoints = 1000): ObserveFigures {
  const recs = records(events, endpoints);
  const src = source(endpoints);

  const obj = objectsPath(recs, src);
  // Warm up the JIT on the same path, then time.
  for (let i = 0; i < Math.min(20_000, events); i++) obj.run(recs[i] as Buffer);
  const t0 = process.hrtime.bigint();
  for (const r of recs) obj.run(r);
  const ns = Number(process.hrtime.bigint() - t0);

  const raw = rawPath(src);
  const { data, offsets } = ringImage(recs, events);
  const size = FlowEventLayout.size;
  for (let i = 0; i < Math.min(200_000, events); i++)
    raw.run(data, offsets[i % offsets.length] as number, size);
  const t1 = process.hrtime.bigint();
  for (let i = 0, n = offsets.length; i < events; i++) raw.run(data, offsets[i % n] as number, size);
  const rawNs = Number(process.hrtime.bigint() - t1);

  const t2 = process.hrtime.bigint();
  const read = raw.observer.read({ filter: () => true });
  const readNs = Number(process.hrtime.bigint() - t2);

  // Same input, both ways: the stored flows must be the same (the raw ring's last 4095 records
  // are the records at the same positions of the object run, when both saw `events` records).
  const check = rawPath(src);
  const ref = objectsPath(recs, src);
  for (let i = 0; i < 5000; i++) {
    check.run(data, offsets[i % offsets.length] as number, size);
    ref.run(recs[i % offsets.length] as Buffer);
  }
  const a = check.observer.read({ filter: () => true }).map(strip);
  const b = ref.observer.read({ filter: () => true }).map(strip);
  const sameFlows = a.length === b.length && a.every((x, i) => x === b[i]) && raw.lost() === 0;

  return {
    events,
    endpoints,
    eventsPerSecond: Math.round((events / ns) * 1e9),
    usPerEvent: ns / events / 1000,
    rawEventsPerSecond: Math.round((events / rawNs) * 1e9),
    rawNsPerEvent: rawNs / events,
    readFlowsPerSecond: Math.round((read.length / readNs) * 1e9),
    sameFlows,
  };
}

export interface L7Figures {
  records: number;
  /** Agent, json path: JSON.parse + flow made + stored + counted, per record (µs). */
  jsonUsPerRecord: number;
  /** Agent, lines path: counted + stored, per record (ns). */
  linesNsPerRecord: number;
  /** Proxy: rendering one record, the former JSON line and the compact line (ns). */
  renderJsonNs: number;
  renderLineNs: number;
  /** Bytes per record on the stream, both ways. */
  jsonBytes: number;
  lineBytes: number;
  /** Lines path: stored records decoded + enriched per second when a full ring is read. */
  readFlowsPerSecond: number;
  /** Whether both paths store the same flows (uuid aside) and count the same metric lines. */
  sameFlows: boolean;
}

const addressJson = (a: L7Record['source']): string =>
  `{"ip":${jsonString(a.ip)},"port":${jsonNumber(a.port)},"identity":${jsonNumber(a.identity)}}`;

/** The proxy's former record line (the JSON of {record}, rendered field by field), for comparison. */
function jsonRecordLine(r: L7Record): string {
  const h = r.http as NonNullable<L7Record['http']>;
  let s =
    `{"record":{"timeNs":${jsonString(r.timeNs)},"type":${jsonString(r.type)},` +
    `"direction":${jsonString(r.direction)},"endpointId":${jsonNumber(r.endpointId)},` +
    `"verdict":${jsonString(r.verdict)},"source":${addressJson(r.source)},` +
    `"destination":${addressJson(r.destination)},"http":{"method":${jsonString(h.method)},` +
    `"url":${jsonString(h.url)},"protocol":${jsonString(h.protocol)}`;
  if (h.code !== undefined) s += `,"code":${jsonNumber(h.code)}`;
  s += ',"headers":[';
  for (let i = 0; i < h.headers.length; i++) {
    const f = h.headers[i] as { key: string; value: string };
    s += `${i === 0 ? '' : ','}{"key":${jsonString(f.key)},"value":${jsonString(f.value)}}`;
  }
  s += ']}';
  if (r.latencyNs !== undefined) s += `,"latencyNs":${jsonNumber(r.latencyNs)}`;
  const p = r.policy;
  if (p !== undefined) {
    s += `,"policy":{"kind":${jsonString(p.kind)},`;
    if (p.namespace !== undefined) s += `"namespace":${jsonString(p.namespace)},`;
    s += `"name":${jsonString(p.name)},"cookie":${jsonNumber(p.cookie)}}`;
  }
  if (r.detail !== undefined) s += `,"detail":${jsonString(r.detail)}`;
  return s + '}}';
}

/** Request + response pairs as the HTTP engine makes them, between `endpoints` pods. */
function l7Records(count: number, endpoints: number): L7Record[] {
  const out: L7Record[] = [];
  const distinct = Math.min(count, 4096);
  for (let i = 0; out.length < distinct; i++) {
    const a = (i % endpoints) + 2;
    const b = ((i * 7) % endpoints) + 2;
    const base = {
      timeNs: String(1_700_000_000_000_000_000n + BigInt(i) * 1000n),
      direction: i % 2 ? ('egress' as const) : ('ingress' as const),
      endpointId: a,
      verdict: 'FORWARDED' as const,
      source: {
        ip: `10.244.${(a >> 8) & 255}.${a & 255}`,
        port: 30000 + (i % 30000),
        identity: 256 + (a % 50),
      },
      destination: { ip: `10.244.${(b >> 8) & 255}.${b & 255}`, port: 80, identity: 256 + (b % 50) },
      policy: {
        kind: 'CiliumNetworkPolicy' as const,
        namespace: 'ns-1',
        name: `p-${7 + (i % 5)}`,
        cookie: 7 + (i % 5),
      },
    };
    const http = {
      method: i % 4 ? 'GET' : 'POST',
      url: `http://svc-${b % 50}.ns-1/api/items/${i % 100}`,
      protocol: 'HTTP/1.1',
      headers: [{ key: 'user-agent', value: 'wrk' }],
    };
    out.push({ ...base, type: 'REQUEST', http });
    out.push({
      ...base,
      type: 'RESPONSE',
      http: { ...http, code: i % 10 ? 200 : 404 },
      latencyNs: 300_000 + (i % 7) * 1_000_000,
    });
  }
  return Array.from({ length: count }, (_, i) => out[i % distinct] as L7Record);
}

function l7Paths(src: EnrichmentSource) {
  const make = () => {
    const observer = new FlowObserver({ capacity: 4095 });
    const metrics = new AgentMetrics();
    observer.onFlow((f) => countFlow(metrics, f));
    const intake = new L7Intake({ observer, nodeName: 'node1', enricher: new Enricher(src), metrics });
    return { observer, metrics, intake };
  };
  return { json: make(), lines: make() };
}

export async function measureL7Records(records = 200_000, endpoints = 1000): Promise<L7Figures> {
  const recs = l7Records(records, endpoints);
  const src = source(endpoints);
  const distinct = Math.min(records, 4096);
  const jsonLines = recs.slice(0, distinct).map(jsonRecordLine);
  const lines = recs.slice(0, distinct).map(recordLine);
  const time = (n: number, fn: (i: number) => void): number => {
    for (let i = 0; i < Math.min(n, 50_000); i++) fn(i);
    // CPU time (user + system) of this process: a loaded machine stretches wall time, not this.
    const t = process.cpuUsage();
    for (let i = 0; i < n; i++) fn(i);
    const d = process.cpuUsage(t);
    return ((d.user + d.system) * 1000) / n;
  };
  const { json, lines: lazy } = l7Paths(src);
  // Each line as the agent gets it: a fresh string (sliced from the socket's chunk).
  const jsonNs = time(records, (i) => {
    const line = (jsonLines[i % distinct] as string).slice(0);
    json.intake.ingestL7((JSON.parse(line) as { record: L7Record }).record);
  });
  const linesNs = time(records, (i) =>
    lazy.intake.ingestRecordLine((lines[i % distinct] as string).slice(0)),
  );
  let sink = 0;
  const renderJsonNs = time(records, (i) => (sink += jsonRecordLine(recs[i % distinct] as L7Record).length));
  const renderLineNs = time(records, (i) => (sink += recordLine(recs[i % distinct] as L7Record).length));
  const t = process.cpuUsage();
  const read = lazy.observer.read({ filter: () => true });
  const used = process.cpuUsage(t);
  const readNs = (used.user + used.system) * 1000;

  // Same input both ways: the same stored flows and metric lines.
  const check = l7Paths(src);
  for (let i = 0; i < 5000; i++) {
    check.json.intake.ingestL7(
      (JSON.parse(jsonLines[i % distinct] as string) as { record: L7Record }).record,
    );
    check.lines.intake.ingestRecordLine(lines[i % distinct] as string);
  }
  const a = check.json.observer.read({ filter: () => true }).map(strip);
  const b = check.lines.observer.read({ filter: () => true }).map(strip);
  const metricText = async (m: AgentMetrics) =>
    (await m.registry.metrics())
      .split('\n')
      .filter((l) => /^hubble_(http_|flows_processed)/.test(l) && !/_sum\{/.test(l))
      .sort()
      .join('\n');
  const sameFlows =
    a.length === b.length &&
    a.every((x, i) => x === b[i]) &&
    (await metricText(check.json.metrics)) === (await metricText(check.lines.metrics)) &&
    check.lines.observer.lost.OBSERVER_EVENTS_QUEUE === 0 &&
    sink > 0;
  const avg = (xs: string[]) => xs.reduce((n, x) => n + Buffer.byteLength(x) + 1, 0) / xs.length;
  return {
    records,
    jsonUsPerRecord: jsonNs / 1000,
    linesNsPerRecord: linesNs,
    renderJsonNs,
    renderLineNs,
    jsonBytes: avg(jsonLines),
    lineBytes: avg(lines),
    readFlowsPerSecond: Math.round((read.length / readNs) * 1e9),
    sameFlows,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--events');
  const f = measureObserve(i > 0 ? Number(process.argv[i + 1]) : 2_000_000);
  process.stdout.write(
    `| path | events | endpoints | events/s (1 core) | per event |\n| --- | ---: | ---: | ---: | ---: |\n` +
      `| objects (decode + enrich + store + count) | ${f.events} | ${f.endpoints} | ${f.eventsPerSecond} | ${f.usPerEvent.toFixed(2)} µs |\n` +
      `| raw (check + count + store) | ${f.events} | ${f.endpoints} | ${f.rawEventsPerSecond} | ${f.rawNsPerEvent.toFixed(0)} ns |\n` +
      `| raw, read (decode + enrich a full ring) | 4095 | ${f.endpoints} | ${f.readFlowsPerSecond} flows/s | — |\n` +
      `\nsame flows both ways: ${f.sameFlows}\n`,
  );
  const l = await measureL7Records(i > 0 ? Number(process.argv[i + 1]) : 1_000_000);
  process.stdout.write(
    `\n| L7 records (2 per HTTP request) | records | CPU per record | records/s (1 core, CPU time) |\n| --- | ---: | ---: | ---: |\n` +
      `| agent, json (JSON.parse + flow + store + count), before | ${l.records} | ${l.jsonUsPerRecord.toFixed(2)} µs | ${Math.round(1e6 / l.jsonUsPerRecord)} |\n` +
      `| agent, lines (count + store the line) | ${l.records} | ${l.linesNsPerRecord.toFixed(0)} ns | ${Math.round(1e9 / l.linesNsPerRecord)} |\n` +
      `| agent, lines read (decode + enrich a full ring) | 4095 | — | ${l.readFlowsPerSecond} flows/s |\n` +
      `| proxy, render the JSON line, before | ${l.records} | ${l.renderJsonNs.toFixed(0)} ns (${l.jsonBytes.toFixed(0)} B) | — |\n` +
      `| proxy, render the compact line | ${l.records} | ${l.renderLineNs.toFixed(0)} ns (${l.lineBytes.toFixed(0)} B) | — |\n` +
      `\nsame flows and metrics both ways: ${l.sameFlows}\n`,
  );
}
