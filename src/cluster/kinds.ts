// Every kind weir takes through its API, registered once with the manifest loader: core/v1
// Namespace and Pod (registered by src/k8s), the policy kinds, the service kinds and Gateway API. Clients
// (CLI) and the API import this so both validate the same way.
import { registerKind, lookupKind, registeredKinds } from '../k8s/index.js';
import { isPolicyKind, policyKinds } from '../policy/api/index.js';
import { isServiceKind, serviceKinds } from '../service/api/index.js';
import { gatewayKinds, isGatewayKind } from '../gateway/api.js';

for (const k of [...policyKinds, ...serviceKinds, ...gatewayKinds]) {
  if (!lookupKind(k.apiVersion, k.kind))
    registerKind<unknown>({
      apiVersion: k.apiVersion,
      kind: k.kind,
      namespaced: k.namespaced,
      validate: k.validate,
    });
}

export { isGatewayKind, isPolicyKind, isServiceKind, lookupKind };

/** Whether objects of `kind` live in a namespace (undefined for a kind weir does not know). */
export function namespacedKind(kind: string): boolean | undefined {
  for (const k of registeredKinds()) if (k.kind === kind) return lookupKind(k.apiVersion, k.kind)?.namespaced;
  return undefined;
}
