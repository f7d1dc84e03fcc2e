// Mirrors struct endpoint_info (bpf/lib/common.h); the key is the host-side veth's ifindex (u32).
import { cstruct, pad, u32 } from '../../../bpf/index.js';

export const EndpointKey = u32();

export const EndpointInfo = cstruct('endpoint_info', {
  endpointId: u32(),
  identity: u32(),
  flags: u32(),
  pad: pad(4),
});

/** ENDPOINT_F_* */
export const EndpointFlags = {
  enforceIngress: 1 << 0,
  enforceEgress: 1 << 1,
  failClosed: 1 << 2,
  /** Policy audit mode: policy denials are reported (EVENT_F_AUDIT) and pass. */
  audit: 1 << 3,
} as const;
