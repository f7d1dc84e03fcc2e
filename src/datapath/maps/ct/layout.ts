// Mirrors struct ct_key and struct ct_entry (bpf/lib/common.h): weir_ct, both families.
import { be16, bytes, cstruct, pad, u16, u32, u64, u8 } from '../../../bpf/index.js';

export const CtKey = cstruct('ct_key', {
  saddr: bytes(16),
  daddr: bytes(16),
  sport: be16(),
  dport: be16(),
  nexthdr: u8(),
  flags: u8(),
  family: u8(),
  pad: pad(1),
});

export const CtEntry = cstruct('ct_entry', {
  packetsFwd: u64(),
  bytesFwd: u64(),
  packetsRev: u64(),
  bytesRev: u64(),
  lifetimeNs: u64(),
  cookie: u32(),
  srcIdentity: u32(),
  tcpFlagsFwd: u16(),
  tcpFlagsRev: u16(),
  state: u8(),
  /** CT_ENTRY_F_* */
  flags: u8(),
  /** Non-zero: a service connection translated at tc; replies show this frontend. */
  revNatIndex: u16(),
  /** CT_ENTRY_F_TO_PROXY: the node proxy's listener. */
  proxyPort: be16(),
  pad1: pad(2),
  pad2: pad(4),
});

/** CT_F_*: whose policy created the entry; CT_F_PROXY: opened by the node proxy (its upstream). */
export const CT_F_INGRESS = 1;
export const CT_F_EGRESS = 2;
export const CT_F_PROXY = 4;
/** CT_ENTRY_F_*: ct_entry.flags. */
export const CtEntryFlag = { TO_PROXY: 1, PROXY_UPSTREAM: 2 } as const;
/** CT_STATE_* */
export const CtState = { new: 1, established: 2, closing: 3 } as const;
