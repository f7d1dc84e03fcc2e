// The agent's flow pipeline: weir_events ring buffer (read by mmap, RingBufferConsumer) -> check ->
// count (RawFlowCounters) -> store the raw record (FlowObserver.ingestRaw); decoding and enrichment
// happen when flows are read or followed. The proxy's HTTP records, as compact lines -> counted
// (L7LineCounters) -> stored as the line (FlowObserver.ingestL7Line), made flows when read; its
// other L7 records (DNS, Gateway) and conntrack GC's close traces -> flows (objects, counted by
// countFlow). Every record is handled on the event loop as it
// arrives (the consumer never blocks); followers are fed through bounded queues (stream.ts).
import { verdictMatch } from '../observe/format.js';
import type { Logger as Pino } from 'pino';
import { RingBufferConsumer } from '../bpf/index.js';
import { monotonicNowNs } from '../datapath/clock.js';
import type { Datapath } from '../datapath/loader.js';
import type { CtConnection } from '../datapath/maps/ct/index.js';
import { DropReason } from '../datapath/drop-reasons.js';
import { decodeFlowEvent, type FlowEvent } from '../datapath/maps/events/index.js';
import { EventType, FlowEventLayout } from '../datapath/maps/events/layout.js';
import type { EndpointMeta, EnrichmentSource } from '../observe/enrich.js';
import { Enricher } from '../observe/enrich.js';
import { VERDICTS, type Flow } from '../observe/flow.js';
import { FlowParser } from '../observe/parser.js';
import { HUBBLE_TYPE, RAW, RAW_EVENT_SIZE, RawFlowCounters, isRawFlowEvent } from '../observe/raw.js';
import { l7Flow } from '../observe/l7.js';
import { parseCompactLine, parseRecordLine } from '../proxy/records.js';
import type { L7Record } from '../proxy/types.js';
import { L7LineCounters } from './l7-lines.js';
import type { FlowObserver } from '../observe/stream.js';
import type { RuleRef } from '../policy/api/types.js';
import { isCode } from '../shared/errors.js';
import type { Agent } from './agent.js';
import type { AgentMetrics } from './metrics.js';

/** How soon records the datapath submitted without waking the reader are drained (ms). */
export const EVENTS_FLUSH_MS = 10;

/** How many departed endpoints, identities and rules are still named (stored flows are read late). */
export const DEPARTED_KEPT = 4096;

/** Keeps what `prev` had and `next` lacks in `departed` (the newest DEPARTED_KEPT of them). */
function retire<K, V>(prev: Map<K, V>, next: Map<K, V>, departed: Map<K, V>): void {
  for (const [k, v] of prev)
    if (!next.has(k)) {
      departed.delete(k);
      departed.set(k, v);
    }
  for (const k of next.keys()) departed.delete(k);
  for (const k of departed.keys()) {
    if (departed.size <= DEPARTED_KEPT) break;
    departed.delete(k);
  }
}

/**
 * The agent's endpoints, identities and policy cookies, re-read when the agent regenerated. Flows
 * are stored raw and named when read, so what went away since (a deleted pod, a removed rule)
 * is still named from the departed tables; the present wins where both know a key.
 */
