// The security-relevant labels of a pod, as Cilium derives them (facts 1.6): the pod's labels,
// its namespace, copies of the namespace's labels, the cluster and the service account.
import { LabelFilter } from './filter.js';
import type { Label } from './labels.js';

export const NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
export const CLUSTER_LABEL = 'io.cilium.k8s.policy.cluster';
export const SERVICE_ACCOUNT_LABEL = 'io.cilium.k8s.policy.serviceaccount';
export const DEFAULT_CLUSTER = 'default';

export interface PodLabelInput {
  namespace: string;
  labels: Record<string, string>;
  namespaceLabels: Record<string, string>;
  serviceAccount?: string;
  cluster?: string;
}

const defaultFilter = new LabelFilter();

/**
 * The API server always sets kubernetes.io/metadata.name on a namespace, so a namespace label
 * set without it still has it.
 */
export function effectiveNamespaceLabels(
  name: string,
  labels: Record<string, string>,
): Record<string, string> {
  return { ...labels, 'kubernetes.io/metadata.name': name };
}

export function podSecurityLabels(pod: PodLabelInput, filter: LabelFilter = defaultFilter): Label[] {
  const k8s = (key: string, value: string): Label => ({ source: 'k8s', key, value });
  const labels: Label[] = [
    // A pod cannot forge the labels Cilium derives itself.
    ...Object.entries(pod.labels)
      .filter(([k]) => k !== NAMESPACE_LABEL && !k.startsWith('io.cilium.k8s.'))
      .map(([k, v]) => k8s(k, v)),
    k8s(NAMESPACE_LABEL, pod.namespace),
    ...Object.entries(effectiveNamespaceLabels(pod.namespace, pod.namespaceLabels)).map(([k, v]) =>
      k8s(NAMESPACE_LABELS_PREFIX + k, v),
    ),
    k8s(CLUSTER_LABEL, pod.cluster ?? DEFAULT_CLUSTER),
    k8s(SERVICE_ACCOUNT_LABEL, pod.serviceAccount ?? 'default'),
  ];
  return filter.filter(labels);
}
