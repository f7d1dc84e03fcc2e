// weir_endpoints: host-side veth ifindex -> the endpoint behind it.
import { TypedMap, type BpfMap } from '../../../bpf/index.js';
import { EndpointInfo, EndpointKey } from './layout.js';

export interface Endpoint {
  endpointId: number;
  identity: number;
  /** ENDPOINT_F_* (EndpointFlags). */
  flags: number;
}

export class EndpointsMap {
  readonly typed: TypedMap<number, Endpoint>;

  constructor(map: BpfMap) {
    this.typed = new TypedMap(map, EndpointKey, EndpointInfo);
  }

  set(ifindex: number, ep: Endpoint): void {
    this.typed.update(ifindex, ep);
  }

  get(ifindex: number): Endpoint | undefined {
    return this.typed.lookup(ifindex);
  }

  delete(ifindex: number): boolean {
    return this.typed.delete(ifindex);
  }

  list(): { ifindex: number; endpoint: Endpoint }[] {
    return this.typed.lookupBatch().map(([ifindex, endpoint]) => ({ ifindex, endpoint }));
  }
}
