// Micro-benchmark of the agent's flow pipeline on one core: ring-buffer records (the real
// struct flow_event layout) decoded, parsed into Hubble-shaped flows, enriched with endpoints,
// identities and rule names, and stored in the flow ring — what the agent does per event.
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
import { FlowParser } from '../../src/observe/parser.js';
import { FlowObserver } from '../../src/observe/stream.js';
import type { RuleRef } from '../../src/policy/api/types.js';

export interface ObserveFigures {
  events: number;
  endpoints: number;
  /** Decoded + parsed + enriched + stored, per second, on one core. */
  eventsPerSecond: number;
  /** Microseconds per event. */
  usPerEvent: number;
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

export function measureObserve(events = 200_000, endpoints = 1000): ObserveFigures {
  const recs = records(events, endpoints);
  const parser = new FlowParser({ nodeName: 'node1', enricher: new Enricher(source(endpoints)) });
  const observer = new FlowObserver({ capacity: 4095 });
  // Warm up the JIT on the same path, then time.
  for (let i = 0; i < Math.min(20_000, events); i++)
    observer.ingest(parser.parse(decodeFlowEvent(recs[i] as Buffer)));
  const t0 = process.hrtime.bigint();
  for (const r of recs) observer.ingest(parser.parse(decodeFlowEvent(r)));
  const ns = Number(process.hrtime.bigint() - t0);
  return {
    events,
    endpoints,
    eventsPerSecond: Math.round((events / ns) * 1e9),
    usPerEvent: ns / events / 1000,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--events');
  const f = measureObserve(i > 0 ? Number(process.argv[i + 1]) : 200_000);
  process.stdout.write(
    `| events | endpoints | events/s (1 core) | µs/event |\n| ---: | ---: | ---: | ---: |\n` +
      `| ${f.events} | ${f.endpoints} | ${f.eventsPerSecond} | ${f.usPerEvent.toFixed(2)} |\n`,
  );
}
