// L7 records of the node proxy (src/proxy/types.ts L7Record) -> flows, the way Hubble turns
// Envoy's access log into flows: Type L7, event type 129, Flow.l7 with the HTTP fields; a request
// the proxy denied is DROPPED (Hubble's mapping of the access log's Denied), a failure ERROR. A
// response travels from the server to the client: its source is the server and is_reply is set
// (as Cilium's proxy logs it), so `hubble observe` prints it `client <- server`.
import { randomUUID } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type { L7Record } from '../proxy/types.js';
import type { Enricher } from './enrich.js';
import { EVENT_TYPE, type Flow, type Verdict } from './flow.js';

const VERDICT: Record<L7Record['verdict'], Verdict> = {
  FORWARDED: 'FORWARDED',
  DENIED: 'DROPPED',
  ERROR: 'ERROR',
};

/** ns since the epoch (a decimal string) -> RFC 3339 with nanoseconds; now for a bad value. */
function timeOf(ns: string): string {
  let wall: bigint;
  try {
    wall = BigInt(ns);
  } catch {
    wall = BigInt(Date.now()) * 1_000_000n;
  }
  const nanos = (wall % 1_000_000_000n).toString().padStart(9, '0');
  return new Date(Number(wall / 1_000_000n)).toISOString().replace(/\.\d{3}Z$/, `.${nanos}Z`);
}

const RCODES: Record<string, number> = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
};
const RCODE_NAMES = Object.fromEntries(Object.entries(RCODES).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

/** Hubble's summary of an L7 flow: "HTTP/1.1 GET http://x/y", "HTTP/1.1 200 3ms (GET http://x/y)". */
export function l7Summary(f: Pick<Flow, 'l7'>): string {
  const l7 = f.l7;
  const d = l7?.dns;
  // Hubble's: "DNS Query api.example.com. A", "DNS Answer "192.0.2.10" TTL: 30 (Proxy api.example.com. A)".
  if (l7 && d) {
    const q = `${d.query} ${d.qtypes.join(',')}`;
    if (l7.type === 'REQUEST') return `DNS Query ${q}`;
    if (d.rcode !== 0)
      return `DNS Answer RCode: ${RCODE_NAMES[d.rcode] ?? d.rcode} TTL: ${d.ttl} (Proxy ${q})`;
    return `DNS Answer "${d.ips.join(',')}" TTL: ${d.ttl} (Proxy ${q})`;
  }
  const h = l7?.http;
  if (!l7 || !h) return 'L7';
  if (l7.type === 'REQUEST') return `${h.protocol} ${h.method} ${h.url}`;
  // Whole milliseconds, truncated (Go's Duration.Milliseconds()).
  const ms = Math.floor(l7.latency_ns / 1e6);
  return `${h.protocol} ${h.code} ${ms}ms (${h.method} ${h.url})`;
}

export function l7Flow(r: L7Record, o: { nodeName: string; enricher: Enricher; uuid?: () => string }): Flow {
  const reply = r.type === 'RESPONSE';
  const src = reply ? r.destination : r.source;
  const dst = reply ? r.source : r.destination;
  const flow: Flow = {
    time: timeOf(r.timeNs),
    uuid: (o.uuid ?? randomUUID)(),
    verdict: VERDICT[r.verdict] ?? 'ERROR',
    IP: { source: src.ip, destination: dst.ip, ipVersion: isIPv6(src.ip) ? 'IPv6' : 'IPv4' },
    l4:
      r.transport === 'UDP'
        ? { UDP: { source_port: src.port, destination_port: dst.port } }
        : { TCP: { source_port: src.port, destination_port: dst.port } },
    source: o.enricher.endpoint(src.ip, src.identity),
    destination: o.enricher.endpoint(dst.ip, dst.identity),
    Type: 'L7',
    node_name: o.nodeName,
    event_type: { type: EVENT_TYPE.l7, sub_type: 0 },
    traffic_direction: r.direction === 'ingress' ? 'INGRESS' : 'EGRESS',
    trace_observation_point: 'UNKNOWN_POINT',
    is_reply: reply,
    Summary: '',
    l7: {
      type: r.type,
      latency_ns: r.latencyNs ?? 0,
      ...(r.http
        ? {
            http: {
              code: r.http.code ?? 0,
              method: r.http.method,
              url: r.http.url,
              protocol: r.http.protocol,
              headers: r.http.headers,
            },
          }
        : {}),
      ...(r.dns
        ? {
            dns: {
              query: r.dns.query,
              ips: r.dns.ips ?? [],
              ttl: r.dns.ttl ?? 0,
              cnames: r.dns.cnames ?? [],
              observation_source: 'proxy' as const,
              rcode: RCODES[r.dns.rcode ?? 'NOERROR'] ?? 0,
              qtypes: r.dns.qtypes,
              rrtypes: r.dns.rrtypes ?? [],
            },
          }
        : {}),
    },
    weir: {
      type: 'l7',
      ...(r.detail ? { detail: r.detail } : {}),
      ...(r.route ? { route: r.route } : {}),
      ...(r.backend ? { backend: r.backend } : {}),
    },
  };
  flow.Summary = l7Summary(flow);
  const decided = r.policy ? o.enricher.policy(r.policy.cookie) : undefined;
  if (decided) {
    const key = `${r.direction}_${r.verdict === 'DENIED' ? 'denied' : 'allowed'}_by` as const;
    flow[key] = [decided.policy];
  }
  return flow;
}
