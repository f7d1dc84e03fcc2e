// Where weir keeps what in the Store (one layout for the file store of one node and the etcd of a
// cluster; the state/ part follows Cilium's kvstore layout, cilium/state/<what>/v1/…):
//
//   weir/desired/v1/<Kind>/<namespace>/<name>   what users applied (namespaced kinds)
//   weir/desired/v1/<Kind>/<name>               … cluster-scoped kinds (Namespace, CCNP)
//   weir/intake/v1/guard                        written with every apply/delete: concurrent API
//                                               writers serialise on its revision
//   weir/state/nodes/v1/<node>                  a node's record (under the node's lease)
//   weir/state/reconciled/v1/<node>             the desired revision the node has reconciled
//                                               (under the node's lease)
//   weir/state/pods/v1/<namespace>/<name>       a pod's status, written by the agent of its node
//   weir/local/v1/<node>/<what>                 node-local bookkeeping of that node's agent
//                                               (settings, identities, endpoint ids, lb ids)
export const desiredPrefix = 'weir/desired/v1/';
export const intakeGuardKey = 'weir/intake/v1/guard';
export const statePrefix = 'weir/state/';
export const nodesPrefix = 'weir/state/nodes/v1/';
export const reconciledPrefix = 'weir/state/reconciled/v1/';
export const podStatusPrefix = 'weir/state/pods/v1/';

export interface ObjectRef {
  kind: string;
  namespace?: string;
  name: string;
}

/** "Kind/ns/name" or "Kind/name": an object's key below weir/desired/v1/. */
export const objectKey = (o: ObjectRef) => `${o.kind}/${o.namespace ? `${o.namespace}/` : ''}${o.name}`;

export const desiredKey = (o: ObjectRef) => desiredPrefix + objectKey(o);

/**
 * weir/desired/v1/EndpointConfig/<ns>/<pod>: an endpoint's own options (`weir endpoint config`),
 * { policyAuditMode }. Not a manifest kind: only the API's endpoint config route writes it, and
 * the desired view skips it; the agent of the pod's node reads it when it reconciles.
 */
export const endpointConfigKind = 'EndpointConfig';
export const endpointConfigKey = (namespace: string, pod: string) =>
  desiredKey({ kind: endpointConfigKind, namespace, name: pod });

export interface EndpointConfig {
  namespace: string;
  pod: string;
  /** Policy audit mode: Enabled (true), Disabled (false), absent: the agent's --policy-audit-mode. */
  policyAuditMode?: boolean;
}
export const desiredKindPrefix = (kind: string) => `${desiredPrefix}${kind}/`;
export const nodeKey = (node: string) => nodesPrefix + node;
export const reconciledKey = (node: string) => reconciledPrefix + node;
export const podStatusKey = (namespace: string, name: string) => `${podStatusPrefix}${namespace}/${name}`;
export const localPrefix = (node: string) => `weir/local/v1/${node}/`;
export const localKey = (node: string, what: 'settings' | 'identities' | 'endpoints' | 'lb' | 'fqdn') =>
  localPrefix(node) + what;

/** The object a desired key names, or undefined for a key outside weir/desired/v1/. */
export function refOfDesiredKey(key: string): ObjectRef | undefined {
  if (!key.startsWith(desiredPrefix)) return undefined;
  const parts = key.slice(desiredPrefix.length).split('/');
  if (parts.length === 2) return { kind: parts[0] as string, name: parts[1] as string };
  if (parts.length === 3)
    return { kind: parts[0] as string, namespace: parts[1] as string, name: parts[2] as string };
  return undefined;
}
