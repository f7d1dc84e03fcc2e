// Reading desired state: the typed view of weir/desired/v1/… that agents reconcile from and the
// API validates against (Namespaces with their labels, Pods with their node, ports and
// annotations, and the policy and service objects as stored).
import {
  podByRuntime,
  podContainers,
  podPorts,
  podRunsWorkload,
  podTerminating,
  type Pod,
  type PodPort,
} from '../k8s/core.js';
import { isPolicyKind } from '../policy/api/index.js';
import { isServiceKind } from '../service/api/index.js';
import { isGatewayKind } from '../gateway/api.js';
import type { Informer, InformerChange } from './informer.js';
import { desiredPrefix, refOfDesiredKey } from './keys.js';
import type { DesiredObject, NamespaceInfo } from './objects.js';

export const nsNameLabel = 'kubernetes.io/metadata.name';

/** The default namespace exists without being applied (and cannot be deleted). */
export const defaultNamespace: NamespaceInfo = { name: 'default', labels: { [nsNameLabel]: 'default' } };

export interface DesiredPod {
  namespace: string;
  name: string;
  uid?: string;
  createdAt?: string;
  annotations?: Record<string, string>;
  containers: { name: string; image?: string; ports: PodPort[] }[];
  /** spec.nodeName (the API fills it in when absent). */
  node: string;
  labels: Record<string, string>;
  ports: PodPort[];
  noWorkload: boolean;
  terminating: boolean;
  /** Annotated weir.dev/runtime: "cni": a container runtime creates it (through an attachment). */
  byRuntime?: true;
  /** The modRevision of its desired object: a change of the object changes it. */
  revision: number;
  file?: string;
}

/**
 * A container a runtime attached through weir-cni (ADD), kept as desired state under
 * weir/desired/v1/CniAttachment/<namespace>/<name> (the pod's namespace and name from CNI_ARGS):
 * the node named here creates its endpoint in the container's netns and removes it on DEL.
 */
export const attachmentKind = 'CniAttachment';
export interface CniAttachment {
  containerId: string;
  ifname: string;
  /** CNI_NETNS as the runtime gave it. */
  netns: string;
  /** The same netns as the agent can open it while the ADD waits (the plugin's open descriptor). */
  netnsPath: string;
  /** The netns's inode when the ADD came: a path that later names another namespace is refused. */
  netnsInode: number;
  node: string;
  createdAt: string;
}
export interface DesiredAttachment extends CniAttachment {
  namespace: string;
  name: string;
  revision: number;
}

function attachmentOf(o: DesiredObject, revision: number): DesiredAttachment {
  return { ...(o.object as CniAttachment), namespace: o.namespace ?? 'default', name: o.name, revision };
}

export interface DesiredState {
  /** The revision the state is complete up to. */
  revision: number;
  namespaces: Map<string, NamespaceInfo>;
  /** "ns/name" -> pod */
  pods: Map<string, DesiredPod>;
  /** Policies, Services, EndpointSlices (and kinds added later that agents enforce). */
  objects: DesiredObject[];
  /** "ns/name" -> the runtime's attachment (weir-cni). */
  attachments: Map<string, DesiredAttachment>;
}

interface Item {
  key: string;
  value: unknown;
  modRevision: number;
}

interface Meta {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  creationTimestamp?: string;
}

/** uid, creation time and annotations of an object's metadata, where present. */
function metaOf(meta: Meta | undefined) {
  const a = meta?.annotations;
  return {
    ...(meta?.uid ? { uid: meta.uid } : {}),
    ...(meta?.creationTimestamp ? { createdAt: meta.creationTimestamp } : {}),
    ...(a && Object.keys(a).length > 0 ? { annotations: a } : {}),
  };
}

export function namespaceOf(o: DesiredObject): NamespaceInfo {
  const meta = (o.object as { metadata?: Meta }).metadata;
  return { name: o.name, labels: { ...(meta?.labels ?? {}), [nsNameLabel]: o.name }, ...metaOf(meta) };
}

