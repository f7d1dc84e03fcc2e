// Mirrors struct flow_event (bpf/lib/common.h): the records of the weir_events ring buffer, and
// the EVENT_* / TRACE_* / EVENT_F_* constants (events.test.ts checks them against the header).
import { be16, bytes, cstruct, pad, u32, u64, u8 } from '../../../bpf/index.js';

export const FlowEventLayout = cstruct('flow_event', {
  type: u8(),
  subtype: u8(),
  direction: u8(),
  reason: u8(),
  family: u8(),
  nexthdr: u8(),
  flags: u8(),
  tcpFlags: u8(),
  ifindex: u32(),
  endpointId: u32(),
  srcIdentity: u32(),
  dstIdentity: u32(),
  cookie: u32(),
  len: u32(),
  saddr: bytes(16),
  daddr: bytes(16),
  sport: be16(),
  dport: be16(),
  proxyPort: be16(),
  /** 189 drops: the peer's node (bpf/lib/auth.h auth_remote_node); 0: this node. A u16 the flow
   * pipeline reads at its offset (src/agent/flows.ts); left out of decoded events. */
  remoteNodeId: pad(2),
  ktimeNs: u64(),
  packetsFwd: u64(),
  bytesFwd: u64(),
  packetsRev: u64(),
  bytesRev: u64(),
});

/** EVENT_*: flow_event.type. */
export const EventType = { DROP: 1, POLICY_VERDICT: 2, TRACE: 3 } as const;
/** TRACE_*: flow_event.subtype of EVENT_TRACE. */
export const TraceType = { OPEN: 1, CLOSE: 2 } as const;
/** EVENT_F_*: flow_event.flags. */
export const EventFlag = {
  REPLY: 1 << 0,
  RELATED: 1 << 1,
  TO_PROXY: 1 << 2,
  FROM_PROXY: 1 << 3,
  AUDIT: 1 << 4,
  /** The connection travels in the node proxies' mTLS tunnel (--encryption mtls). */
  ENCRYPTED: 1 << 5,
} as const;
