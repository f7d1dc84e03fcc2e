// Parser: one datapath event (struct flow_event, bpf/lib/common.h) -> one Flow (Hubble's flow.Flow
// shape). Dispatches on the event type like Hubble's parser; the numbers get their names from the
// Enricher.
import { randomUUID } from 'node:crypto';
import { DropReason, hubbleDropReason, reasonText } from '../datapath/drop-reasons.js';
import { EVENT_TYPE_CODE, TraceType, eventFlags, type FlowEvent } from '../datapath/maps/events/index.js';
import type { EndpointMeta, Enricher } from './enrich.js';
import { EVENT_TYPE, type Flow, type FlowL4, type TcpFlags } from './flow.js';
import { EVENT_VERDICTS, verdictIndex } from './verdicts.js';

export type { FlowEvent } from '../datapath/maps/events/index.js';

const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;

/** Hubble's DropReason enum name of a code (the datapath's table, bpf/lib/drop_reasons.h). */
export const dropReasonName = hubbleDropReason;

/** Text Hubble prints for a drop reason ("Policy denied"). */
export const dropReasonMessage = reasonText;

export function tcpFlagsOf(bits: number): TcpFlags | undefined {
  const f: TcpFlags = {};
  if (bits & 0x01) f.FIN = true;
  if (bits & 0x02) f.SYN = true;
  if (bits & 0x04) f.RST = true;
  if (bits & 0x08) f.PSH = true;
  if (bits & 0x10) f.ACK = true;
  return Object.keys(f).length > 0 ? f : undefined;
}

function l4Of(ev: FlowEvent): FlowL4 | undefined {
  const ports = { source_port: ev.sport, destination_port: ev.dport };
  switch (ev.proto) {
    case IPPROTO.TCP: {
      const flags = tcpFlagsOf(ev.tcpFlags);
      return { TCP: { ...ports, ...(flags ? { flags } : {}) } };
    }
    case IPPROTO.UDP:
      return { UDP: ports };
    case IPPROTO.SCTP:
      return { SCTP: ports };
    // The datapath does not split ICMP type/code out of the ports (see struct flow_event).
    case IPPROTO.ICMP:
      return { ICMPv4: { type: ev.sport >> 8, code: ev.sport & 0xff } };
    case IPPROTO.ICMPV6:
      return { ICMPv6: { type: ev.sport >> 8, code: ev.sport & 0xff } };
    default:
      return undefined;
  }
}

/** Hubble's Summary column: "TCP Flags: SYN, ACK", "UDP", "ICMPv4", ... */
export function summaryOf(l4: FlowL4 | undefined): string {
  if (!l4) return 'IP';
  if (l4.TCP) {
    const names = (['SYN', 'FIN', 'RST', 'PSH', 'ACK'] as const).filter((k) => l4.TCP?.flags?.[k]);
    return names.length > 0 ? `TCP Flags: ${names.join(', ')}` : 'TCP';
  }
  if (l4.UDP) return 'UDP';
  if (l4.SCTP) return 'SCTP';
  if (l4.ICMPv4) return 'ICMPv4';
  return 'ICMPv6';
}

/** Converts bpf_ktime_get_ns() (CLOCK_MONOTONIC) to RFC 3339 wall-clock time with nanoseconds. */
export class KtimeClock {
  /** Wall-clock ns minus monotonic ns, sampled once. */
  constructor(readonly offsetNs: bigint = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint()) {}

  rfc3339(ktimeNs: bigint): string {
    const wall = ktimeNs + this.offsetNs;
    const ms = wall / 1_000_000n;
    const nanos = (wall % 1_000_000_000n).toString().padStart(9, '0');
    return new Date(Number(ms)).toISOString().replace(/\.\d{3}Z$/, `.${nanos}Z`);
  }
}

export interface ParserOptions {
  nodeName: string;
  enricher: Enricher;
  clock?: KtimeClock;
  uuid?: () => string;
}

export class FlowParser {
  readonly #o: Required<ParserOptions>;

  constructor(o: ParserOptions) {
    this.#o = { clock: new KtimeClock(), uuid: randomUUID, ...o };
  }