export function podOf(o: DesiredObject, revision: number): DesiredPod {
  const pod = o.object as Pod & { spec: { nodeName?: string } };
  return {
    namespace: o.namespace ?? 'default',
    name: o.name,
    ...metaOf(pod.metadata as Meta),
    containers: podContainers(pod),
    node: pod.spec?.nodeName ?? '',
    labels: pod.metadata?.labels ?? {},
    ports: podPorts(pod),
    noWorkload: !podRunsWorkload(pod),
    terminating: podTerminating(pod),
    ...(podByRuntime(pod) ? { byRuntime: true as const } : {}),
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
    attachments: new Map(),
  };
  for (const { key, value, modRevision } of items) {
    if (!key.startsWith(desiredPrefix)) continue;
    const o = value as DesiredObject;
    if (o.kind === 'Namespace') out.namespaces.set(o.name, namespaceOf(o));
    else if (o.kind === 'Pod') out.pods.set(`${o.namespace ?? 'default'}/${o.name}`, podOf(o, modRevision));
    else if (o.kind === attachmentKind)
      out.attachments.set(`${o.namespace ?? 'default'}/${o.name}`, attachmentOf(o, modRevision));
    else if (isPolicyKind(o.kind) || isServiceKind(o.kind) || isGatewayKind(o.kind)) out.objects.push(o);
  }
  return out;
}

/**
 * The desired state an informer on weir/desired/v1/ holds, kept current change by change: each
 * batch makes a new snapshot (maps copied, only the changed objects read again), so a reader that
 * holds one across awaits sees it whole, and nobody re-reads a thousand pods per change.
 */
export class DesiredView {
  private current: DesiredState;
  private objects = new Map<string, DesiredObject>();

  constructor(readonly informer: Informer) {
    this.current = this.rebuild();
    informer.onChange((c) => this.update(c));
  }

  get state(): DesiredState {
    return this.current;
  }

  private rebuild(): DesiredState {
    const s = desiredState(this.informer.values(), this.informer.revision);
    this.objects = new Map(
      this.informer
        .values<DesiredObject>()
        .filter(
          (i) => isPolicyKind(i.value.kind) || isServiceKind(i.value.kind) || isGatewayKind(i.value.kind),
        )
        .map((i) => [i.key, i.value]),
    );
    return s;
  }

  private update(c: InformerChange): void {
    if (c.resync) {
      this.current = this.rebuild();
      return;
    }
    const cur = this.current;
    const next: DesiredState = {
      revision: Math.max(cur.revision, c.revision),
      namespaces: cur.namespaces,
      pods: cur.pods,
      objects: cur.objects,
      attachments: cur.attachments,
    };
    let objectsChanged = false;
    for (const e of c.events) {
      const ref = refOfDesiredKey(e.key);
      if (!ref) continue;
      const o = e.value as DesiredObject | undefined;
      if (ref.kind === 'Namespace') {
        if (next.namespaces === cur.namespaces) next.namespaces = new Map(cur.namespaces);
        if (o) next.namespaces.set(ref.name, namespaceOf(o));
        else if (ref.name !== defaultNamespace.name) next.namespaces.delete(ref.name);
      } else if (ref.kind === 'Pod') {
        if (next.pods === cur.pods) next.pods = new Map(cur.pods);
        const key = `${ref.namespace ?? 'default'}/${ref.name}`;
        if (o) next.pods.set(key, podOf(o, c.revision));
        else next.pods.delete(key);
      } else if (ref.kind === attachmentKind) {
        if (next.attachments === cur.attachments) next.attachments = new Map(cur.attachments);
        const key = `${ref.namespace ?? 'default'}/${ref.name}`;
        if (o) next.attachments.set(key, attachmentOf(o, c.revision));
        else next.attachments.delete(key);
      } else if (isPolicyKind(ref.kind) || isServiceKind(ref.kind) || isGatewayKind(ref.kind)) {
        objectsChanged = true;
        if (o) this.objects.set(e.key, o);
        else this.objects.delete(e.key);
      }
    }
    if (objectsChanged) next.objects = [...this.objects.values()];
    this.current = next;
  }
}
