// Mirrors struct ipcache_key and struct ipcache_value (bpf/lib/common.h).
import { bytes, cstruct, ipv4, pad, u32, u8 } from '../../../bpf/index.js';

export const IpcacheKey = cstruct('ipcache_key', {
  prefixlen: u32(),
  pad1: pad(2),
  pad2: pad(1),
  family: u8(),
  addr: bytes(16),
});

export const IpcacheValue = cstruct('ipcache_value', {
  identity: u32(),
  /** Tunnel mode: the IPv4 underlay address of the node the prefix lives on; '0.0.0.0' = none. */
  tunnelEndpoint: ipv4(),
});

/** IPCACHE_STATIC_PREFIX: the pad+family bits every key matches exactly. */
export const IPCACHE_STATIC_PREFIX = 32;