  /**
   * `expired`: a close trace the agent made from a conntrack entry its GC removed; `uuid`: the
   * flow's id when it has one already (a stored raw record keeps its id across reads).
   */
  parse(ev: FlowEvent, o: { expired?: boolean; uuid?: string } = {}): Flow {
    const { enricher } = this.#o;
    // The packet leaves the pod on egress (the pod is its source) and enters it on ingress.
    const packetEgress = ev.direction === 'egress';
    const src = ev.src ?? '';
    const dst = ev.dst ?? '';
    const local: EndpointMeta | undefined = enricher.localEndpoint(ev.ifindex, packetEgress ? src : dst);
    const source = enricher.endpoint(src, ev.srcIdentity, packetEgress ? local : undefined);
    const destination = enricher.endpoint(dst, ev.dstIdentity, packetEgress ? undefined : local);
    if (ev.endpointId && local === undefined) (packetEgress ? source : destination).ID = ev.endpointId;
    // Hubble's traffic_direction is the connection's: a reply travels against it.
    const connEgress = packetEgress !== ev.reply;
    // The verdict from the catalogue (verdicts.ts): REDIRECTED for a connection handed to the proxy;
    // AUDIT for a policy verdict policy denies that passed (audit mode), which keeps its drop reason
    // (what would have dropped it) and the denying rule, if any.
    const v = EVENT_VERDICTS[verdictIndex(EVENT_TYPE_CODE[ev.type], ev.reason, eventFlags(ev))];
    const denied = v?.denied === true;
    const l4 = l4Of(ev);
    const flow: Flow = {
      time: this.#o.clock.rfc3339(ev.ktimeNs),
      uuid: o.uuid ?? this.#o.uuid(),
      verdict: v?.verdict ?? 'FORWARDED',
      ...(denied ? { drop_reason: ev.reason, drop_reason_desc: dropReasonName(ev.reason) } : {}),
      ...(ev.family
        ? {
            IP: {
              source: src,
              destination: dst,
              ipVersion: ev.family === 4 ? ('IPv4' as const) : ('IPv6' as const),
              ...(ev.encrypted ? { encrypted: true as const } : {}),
            },
          }
        : {}),
      ...(l4 ? { l4 } : {}),
      source,
      destination,
      Type: 'L3_L4',
      node_name: this.#o.nodeName,
      event_type: {
        type: EVENT_TYPE[ev.type],
        sub_type:
          ev.type === 'drop'
            ? ev.reason
            : ev.trace === 'close'
              ? TraceType.CLOSE
              : ev.trace
                ? TraceType.OPEN
                : 0,
      },
      traffic_direction: connEgress ? 'EGRESS' : 'INGRESS',
      trace_observation_point: packetEgress ? 'FROM_ENDPOINT' : 'TO_ENDPOINT',
      is_reply: ev.reply,
      Summary: summaryOf(l4),
      ...(ev.ifindex ? { interface: { index: ev.ifindex } } : {}),
      ...(ev.toProxy && ev.proxyPort ? { proxy_port: ev.proxyPort } : {}),
      weir: { type: ev.type, ...(ev.fromProxy ? { from_proxy: true } : {}) },
    };
    const decided = enricher.policy(ev.cookie);
    // 189: the allow rule whose `authentication: {mode: required}` the pair has not met denied it.
    const authRequired = ev.reason === DropReason.POLICY_AUTH_REQUIRED;
    if (decided) {
      const denied = decided.ref.deny || authRequired;
      const key = `${decided.ref.direction}_${denied ? 'denied' : 'allowed'}_by` as const;
      flow[key] = [decided.policy];
    }
    if (authRequired) flow.auth_type = 'SPIRE';
    if (ev.type === 'trace') {
      flow.weir.trace_subtype = ev.trace ?? 'open';
      flow.weir.packets_fwd = Number(ev.packetsFwd);
      flow.weir.bytes_fwd = Number(ev.bytesFwd);
      flow.weir.packets_rev = Number(ev.packetsRev);
      flow.weir.bytes_rev = Number(ev.bytesRev);
      if (o.expired) flow.weir.expired = true;
    } else flow.weir.len = ev.len;
    return flow;
  }
}
