// weir_lxc: a local pod's address -> where eBPF host routing delivers to it (bpf/lib/host_routing.h):
// its host veth (the weir_endpoints key whose ingress policy judges the packet), its own MAC and
// its host veth's (the frame's new destination and source).
import { TypedMap, type BpfMap } from '../../../bpf/index.js';
import { WeirError } from '../../../shared/errors.js';
import { addrKey, addrText } from '../../addr.js';
import { LxcInfo, LxcKey } from './layout.js';

export interface LocalAddress {
  /** The pod's address (IPv4 or IPv6). */
  ip: string;
  /** Its host-side veth. */
  ifindex: number;
  /** The pod's interface MAC, aa:bb:cc:dd:ee:ff. */
  mac: string;
  /** The host-side veth's MAC. */
  hostMac: string;
}

/** 'aa:bb:cc:dd:ee:ff' -> 6 bytes; anything else is ERR_DATAPATH_MAC naming the field. */
export function macBytes(mac: string, field: string): Buffer {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac))
    throw new WeirError('ERR_DATAPATH_MAC', `'${mac}' is not a MAC address (aa:bb:cc:dd:ee:ff)`, {
      location: { object: 'weir_lxc', field },
    });
  return Buffer.from(mac.replace(/:/g, ''), 'hex');
}

const macText = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');

export class LxcMap {
  readonly typed: TypedMap<ReturnType<typeof LxcKey.decode>, ReturnType<typeof LxcInfo.decode>>;

  constructor(map: BpfMap) {
    this.typed = new TypedMap(map, LxcKey, LxcInfo);
  }

  set(a: LocalAddress): void {
    const { family, bytes } = addrKey(a.ip, { object: 'weir_lxc', field: 'ip' });
    const value = {
      ifindex: a.ifindex,
      mac: macBytes(a.mac, 'mac'),
      hostMac: macBytes(a.hostMac, 'hostMac'),
    };
    this.typed.update({ addr: bytes, family }, value);
  }

  get(ip: string): LocalAddress | undefined {
    const { family, bytes } = addrKey(ip, { object: 'weir_lxc', field: 'ip' });
    const v = this.typed.lookup({ addr: bytes, family });
    return v && { ip, ifindex: v.ifindex, mac: macText(v.mac), hostMac: macText(v.hostMac) };
  }

  delete(ip: string): boolean {
    const { family, bytes } = addrKey(ip, { object: 'weir_lxc', field: 'ip' });
    return this.typed.delete({ addr: bytes, family });
  }

  list(): LocalAddress[] {
    return this.typed.lookupBatch().map(([k, v]) => ({
      ip: addrText(k.addr, k.family),
      ifindex: v.ifindex,
      mac: macText(v.mac),
      hostMac: macText(v.hostMac),
    }));
  }

  /** Removes every address of host veth `ifindex`. */
  deleteIfindex(ifindex: number): void {
    for (const a of this.list()) if (a.ifindex === ifindex) this.delete(a.ip);
  }
}
