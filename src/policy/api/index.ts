// Entry point for the manifest loader: one validator per kind, and one that dispatches on kind.
import { WeirError } from '../../shared/errors.js';
import type { PolicyLocation } from './check.js';
import { validateCiliumClusterwideNetworkPolicy, validateCiliumNetworkPolicy } from './cilium-policy.js';
import { validateNetworkPolicy } from './network-policy.js';
import type { Policy } from './types.js';

export { validateCiliumClusterwideNetworkPolicy, validateCiliumNetworkPolicy, validateNetworkPolicy };
export type { PolicyLocation };

/** The kinds this module validates, for registration with the manifest loader. */
export const policyKinds = [
  {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    namespaced: true,
    validate: validateNetworkPolicy,
  },
  {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    namespaced: true,
    validate: validateCiliumNetworkPolicy,
  },
  {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumClusterwideNetworkPolicy',
    namespaced: false,
    validate: validateCiliumClusterwideNetworkPolicy,
  },
] as const;

export function isPolicyKind(kind: unknown): boolean {
  return policyKinds.some((k) => k.kind === kind);
}

/** Validates any of the three policy kinds. */
export function validatePolicy(obj: unknown, loc: PolicyLocation): Policy {
  const kind = (obj as { kind?: unknown } | null)?.kind;
  const spec = policyKinds.find((k) => k.kind === kind);
  if (!spec)
    throw new WeirError(
      'ERR_POLICY_KIND_UNKNOWN',
      `'${String(kind)}' is not a policy kind (${policyKinds.map((k) => k.kind).join(', ')})`,
      {
        location: { file: loc.file, object: loc.object, field: 'kind' },
      },
    );
  return spec.validate(obj, loc);
}
