// weir_events: the datapath's flow events (bpf/lib/events.h), decoded for the flow pipeline.
// Records are read with RingBufferReader (src/bpf/ringbuf.ts) on Datapath.events; failed
// reservations (ring full) are counted by the datapath, see Datapath.eventsLost().
import { WeirError } from '../../../shared/errors.js';
import { addrText } from '../../addr.js';
import { directionOf, type Direction } from '../../direction.js';
import { EventFlag, EventType, FlowEventLayout, TraceType } from './layout.js';

export { EventFlag, EventType, FlowEventLayout, TraceType } from './layout.js';

export type FlowEventType = 'drop' | 'policy-verdict' | 'trace';
export type TraceKind = 'open' | 'close';

/**
 * One decoded struct flow_event. Addresses and ports are as the packet carries them: `src` is the
 * packet's sender (for a reply, `reply` is true and the tuple is the connection's reversed).
 * Counters are bigint (u64 in C); everything else fits a number.
 */
export interface FlowEvent {
  type: FlowEventType;
  /** EVENT_TRACE only: connection opened (conntrack entry created) or TCP closed. */
  trace?: TraceKind;
  /** The endpoint's point of view. */
  direction: Direction;
  /** Drop code (drop-reasons.ts); 0: forwarded / allowed. */
  reason: number;
  /** 0: the packet was dropped before its IP header was parsed (no addresses, ports, proto). */
  family: 0 | 4 | 6;
  /** IPPROTO_* (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...). */
  proto: number;
  /** The packet travels responder -> initiator (EVENT_F_REPLY). */
  reply: boolean;
  /** An ICMP error (EVENT_F_RELATED). */
  related: boolean;
  /** The record's EVENT_F_* bits as sent (the booleans here are read from them); absent: from the booleans. */
  flags?: number;
  /** Redirected to the node proxy (EVENT_F_TO_PROXY), on its listener `proxyPort`. */
  toProxy?: true;
  proxyPort?: number;
  /** Sent by the node proxy, its upstream connection (EVENT_F_FROM_PROXY). */
  fromProxy?: true;
  /** The connection travels in the node proxies' mTLS tunnel (EVENT_F_ENCRYPTED). */
  encrypted?: true;
  /** A policy verdict the policy denied (`reason`) that passed: the endpoint audits (EVENT_F_AUDIT). */
  audit?: true;
  /** TCP flags of the packet (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10). */
  tcpFlags: number;
  ifindex: number;
  /** 0 when the endpoint is unknown (DROP_EP_NOT_READY). */
  endpointId: number;
  /** Security identities of the packet's sender and receiver; 0 = not known at that point. */
  srcIdentity: number;
  dstIdentity: number;
  /** Policy rule: the allowing entry of a verdict/trace, the deny entry of a DROP_POLICY_DENY. */
  cookie: number;
  /** Bytes of the packet, L2 header included. */
  len: number;
  /** Text addresses; undefined when family is 0. */
  src?: string;
  dst?: string;
  /** Host order. ICMP echo: the identifier on the request's sport / reply's dport; else 0. */
  sport: number;
  dport: number;
  /** bpf_ktime_get_ns(): CLOCK_MONOTONIC (see clock.ts). */
  ktimeNs: bigint;
  /** EVENT_TRACE: the connection's counters (initiator->responder = fwd); 0 for other types. */
  packetsFwd: bigint;
  bytesFwd: bigint;
  packetsRev: bigint;
  bytesRev: bigint;
}

const TYPE_NAMES: Record<number, FlowEventType> = {
  [EventType.DROP]: 'drop',
  [EventType.POLICY_VERDICT]: 'policy-verdict',
  [EventType.TRACE]: 'trace',
};
const TRACE_NAMES: Record<number, TraceKind> = { [TraceType.OPEN]: 'open', [TraceType.CLOSE]: 'close' };

const bad = (message: string, field: string) =>
  new WeirError('ERR_DATAPATH_EVENT', message, { location: { object: 'weir_events', field } });

/** The EVENT_F_* bits of an event (its `flags`, else rebuilt from its booleans). */
export function eventFlags(ev: FlowEvent): number {
  if (ev.flags !== undefined) return ev.flags;
  return (
    (ev.reply ? EventFlag.REPLY : 0) |
    (ev.related ? EventFlag.RELATED : 0) |
    (ev.toProxy ? EventFlag.TO_PROXY : 0) |
    (ev.fromProxy ? EventFlag.FROM_PROXY : 0) |
    (ev.audit ? EventFlag.AUDIT : 0) |
    (ev.encrypted ? EventFlag.ENCRYPTED : 0)
  );
}

export const EVENT_TYPE_CODE: Record<FlowEventType, number> = {
  drop: EventType.DROP,
  'policy-verdict': EventType.POLICY_VERDICT,
  trace: EventType.TRACE,
};

/** Decodes one ring buffer record; ERR_DATAPATH_EVENT when it is not a well-formed flow_event. */
export function decodeFlowEvent(buf: Buffer): FlowEvent {
  if (buf.length < FlowEventLayout.size)
    throw bad(`record of ${buf.length} bytes, struct flow_event has ${FlowEventLayout.size}`, 'size');
  const r = FlowEventLayout.decode(buf, 0);
  const type = TYPE_NAMES[r.type];
  if (!type) throw bad(`unknown event type ${r.type}`, 'type');
  let trace: TraceKind | undefined;
  if (type === 'trace') {
    trace = TRACE_NAMES[r.subtype];
    if (!trace) throw bad(`unknown trace subtype ${r.subtype}`, 'subtype');
  }
  if (r.family !== 0 && r.family !== 4 && r.family !== 6)
    throw bad(`unknown address family ${r.family}`, 'family');
  let direction: Direction;
  try {
    direction = directionOf(r.direction);
  } catch {
    throw bad(`unknown direction ${r.direction}`, 'direction');
  }
  return {
    type,
    ...(trace ? { trace } : {}),
    direction,
    reason: r.reason,
    family: r.family,
    proto: r.nexthdr,
    reply: (r.flags & EventFlag.REPLY) !== 0,
    related: (r.flags & EventFlag.RELATED) !== 0,
    flags: r.flags,
    ...((r.flags & EventFlag.TO_PROXY) !== 0 ? { toProxy: true as const, proxyPort: r.proxyPort } : {}),
    ...((r.flags & EventFlag.FROM_PROXY) !== 0 ? { fromProxy: true as const } : {}),
    ...((r.flags & EventFlag.AUDIT) !== 0 ? { audit: true as const } : {}),
    ...((r.flags & EventFlag.ENCRYPTED) !== 0 ? { encrypted: true as const } : {}),
    tcpFlags: r.tcpFlags,
    ifindex: r.ifindex,
    endpointId: r.endpointId,
    srcIdentity: r.srcIdentity,
    dstIdentity: r.dstIdentity,
    cookie: r.cookie,
    len: r.len,
    ...(r.family ? { src: addrText(r.saddr, r.family), dst: addrText(r.daddr, r.family) } : {}),
    sport: r.sport,
    dport: r.dport,
    ktimeNs: r.ktimeNs,
    packetsFwd: r.packetsFwd,
    bytesFwd: r.bytesFwd,
    packetsRev: r.packetsRev,
    bytesRev: r.bytesRev,
  };
}
