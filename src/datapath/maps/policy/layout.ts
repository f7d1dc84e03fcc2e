// Mirrors struct policy_key and struct policy_entry (bpf/lib/common.h): the per-endpoint LPM
// trie inside weir_policy.
import { be16, cstruct, u32, u8 } from '../../../bpf/index.js';

export const PolicyKey = cstruct('policy_key', {
  prefixlen: u32(),
  identity: u32(),
  direction: u8(),
  protocol: u8(),
  dport: be16(),
});

export const PolicyEntry = cstruct('policy_entry', {
  proxyPort: be16(),
  flags: u8(),
  l4Prefix: u8(),
  cookie: u32(),
});

/** POLICY_STATIC_PREFIX (identity + direction) and POLICY_FULL_PREFIX. */
export const POLICY_STATIC_PREFIX = 40;
export const POLICY_FULL_PREFIX = 64;
/** POLICY_F_* */
export const POLICY_F_DENY = 1 << 0;
export const POLICY_F_AUTH = 1 << 1;
