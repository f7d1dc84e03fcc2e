// Service and EndpointSlice: the kinds the agent's load balancer takes, for the manifest loader.
import { validateEndpointSlice, validateService } from './validate.js';

export { validateEndpointSlice, validateService };
export * from './types.js';

export const serviceKinds = [
  { apiVersion: 'v1', kind: 'Service', namespaced: true, validate: validateService },
  {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    namespaced: true,
    validate: validateEndpointSlice,
  },
] as const;

export function isServiceKind(kind: unknown): boolean {
  return serviceKinds.some((k) => k.kind === kind);
}