export function agentEnrichment(agent: Agent): EnrichmentSource {
  let seen = -1;
  let byIfindex = new Map<number, EndpointMeta>();
  let byIp = new Map<string, EndpointMeta>();
  let labels = new Map<number, string[]>();
  let cookies = new Map<number, RuleRef>();
  const gone = {
    byIfindex: new Map<number, EndpointMeta>(),
    byIp: new Map<string, EndpointMeta>(),
    labels: new Map<number, string[]>(),
    cookies: new Map<number, RuleRef>(),
  };
  const refresh = () => {
    if (agent.regen.count === seen) return;
    seen = agent.regen.count;
    const eps = agent.endpoints();
    const prev = { byIfindex, byIp, labels, cookies };
    byIfindex = new Map();
    byIp = new Map();
    for (const e of eps) {
      const meta = { id: e.id, namespace: e.namespace, pod: e.pod, identity: e.identity, labels: e.labels };
      byIfindex.set(e.ifindex, meta);
      for (const ip of e.ips) byIp.set(ip, meta);
    }
    // Pods of other nodes (a cluster): named, with endpoint id 0 as Hubble shows remote endpoints.
    for (const r of agent.remoteEndpoints()) {
      const meta = { id: 0, namespace: r.namespace, pod: r.pod, identity: r.identity, labels: r.labels };
      for (const ip of r.ips) if (!byIp.has(ip)) byIp.set(ip, meta);
    }
    labels = new Map(agent.identities().map((i) => [i.id, i.labels]));
    try {
      cookies = agent.engineView().output.cookies;
    } catch (err) {
      // Before the first regeneration no rule is known yet; anything else is a real failure.
      if (!isCode(err, 'ERR_AGENT_NOT_READY')) throw err;
      cookies = new Map();
    }
    retire(prev.byIfindex, byIfindex, gone.byIfindex);
    retire(prev.byIp, byIp, gone.byIp);
    retire(prev.labels, labels, gone.labels);
    retire(prev.cookies, cookies, gone.cookies);
  };
  return {
    endpointByIfindex: (i) => (refresh(), byIfindex.get(i) ?? gone.byIfindex.get(i)),
    endpointByIp: (ip) => (refresh(), byIp.get(ip) ?? gone.byIp.get(ip)),
    identityLabels: (id) => (refresh(), labels.get(id) ?? gone.labels.get(id)),
    rule: (c) => (refresh(), cookies.get(c) ?? gone.cookies.get(c)),
  };
}

/** A conntrack entry the GC removed, as the close trace the datapath never sent for it. */
export function closeEventOf(c: CtConnection, nowNs: bigint = monotonicNowNs()): FlowEvent {
  return {
    type: 'trace',
    trace: 'close',
    direction: c.direction,
    reason: 0,
    family: c.family,
    proto: c.proto,
    reply: false,
    related: false,
    flags: 0,
    tcpFlags: c.tcpFlagsFwd | c.tcpFlagsRev,
    ifindex: 0,
    endpointId: 0,
    srcIdentity: c.srcIdentity,
    dstIdentity: 0,
    cookie: c.cookie,
    len: 0,
    src: c.src,
    dst: c.dst,
    sport: c.sport,
    dport: c.dport,
    ktimeNs: nowNs,
    packetsFwd: c.packetsFwd,
    bytesFwd: c.bytesFwd,
    packetsRev: c.packetsRev,
    bytesRev: c.bytesRev,
  };
}

function protocolOf(f: Flow): string {
  const l4 = f.l4;
  return l4?.TCP
    ? 'TCP'
    : l4?.UDP
      ? 'UDP'
      : l4?.SCTP
        ? 'SCTP'
        : l4?.ICMPv4
          ? 'ICMPv4'
          : l4?.ICMPv6
            ? 'ICMPv6'
            : 'unknown';
}

/** Hubble's reporter of an L7 flow: the client's proxy (egress) or the server's (ingress). */
function reporterOf(f: Flow): 'client' | 'server' | 'unknown' {
  return f.traffic_direction === 'EGRESS'
    ? 'client'
    : f.traffic_direction === 'INGRESS'
      ? 'server'
      : 'unknown';
}

/** Counts a flow in the Hubble-style metrics (flows that are objects; raw records: RawFlowCounters). */
export function countFlow(m: AgentMetrics, f: Flow): void {
  m.flowsProcessed.inc({
    type: HUBBLE_TYPE[f.weir.type],
    subtype: f.weir.trace_subtype ?? '',
    verdict: f.verdict,
  });
  if (f.weir.type === 'drop')
    m.hubbleDrops.inc({ reason: f.drop_reason_desc ?? 'DROP_REASON_UNKNOWN', protocol: protocolOf(f) });
  if (f.weir.type === 'policy-verdict') {
    const match = verdictMatch(f);
    m.policyVerdicts.inc({
      direction: f.traffic_direction.toLowerCase(),
      action: VERDICTS[f.verdict].action,
      match: match === 'L3-L4' ? 'policy' : match,
    });
  }
  const dns = f.l7?.dns;
  if (f.weir.type === 'l7' && dns) {
    const qtypes = dns.qtypes.join(',');
    if (f.l7?.type === 'REQUEST') m.dnsQueries.inc({ rcode: '', qtypes, ips_returned: '' });
    else {
      const rcode =
        [
          'No Error',
          'Format Error',
          'Server Failure',
          'Non-Existent Domain',
          'Not Implemented',
          'Query Refused',
        ][dns.rcode] ?? String(dns.rcode);
      m.dnsResponses.inc({ rcode, qtypes, ips_returned: String(dns.ips.length) });
      for (const t of dns.rrtypes) m.dnsResponseTypes.inc({ type: t, qtypes });
    }
  }
  const http = f.l7?.http;
  if (f.weir.type === 'l7' && http) {
    const reporter = reporterOf(f);
    if (f.l7?.type === 'REQUEST')
      m.httpRequests.inc({ method: http.method, protocol: http.protocol, reporter });
    else {
      m.httpResponses.inc({
        method: http.method,
        protocol: http.protocol,
        status: String(http.code),
        reporter,
      });
      m.httpDuration.observe({ method: http.method, reporter }, (f.l7?.latency_ns ?? 0) / 1e9);
    }
  }
}

