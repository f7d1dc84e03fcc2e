// Namespaces must exist, as the Kubernetes API demands: a namespaced object (Pod, Service,
// EndpointSlice, NetworkPolicy, CiliumNetworkPolicy, …) whose namespace neither exists nor comes in
// the same apply is refused with the API server's own words, `namespaces "x" not found`. Pure:
// the CLI checks a whole apply against the lab before anything changes, the lab and the agent
// check what reaches them.
import { WeirError } from '../shared/errors.js';
import type { Manifest } from './manifest.js';

/** What the check needs of an object: a Namespace adds one, anything with a namespace needs one. */
export interface NamespacedRef {
  kind: string;
  name: string;
  /** Absent for cluster-scoped objects (Namespace, CiliumClusterwideNetworkPolicy). */
  namespace?: string;
  file?: string;
}

export const manifestRef = (m: Manifest): NamespacedRef => ({
  kind: m.kind,
  name: m.metadata.name,
  ...(m.metadata.namespace === undefined ? {} : { namespace: m.metadata.namespace }),
  file: m.file,
});

/**
 * One ERR_K8S_NAMESPACE_NOT_FOUND per object whose namespace is neither in `existing` nor a
 * Namespace among `objects`, naming its file, object and field metadata.namespace.
 */
export function namespaceProblems(objects: NamespacedRef[], existing: Iterable<string>): WeirError[] {
  const known = new Set(existing);
  for (const o of objects) if (o.kind === 'Namespace' && o.namespace === undefined) known.add(o.name);
  return objects
    .filter((o) => o.namespace !== undefined && !known.has(o.namespace))
    .map(
      (o) =>
        new WeirError('ERR_K8S_NAMESPACE_NOT_FOUND', `namespaces "${o.namespace}" not found`, {
          location: {
            ...(o.file === undefined ? {} : { file: o.file }),
            object: `${o.kind} ${o.namespace}/${o.name}`,
            field: 'metadata.namespace',
          },
        }),
    );
}
