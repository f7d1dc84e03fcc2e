// Reserved security identities, numbered as Cilium does (pkg/identity/numericidentity.go) and
// as bpf/lib/common.h defines them.

export const IDENTITY_ANY = 0; // policy keys only: "any identity"
export const IDENTITY_HOST = 1;
export const IDENTITY_WORLD = 2;
export const IDENTITY_UNMANAGED = 3;
export const IDENTITY_HEALTH = 4;
export const IDENTITY_INIT = 5;
export const IDENTITY_REMOTE_NODE = 6;
export const IDENTITY_KUBE_APISERVER = 7;
export const IDENTITY_INGRESS = 8;
export const IDENTITY_WORLD_IPV4 = 9;
export const IDENTITY_WORLD_IPV6 = 10;

/** First cluster-wide identity allocated for pod label sets. */
export const CLUSTER_IDENTITY_MIN = 256;
export const CLUSTER_IDENTITY_MAX = 65535;
/** Node-local identities (CIDRs) are (1<<24) | n. */
export const LOCAL_IDENTITY_FLAG = 1 << 24;
export const LOCAL_IDENTITY_MIN = LOCAL_IDENTITY_FLAG + 1;
export const LOCAL_IDENTITY_MAX = LOCAL_IDENTITY_FLAG + 0xffffff;

/** id -> reserved label name ("reserved:<name>"). */
export const reservedIdentities: ReadonlyMap<number, string> = new Map([
  [IDENTITY_HOST, 'host'],
  [IDENTITY_WORLD, 'world'],
  [IDENTITY_UNMANAGED, 'unmanaged'],
  [IDENTITY_HEALTH, 'health'],
  [IDENTITY_INIT, 'init'],
  [IDENTITY_REMOTE_NODE, 'remote-node'],
  [IDENTITY_KUBE_APISERVER, 'kube-apiserver'],
  [IDENTITY_INGRESS, 'ingress'],
  [IDENTITY_WORLD_IPV4, 'world-ipv4'],
  [IDENTITY_WORLD_IPV6, 'world-ipv6'],
]);

export function isReserved(id: number): boolean {
  return reservedIdentities.has(id);
}

export function isLocalIdentity(id: number): boolean {
  return id >= LOCAL_IDENTITY_MIN && id <= LOCAL_IDENTITY_MAX;
}

/** Label strings of a reserved identity. kube-apiserver also carries remote-node, like Cilium. */
export function reservedLabels(id: number): string[] {
  const name = reservedIdentities.get(id);
  if (name === undefined) return [];
  if (id === IDENTITY_KUBE_APISERVER) return ['reserved:kube-apiserver', 'reserved:remote-node'];
  return [`reserved:${name}`];
}