export interface L7IntakeOptions {
  observer: FlowObserver;
  nodeName: string;
  enricher: Enricher;
  /** Counted: every record (its flow counted at once, or its line folded in at scrape time). */
  metrics: AgentMetrics;
  /** A record that could not be read (counted as lost, OBSERVER_EVENTS_QUEUE). */
  onUnreadable?: (err: unknown) => void;
}

/**
 * The node proxy's L7 records into the observer. A compact HTTP line (src/proxy/records.ts) is
 * counted from its head (L7LineCounters) and stored as it came, made a flow (l7Flow) when read or
 * followed; a JSON line is a record made a flow at once (DNS, Gateway, odd text), or the proxy's
 * count of records it shed.
 */
export class L7Intake {
  readonly counters = new L7LineCounters();
  readonly #o: L7IntakeOptions;

  constructor(o: L7IntakeOptions) {
    this.#o = o;
    o.observer.setL7Decoder((line, uuid) =>
      l7Flow(parseCompactLine(line), { nodeName: o.nodeName, enricher: o.enricher, uuid: () => uuid }),
    );
    o.metrics.sources.l7Lines = () => this.counters.flushInto(o.metrics);
  }

  /** A line of the record stream (without its newline). */
  ingestRecordLine(line: string): void {
    if (this.counters.count(line)) {
      this.#o.observer.ingestL7Line(line);
      return;
    }
    let parsed;
    try {
      parsed = parseRecordLine(line);
    } catch (err) {
      this.#unreadable(err);
      return;
    }
    if ('record' in parsed) this.ingestL7(parsed.record);
    else if (parsed.lost > 0) this.#o.observer.recordLost('OBSERVER_EVENTS_QUEUE', parsed.lost);
  }

  /** An L7 record as a flow, stored and counted (onFlow listeners: countFlow) at once. */
  ingestL7(r: L7Record): void {
    let flow: Flow;
    try {
      flow = l7Flow(r, { nodeName: this.#o.nodeName, enricher: this.#o.enricher });
    } catch (err) {
      this.#unreadable(err);
      return;
    }
    this.#o.observer.ingest(flow);
  }

  #unreadable(err: unknown): void {
    this.#o.onUnreadable?.(err);
    this.#o.observer.recordLost('OBSERVER_EVENTS_QUEUE', 1);
  }
}

export interface FlowPipelineOptions {
  datapath: Datapath;
  agent: Agent;
  observer: FlowObserver;
  nodeName: string;
  log: Pino;
  /** How often weir_events_lost is read (ms). */
  lostPollMs?: number;
  /** A drop for want of authentication (189): the pair to authenticate (node 0: this node). */
  onAuthRequired?: (pair: { srcIdentity: number; dstIdentity: number; remoteNodeId: number }) => void;
}

export class FlowPipeline {
  readonly parser: FlowParser;
  readonly counters: RawFlowCounters;
  readonly l7: L7Intake;
  readonly #enricher: Enricher;
  readonly #reader: RingBufferConsumer;
  readonly #o: FlowPipelineOptions;
  #kernelLost = 0n;
  #timer: NodeJS.Timeout | undefined;
  decodeErrors = 0;

