// Kubernetes manifests: loading, the kind registry and the core/v1 kinds.
export { loadManifests, parseManifests, objectName, type Manifest, type ObjectMeta } from './manifest.js';
export { registerKind, lookupKind, registeredKinds, zodValidate, fieldPath } from './registry.js';
export type { KindSpec, ObjectLocation } from './registry.js';
export {
  podContainers,
  podPorts,
  podRunsWorkload,
  podTerminating,
  protocols,
  terminatingAnnotation,
  workloadAnnotation,
  type Pod,
  type Namespace,
  type PodPort,
  type Protocol,
} from './core.js';
export { labelKeyProblem, labelValueProblem, portNameProblem, labelsSchema } from './labels.js';
export {
  podObject,
  namespaceObject,
  serviceObject,
  v1List,
  k8sTime,
  type PodRecord,
  type NamespaceRecord,
  type ServiceRecord,
  type ContainerRecord,
  type V1Pod,
  type V1Namespace,
  type V1Service,
  type V1List,
  type V1ObjectMeta,
} from './objects.js';
export { namespaceProblems, manifestRef, type NamespacedRef } from './namespaces.js';
