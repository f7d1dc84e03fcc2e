// Mirrors struct frag_key and struct frag_ports (bpf/lib/common.h): weir_frag.
import { be16, bytes, cstruct, pad, u32, u8 } from '../../../bpf/index.js';

export const FragKey = cstruct('frag_key', {
  saddr: bytes(16),
  daddr: bytes(16),
  id: u32(),
  proto: u8(),
  family: u8(),
  pad: pad(2),
});

export const FragPorts = cstruct('frag_ports', {
  sport: be16(),
  dport: be16(),
});
