// The kinds `weir apply` understands, registered once with the manifest loader: the lab's
// (Namespace, Pod: registered by src/k8s), the policy kinds the agent enforces and the service
// kinds it load-balances.
import { registerKind, lookupKind } from '../k8s/index.js';
import { isPolicyKind, policyKinds } from '../policy/api/index.js';
import { isServiceKind, serviceKinds } from '../service/api/index.js';

for (const k of [...policyKinds, ...serviceKinds]) {
  if (!lookupKind(k.apiVersion, k.kind))
    registerKind<unknown>({
      apiVersion: k.apiVersion,
      kind: k.kind,
      namespaced: k.namespaced,
      validate: k.validate,
    });
}

/** Objects the agent owns (policies, services); everything else belongs to the lab. */
export function isAgentKind(kind: string): boolean {
  return isPolicyKind(kind) || isServiceKind(kind);
}
