// Mirrors struct auth_key and struct auth_info (bpf/lib/common.h): weir_auth.
import { cstruct, pad, u16, u32, u64, u8 } from '../../../bpf/index.js';

export const AuthKey = cstruct('auth_key', {
  srcIdentity: u32(),
  dstIdentity: u32(),
  remoteNodeId: u16(),
  authType: u8(),
  pad: pad(1),
});

export const AuthInfo = cstruct('auth_info', {
  expiresNs: u64(),
});

/** AUTH_TYPE_*: an mTLS handshake with X.509 SVIDs. */
export const AUTH_TYPE_MTLS = 1;
