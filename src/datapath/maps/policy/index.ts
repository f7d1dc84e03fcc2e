// One endpoint's policy map (the LPM trie weir_policy[endpoint id] points to). Keys here are map
// keys, not rules: the policy engine decides which keys an endpoint needs; this wrapper encodes
// them (prefix lengths, l4_prefix precedence) so that no caller computes those by hand.
import { TypedMap, type BpfMap } from '../../../bpf/index.js';
import { WeirError } from '../../../shared/errors.js';
import { DIR, directionOf, type Direction } from '../../direction.js';
import { POLICY_F_AUTH, POLICY_F_DENY, POLICY_STATIC_PREFIX, PolicyEntry, PolicyKey } from './layout.js';

export interface PolicyMapKey {
  /** Remote security identity; 0 = any identity. */
  identity: number;
  direction: Direction;
  /** IPPROTO_*; 0 = any protocol (then no port). */
  protocol: number;
  /** Destination port; with portPrefixLen < 16 the first port of an aligned block. Absent: any. */
  port?: number;
  /** Leading port bits that must match (16 = exact, default when `port` is set). */
  portPrefixLen?: number;
}

export interface PolicyMapValue {
  deny?: boolean;
  /** Allowed only once the two identities authenticated (weir_auth; `authentication.mode: required`). */
  auth?: boolean;
  /** Redirect to the L7 proxy on this port (0 or absent: forward). */
  proxyPort?: number;
  /** The rule that produced the entry. */
  cookie?: number;
}

export interface PolicyMapEntry {
  key: Required<PolicyMapKey>;
  value: Required<PolicyMapValue>;
}

type RawKey = ReturnType<typeof PolicyKey.decode>;

export class PolicyMap {
  readonly typed: TypedMap<RawKey, ReturnType<typeof PolicyEntry.decode>>;

  constructor(
    readonly map: BpfMap,
    readonly endpointId: number,
  ) {
    this.typed = new TypedMap(map, PolicyKey, PolicyEntry);
  }

  upsert(key: PolicyMapKey, value: PolicyMapValue): void {
    const { raw, l4Prefix } = encodeKey(key, this.endpointId);
    this.typed.update(raw, {
      proxyPort: value.proxyPort ?? 0,
      flags: (value.deny ? POLICY_F_DENY : 0) | (value.auth ? POLICY_F_AUTH : 0),
      l4Prefix,
      cookie: value.cookie ?? 0,
    });
  }

  /** True when the key was present. */
  delete(key: PolicyMapKey): boolean {
    return this.typed.delete(encodeKey(key, this.endpointId).raw);
  }

  list(): PolicyMapEntry[] {
    return this.typed.lookupBatch().map(([k, v]) => {
      const l4Bits = Math.max(0, k.prefixlen - POLICY_STATIC_PREFIX);
      return {
        key: {
          identity: k.identity,
          direction: directionOf(k.direction),
          protocol: k.protocol,
          port: k.dport,
          portPrefixLen: Math.max(0, l4Bits - 8),
        },
        value: {
          deny: (v.flags & POLICY_F_DENY) !== 0,
          auth: (v.flags & POLICY_F_AUTH) !== 0,
          proxyPort: v.proxyPort,
          cookie: v.cookie,
        },
      };
    });
  }

  clear(): void {
    this.typed.clear();
  }

  close(): void {
    this.map.close();
  }
}

function encodeKey(key: PolicyMapKey, endpointId: number): { raw: RawKey; l4Prefix: number } {
  const fail = (field: string, why: string) =>
    new WeirError('ERR_DATAPATH_POLICY_KEY', `policy map of endpoint ${endpointId}: ${why}`, {
      location: { object: `endpoint ${endpointId}`, field },
    });
  if (!Number.isInteger(key.identity) || key.identity < 0 || key.identity > 0xffffffff)
    throw fail('identity', `identity ${key.identity} is not a u32`);
  if (!Number.isInteger(key.protocol) || key.protocol < 0 || key.protocol > 255)
    throw fail('protocol', `protocol ${key.protocol} is not 0..255`);
  const portBits = key.port === undefined ? 0 : (key.portPrefixLen ?? 16);
  if (!Number.isInteger(portBits) || portBits < 0 || portBits > 16)
    throw fail('portPrefixLen', `port prefix length ${portBits} is not 0..16`);
  const port = key.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 0xffff)
    throw fail('port', `port ${port} is not 0..65535`);
  if (key.protocol === 0 && (port !== 0 || portBits !== 0))
    throw fail('port', 'a port needs a protocol (protocol 0 means any protocol and any port)');
  if (port & (0xffff >> portBits)) throw fail('port', `port ${port} is not aligned to a /${portBits} block`);
  const l4Bits = key.protocol === 0 ? 0 : 8 + portBits;
  return {
    raw: {
      prefixlen: POLICY_STATIC_PREFIX + l4Bits,
      identity: key.identity,
      direction: DIR[key.direction],
      protocol: key.protocol,
      dport: port,
    },
    l4Prefix: l4Bits,
  };
}
