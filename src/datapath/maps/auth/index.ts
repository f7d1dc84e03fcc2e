// weir_auth (bpf/lib/auth.h; Cilium's cilium_auth_map): the identity pairs an mTLS handshake
// authenticated, per remote node (0: this node), until an expiry. The datapath compares the
// expiry with CLOCK_MONOTONIC; this wrapper takes and gives wall-clock times (a certificate's
// notAfter) and converts at the moment of the call.
import { TypedMap, type BpfMap } from '../../../bpf/index.js';
import { WeirError } from '../../../shared/errors.js';
import { monotonicNowNs } from '../../clock.js';
import { AUTH_TYPE_MTLS, AuthInfo, AuthKey } from './layout.js';

export interface AuthPair {
  /** The connection's initiator. */
  srcIdentity: number;
  dstIdentity: number;
  /** The peer's node; 0 for this node. */
  remoteNodeId: number;
}

export interface AuthEntry extends AuthPair {
  /** Wall-clock expiry (from the monotonic value in the map). */
  expires: Date;
  /** False once the datapath no longer accepts it (it waits for the agent to remove it). */
  valid: boolean;
}

type RawKey = ReturnType<typeof AuthKey.decode>;

function rawKey(p: AuthPair): RawKey {
  const check = (field: keyof AuthPair, max: number) => {
    const v = p[field];
    if (!Number.isInteger(v) || v < 0 || v > max)
      throw new WeirError('ERR_DATAPATH_AUTH_KEY', `weir_auth: ${field} ${v} is not 0..${max}`, {
        location: { object: 'weir_auth', field },
      });
  };
  check('srcIdentity', 0xffffffff);
  check('dstIdentity', 0xffffffff);
  check('remoteNodeId', 0xffff);
  return {
    srcIdentity: p.srcIdentity,
    dstIdentity: p.dstIdentity,
    remoteNodeId: p.remoteNodeId,
    authType: AUTH_TYPE_MTLS,
  };
}

export class AuthMap {
  readonly typed: TypedMap<RawKey, ReturnType<typeof AuthInfo.decode>>;

  constructor(map: BpfMap) {
    this.typed = new TypedMap(map, AuthKey, AuthInfo);
  }

  /** The pair is authenticated until `expires` (wall clock). */
  set(p: AuthPair, expires: Date): void {
    const at = monotonicNowNs() + BigInt(Math.floor(expires.getTime() - Date.now())) * 1_000_000n;
    this.typed.update(rawKey(p), { expiresNs: at > 0n ? at : 0n });
  }

  /** True when the pair had an entry. */
  delete(p: AuthPair): boolean {
    return this.typed.delete(rawKey(p));
  }

  list(): AuthEntry[] {
    const mono = monotonicNowNs();
    const wall = Date.now();
    return this.typed
      .lookupBatch()
      .filter(([k]) => k.authType === AUTH_TYPE_MTLS)
      .map(([k, v]) => ({
        srcIdentity: k.srcIdentity,
        dstIdentity: k.dstIdentity,
        remoteNodeId: k.remoteNodeId,
        expires: new Date(wall + Number((v.expiresNs - mono) / 1_000_000n)),
        valid: v.expiresNs > mono,
      }));
  }

  clear(): void {
    this.typed.clear();
  }
}
