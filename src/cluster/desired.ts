// Reading desired state: the typed view of weir/desired/v1/… that agents reconcile from and the
// API validates against (Namespaces with their labels, Pods with their node, ports and
// annotations, and the policy and service objects as stored).
import { podPorts, podRunsWorkload, podTerminating, type Pod, type PodPort } from '../k8s/core.js';
import { isPolicyKind } from '../policy/api/index.js';
import { isServiceKind } from '../service/api/index.js';
import { desiredPrefix } from './keys.js';
import type { DesiredObject, NamespaceInfo } from './objects.js';

export const nsNameLabel = 'kubernetes.io/metadata.name';

/** The default namespace exists without being applied (and cannot be deleted). */
export const defaultNamespace: NamespaceInfo = { name: 'default', labels: { [nsNameLabel]: 'default' } };

export interface DesiredPod {
  namespace: string;
  name: string;
  /** spec.nodeName (the API fills it in when absent). */
  node: string;
  labels: Record<string, string>;
  ports: PodPort[];
  noWorkload: boolean;
  terminating: boolean;
  /** The modRevision of its desired object: a change of the object changes it. */
  revision: number;
  file?: string;
}

export interface DesiredState {
  /** The revision the state is complete up to. */
  revision: number;
  namespaces: Map<string, NamespaceInfo>;
  /** "ns/name" -> pod */
  pods: Map<string, DesiredPod>;
  /** Policies, Services, EndpointSlices (and kinds added later that agents enforce). */
  objects: DesiredObject[];
}

interface Item {
  key: string;
  value: unknown;
  modRevision: number;
}

export function namespaceOf(o: DesiredObject): NamespaceInfo {
  const labels = (o.object as { metadata?: { labels?: Record<string, string> } }).metadata?.labels ?? {};
  return { name: o.name, labels: { ...labels, [nsNameLabel]: o.name } };
}

export function podOf(o: DesiredObject, revision: number): DesiredPod {
  const pod = o.object as Pod & { spec: { nodeName?: string } };
  return {
    namespace: o.namespace ?? 'default',
    name: o.name,
    node: pod.spec?.nodeName ?? '',
    labels: pod.metadata?.labels ?? {},
    ports: podPorts(pod),
    noWorkload: !podRunsWorkload(pod),
    terminating: podTerminating(pod),
    revision,
    ...(o.file ? { file: o.file } : {}),
  };
}

/** The desired state held by `items` (the values under weir/desired/v1/). */
export function desiredState(items: Iterable<Item>, revision: number): DesiredState {
  const out: DesiredState = {
    revision,
    namespaces: new Map([[defaultNamespace.name, defaultNamespace]]),
    pods: new Map(),
    objects: [],
  };
  for (const { key, value, modRevision } of items) {
    if (!key.startsWith(desiredPrefix)) continue;
    const o = value as DesiredObject;
    if (o.kind === 'Namespace') out.namespaces.set(o.name, namespaceOf(o));
    else if (o.kind === 'Pod') out.pods.set(`${o.namespace ?? 'default'}/${o.name}`, podOf(o, modRevision));
    else if (isPolicyKind(o.kind) || isServiceKind(o.kind)) out.objects.push(o);
  }
  return out;
}
