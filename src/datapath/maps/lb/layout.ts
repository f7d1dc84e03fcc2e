// Mirrors the service load-balancing structs of bpf/lib/common.h (lb_*), used by bpf/sock.c's
// maps (bpf/lib/lb.h): weir_lb_services, weir_lb_backends, weir_lb_revnat, weir_lb_maglev,
// weir_lb_affinity (weir_lb_sk_rev, socket storage, is never read by user space).
import { be16, bytes, cstruct, pad, u16, u32, u64, u8 } from '../../../bpf/index.js';

export const LbKey = cstruct('lb_key', {
  addr: bytes(16),
  dport: be16(),
  backendSlot: u16(),
  proto: u8(),
  family: u8(),
  scope: u8(),
  pad: pad(1),
});

export const LbService = cstruct('lb_service', {
  backendId: u32(),
  count: u16(),
  revNatIndex: u16(),
  active: u16(),
  flags: u8(),
  pad: pad(1),
});

export const LbBackend = cstruct('lb_backend', {
  addr: bytes(16),
  port: be16(),
  proto: u8(),
  family: u8(),
  state: u8(),
  pad: pad(3),
});

export const LbRevnat = cstruct('lb_revnat', {
  addr: bytes(16),
  port: be16(),
  family: u8(),
  pad: pad(1),
  revNatIndex: u16(),
  pad2: pad(2),
});

export const LbAffinityKey = cstruct('lb_affinity_key', {
  clientCookie: u64(),
  clientAddr: bytes(16),
  revNatIndex: u16(),
  family: u8(),
  pad: pad(5),
});

export const LbAffinityValue = cstruct('lb_affinity_value', {
  lastUsedNs: u64(),
  backendId: u32(),
  pad: pad(4),
});

export const LB_SCOPE_EXT = 0;
export const LB_SCOPE_INT = 1;

/** SVC_F_* (lb_service.flags of slot 0). */
export const ServiceFlags = { affinity: 1 << 0, maglev: 1 << 1, nodePort: 1 << 2, local: 1 << 3 } as const;

/** LB_BACKEND_* (lb_backend.state). */
export const BackendState = { active: 0, terminating: 1, quarantined: 2, maintenance: 3 } as const;
export type BackendStateName = keyof typeof BackendState;

/** LB_MAGLEV_LUT_MAX: room of every inner Maglev array, in backend ids. */
export const LB_MAGLEV_LUT_MAX = 65521;
/** Maglev table sizes weir accepts (Cilium's primes up to LB_MAGLEV_LUT_MAX). */
export const MAGLEV_TABLE_SIZES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521] as const;
