// Desired objects as the Store keeps them: the manifest as written (plus what the API filled in:
// a Pod's spec.nodeName, a Service's clusterIPs and nodePorts), with the file it came from for
// error messages, and the records agents report.
import type { Manifest } from '../k8s/manifest.js';
import type { PodPort } from '../k8s/core.js';
import { objectKey, type ObjectRef } from './keys.js';

export { objectKey };

export interface DesiredObject {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  /** The file it was applied from, for error messages. */
  file?: string;
  /** The object as written, validated by its kind (JSON). */
  object: unknown;
}

/** What a manifest is sent to the API as. */
export function toDesired(m: Manifest): DesiredObject {
  return {
    apiVersion: m.apiVersion,
    kind: m.kind,
    name: m.metadata.name,
    ...(m.metadata.namespace ? { namespace: m.metadata.namespace } : {}),
    file: m.file,
    object: m.raw,
  };
}

/** What a manifest is sent to the API as to delete it: its reference, without the object. */
export function toDeleteRef(m: Manifest): Omit<DesiredObject, 'object'> {
  return {
    apiVersion: m.apiVersion,
    kind: m.kind,
    name: m.metadata.name,
    ...(m.metadata.namespace ? { namespace: m.metadata.namespace } : {}),
    file: m.file,
  };
}

/** "Pod x/a" or "Namespace x": how errors name an object. */
export const refName = (o: ObjectRef) =>
  o.namespace ? `${o.kind} ${o.namespace}/${o.name}` : `${o.kind} ${o.name}`;

/** The outcome of one object of an apply or delete, kubectl style ("pod/a created"). */
export interface ChangeResult {
  /** lower-case kind / name: "pod/a", "namespace/x", "ciliumnetworkpolicy/p". */
  object: string;
  namespace?: string;
  action: 'created' | 'configured' | 'unchanged' | 'deleted' | 'not found';
}

export const resultName = (o: ObjectRef) => `${o.kind.toLowerCase()}/${o.name}`;

/** weir/state/nodes/v1/<node>: a node as its agent registers it. */
export interface NodeRecord {
  name: string;
  ip: string;
  ip6?: string;
  podCIDR: string;
  podCIDRv6?: string;
  /** Its address on the cluster's underlay (what other nodes reach it at). */
  underlayIP?: string;
  /** The node's network namespace (lab) on its machine. */
  netns: string;
  agentPid: number;
  startedAt: string;
}

/** weir/state/reconciled/v1/<node>: every desired change up to `revision` is in force on the node. */
export interface ReconciledRecord {
  node: string;
  revision: number;
}

/** weir/state/pods/v1/<ns>/<name>: a pod as the agent of its node runs it. */
export interface PodStatus {
  namespace: string;
  name: string;
  node: string;
  /** Pending: address allocated, being created; Running: created (ready says if it serves); Failed. */
  phase: 'Pending' | 'Running' | 'Failed';
  message?: string;
  ip: string;
  ip6?: string;
  netns: string;
  /** The host-side veth in the node's netns, where the pod's tc programs attach. */
  hostIfname: string;
  hostIfindex: number;
  cgroupPath: string;
  ready: boolean;
  noWorkload?: true;
  /** A runtime's container (weir-cni): its id, and the MAC of its interface. */
  runtime?: 'cni';
  containerId?: string;
  mac?: string;
  /** The modRevision of the desired Pod this status is for. */
  observedRevision: number;
}

/** A pod as `weir get pods` shows it: its desired labels and ports with its status. */
export interface PodInfo {
  namespace: string;
  name: string;
  /** Given by the API when the pod was created, with its creation time. */
  uid?: string;
  createdAt?: string;
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  /** The containers as applied (name, image, ports); `ports` is all of their ports in order. */
  containers: { name: string; image?: string; ports: PodPort[] }[];
  ports: PodPort[];
  node: string;
  phase: PodStatus['phase'];
  message?: string;
  ip: string;
  ip6?: string;
  netns: string;
  hostIfname: string;
  hostIfindex: number;
  cgroupPath: string;
  noWorkload?: true;
  terminating?: true;
  /** Created by a container runtime through weir-cni, and the container attached. */
  runtime?: 'cni';
  containerId?: string;
  ready: boolean;
}

export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  createdAt?: string;
}
