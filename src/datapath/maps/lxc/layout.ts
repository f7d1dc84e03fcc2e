// Mirrors struct lxc_key and struct lxc_info (bpf/lib/common.h).
import { bytes, cstruct, pad, u32, u8 } from '../../../bpf/index.js';

export const LxcKey = cstruct('lxc_key', {
  addr: bytes(16),
  family: u8(),
  pad: pad(3),
});

export const LxcInfo = cstruct('lxc_info', {
  ifindex: u32(),
  mac: bytes(6),
  hostMac: bytes(6),
});