  constructor(o: FlowPipelineOptions) {
    this.#o = o;
    const source = agentEnrichment(o.agent);
    this.#enricher = new Enricher(source);
    this.parser = new FlowParser({ nodeName: o.nodeName, enricher: this.#enricher });
    this.counters = new RawFlowCounters((cookie) => source.rule(cookie) !== undefined);
    o.observer.setDecoder((rec, uuid) => this.parser.parse(decodeFlowEvent(rec), { uuid }));
    this.l7 = new L7Intake({
      observer: o.observer,
      nodeName: o.nodeName,
      enricher: this.#enricher,
      metrics: o.agent.metrics,
      onUnreadable: (err) => {
        this.decodeErrors++;
        if (this.decodeErrors <= 10) this.#o.log.warn({ err }, 'unreadable L7 record');
      },
    });
    // The datapath wakes the reader at most once per CPU and 10 ms (bpf/lib/events.h): what it
    // submitted without a wake-up is drained within EVENTS_FLUSH_MS while records keep coming.
    this.#reader = new RingBufferConsumer(
      o.datapath.events,
      (data, off, len) => this.#onRecord(data, off, len),
      { flushMs: EVENTS_FLUSH_MS },
    );
    o.observer.onFlow((f) => countFlow(o.agent.metrics, f));
    const m = o.agent.metrics;
    m.sources.rawFlows = () => this.counters.flushInto(m.flowsProcessed, m.hubbleDrops, m.policyVerdicts);
    // Losses before this agent started are not this agent's to report.
    this.#kernelLost = o.datapath.eventsLost();
  }

  start(): void {
    this.#reader.start();
    this.#timer = setInterval(() => {
      try {
        this.pollLost();
      } catch (err) {
        // A failed read of weir_events_lost is reported (and tried again next time), not fatal.
        this.#o.log.error({ err }, 'reading weir_events_lost failed');
      }
    }, this.#o.lostPollMs ?? 1000);
    this.#timer.unref();
  }

  /** Reads weir_events_lost; new losses become a lost_events line. */
  pollLost(): void {
    const now = this.#o.datapath.eventsLost();
    if (now > this.#kernelLost)
      this.#o.observer.recordLost('PERF_EVENT_RING_BUFFER', Number(now - this.#kernelLost));
    this.#kernelLost = now;
  }

  #onRecord(data: Uint8Array, off: number, len: number): void {
    if (!isRawFlowEvent(data, off, len)) {
      // A bad record must not stop the reader: count it as shed and go on.
      this.decodeErrors++;
      if (this.decodeErrors <= 10) {
        let err: unknown;
        try {
          decodeFlowEvent(Buffer.from(data.subarray(off, off + len)));
        } catch (e) {
          err = e;
        }
        this.#o.log.warn({ err }, 'undecodable flow event');
      }
      this.#o.observer.recordLost('OBSERVER_EVENTS_QUEUE', 1);
      return;
    }
    this.counters.count(data, off);
    this.#o.observer.ingestRaw(data, off);
    if (data[off + RAW.type] === EventType.DROP && data[off + RAW.reason] === DropReason.POLICY_AUTH_REQUIRED)
      this.#authRequired(data, off);
  }

  #authRequired(data: Uint8Array, off: number): void {
    const view = new DataView(data.buffer, data.byteOffset + off, RAW_EVENT_SIZE);
    this.#o.onAuthRequired?.({
      srcIdentity: view.getUint32(FlowEventLayout.offsets.srcIdentity, true),
      dstIdentity: view.getUint32(FlowEventLayout.offsets.dstIdentity, true),
      remoteNodeId: view.getUint16(FlowEventLayout.offsets.remoteNodeId, true),
    });
  }

  /** A line of the node proxy's record stream (L7Intake.ingestRecordLine). */
  ingestRecordLine(line: string): void {
    this.l7.ingestRecordLine(line);
  }

  /** An L7 record of the node proxy, as a flow. */
  ingestL7(r: L7Record): void {
    this.l7.ingestL7(r);
  }

  /**
   * Close traces for conntrack entries the GC removed. A TCP connection whose close the datapath
   * saw (state closing: FIN both ways or RST) already has its TRACE_CLOSE: it is not reported twice.
   */
  closeExpired(conns: CtConnection[]): void {
    const now = monotonicNowNs();
    for (const c of conns)
      if (c.state !== 'closing')
        this.#o.observer.ingest(this.parser.parse(closeEventOf(c, now), { expired: true }));
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#reader.close();
  }
}
