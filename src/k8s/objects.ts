// weir's records of what runs (the lab's pods and namespaces, the agent's services) as the v1
// objects an API server would answer with, for `weir get -o json|yaml`. Pure: any data source (the
// lab's state, the agent's store) can call them. Fields weir does not know are left out, never
// invented; field order follows the API's Go structs, as kubectl prints them.
import type { PodPort } from './core.js';

export interface V1ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  /** RFC 3339, seconds precision ("2024-05-01T12:00:00Z"). */
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Where a record's metadata comes from; `createdAt` is any Date-parsable time. */
export interface RecordMeta {
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  createdAt?: string;
}

export interface ContainerRecord {
  name: string;
  image?: string;
  ports?: PodPort[];
}

export interface PodRecord extends RecordMeta {
  namespace: string;
  /** The containers as applied; absent for records that did not keep them. */
  containers?: ContainerRecord[];
  node: string;
  ip: string;
  ip6?: string;
  /** Its workload runs (or it has none to run). */
  ready: boolean;
  /** Its node's phase: Pending while it waits (for its address, or for a runtime's weir-cni ADD). */
  phase?: 'Pending' | 'Running' | 'Failed';
}

export type NamespaceRecord = RecordMeta;

export interface ServicePortRecord {
  /** '' when the service's only port has no name. */
  name: string;
  protocol: string;
  port: number;
  targetPort: number | string;
  nodePort?: number;
}

/** The fields of a validated Service (src/service/api) that a v1 Service shows. */
export interface ServiceRecord {
  namespace: string;
  name: string;
  type: string;
  clusterIP?: string;
  clusterIPs: string[];
  ipFamilies: string[];
  ipFamilyPolicy: string;
  ports: ServicePortRecord[];
  selector?: Record<string, string>;
  sessionAffinity: string;
  affinityTimeoutSeconds: number;
  externalTrafficPolicy: string;
  internalTrafficPolicy: string;
}

export interface V1PodCondition {
  type: 'Initialized' | 'Ready' | 'ContainersReady' | 'PodScheduled';
  status: 'True' | 'False';
  lastProbeTime: null;
  lastTransitionTime?: string;
}

export interface V1Pod {
  apiVersion: 'v1';
  kind: 'Pod';
  metadata: V1ObjectMeta;
  spec: {
    containers?: {
      name: string;
      image?: string;
      ports?: { name?: string; containerPort: number; protocol: string }[];
    }[];
    nodeName: string;
  };
  status: {
    phase: 'Pending' | 'Running' | 'Failed';
    conditions: V1PodCondition[];
    hostIP?: string;
    hostIPs?: { ip: string }[];
    podIP: string;
    podIPs: { ip: string }[];
    startTime?: string;
  };
}

export interface V1Namespace {
  apiVersion: 'v1';
  kind: 'Namespace';
  metadata: V1ObjectMeta;
  status: { phase: 'Active' };
}

export interface V1Service {
  apiVersion: 'v1';
  kind: 'Service';
  metadata: V1ObjectMeta;
  spec: {
    ports?: {
      name?: string;
      protocol: string;
      port: number;
      targetPort: number | string;
      nodePort?: number;
    }[];
    selector?: Record<string, string>;
    clusterIP?: string;
    clusterIPs?: string[];
    type: string;
    sessionAffinity: string;
    externalTrafficPolicy?: string;
    sessionAffinityConfig?: { clientIP: { timeoutSeconds: number } };
    ipFamilies?: string[];
    ipFamilyPolicy: string;
    internalTrafficPolicy: string;
  };
  status: { loadBalancer: Record<string, never> };
}

export interface V1List<T> {
  apiVersion: 'v1';
  items: T[];
  kind: 'List';
  metadata: { resourceVersion: '' };
}

/** Kubernetes' timestamp form: RFC 3339 in UTC, whole seconds. */
export function k8sTime(t: string | undefined): string | undefined {
  if (t === undefined) return undefined;
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const nonEmpty = (m: Record<string, string> | undefined) => (m && Object.keys(m).length > 0 ? m : undefined);

function meta(r: RecordMeta, namespace?: string): V1ObjectMeta {
  const created = k8sTime(r.createdAt);
  const labels = nonEmpty(r.labels);
  const annotations = nonEmpty(r.annotations);
  return {
    name: r.name,
    ...(namespace === undefined ? {} : { namespace }),
    ...(r.uid ? { uid: r.uid } : {}),
    ...(created ? { creationTimestamp: created } : {}),
    ...(labels ? { labels } : {}),
    ...(annotations ? { annotations } : {}),
  };
}

/** A lab pod as a v1 Pod; `host` is its node's addresses (status.hostIP/hostIPs). */
export function podObject(p: PodRecord, host?: { ip: string; ip6?: string }): V1Pod {
  const created = k8sTime(p.createdAt);
  const state = p.ready ? 'True' : 'False';
  // Scheduling and init happen when the lab creates the pod; readiness has no recorded time.
  const condition = (
    type: V1PodCondition['type'],
    status: 'True' | 'False',
    at?: string,
  ): V1PodCondition => ({
    type,
    status,
    lastProbeTime: null,
    ...(at ? { lastTransitionTime: at } : {}),
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: meta(p, p.namespace),
    spec: {
      ...(p.containers
        ? {
            containers: p.containers.map((c) => ({
              name: c.name,
              ...(c.image === undefined ? {} : { image: c.image }),
              ...(c.ports && c.ports.length > 0
                ? {
                    ports: c.ports.map((x) => ({
                      ...(x.name === undefined ? {} : { name: x.name }),
                      containerPort: x.containerPort,
                      protocol: x.protocol,
                    })),
                  }
                : {}),
            })),
          }
        : {}),
      nodeName: p.node,
    },
    status: {
      phase: p.ready ? 'Running' : p.phase === 'Pending' ? 'Pending' : 'Failed',
      conditions: [
        condition('Initialized', 'True', created),
        condition('Ready', state),
        condition('ContainersReady', state),
        condition('PodScheduled', 'True', created),
      ],
      ...(host
        ? { hostIP: host.ip, hostIPs: [host.ip, ...(host.ip6 ? [host.ip6] : [])].map((ip) => ({ ip })) }
        : {}),
      podIP: p.ip,
      podIPs: [p.ip, ...(p.ip6 ? [p.ip6] : [])].map((ip) => ({ ip })),
      ...(created ? { startTime: created } : {}),
    },
  };
}

export function namespaceObject(n: NamespaceRecord): V1Namespace {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: meta(n), status: { phase: 'Active' } };
}

/** A validated Service (with its allocated clusterIPs and nodePorts) as a v1 Service. */
export function serviceObject(s: ServiceRecord, m: Omit<RecordMeta, 'name'> = {}): V1Service {
  const nodePort = s.type === 'NodePort';
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta({ ...m, name: s.name }, s.namespace),
    spec: {
      ...(s.ports.length > 0
        ? {
            ports: s.ports.map((p) => ({
              ...(p.name ? { name: p.name } : {}),
              protocol: p.protocol,
              port: p.port,
              targetPort: p.targetPort,
              ...(p.nodePort === undefined ? {} : { nodePort: p.nodePort }),
            })),
          }
        : {}),
      ...(s.selector ? { selector: s.selector } : {}),
      ...(s.clusterIPs.length > 0 ? { clusterIP: s.clusterIPs[0], clusterIPs: s.clusterIPs } : {}),
      type: s.type,
      sessionAffinity: s.sessionAffinity,
      ...(nodePort ? { externalTrafficPolicy: s.externalTrafficPolicy } : {}),
      ...(s.sessionAffinity === 'ClientIP'
        ? { sessionAffinityConfig: { clientIP: { timeoutSeconds: s.affinityTimeoutSeconds } } }
        : {}),
      ...(s.ipFamilies.length > 0 ? { ipFamilies: s.ipFamilies } : {}),
      ipFamilyPolicy: s.ipFamilyPolicy,
      internalTrafficPolicy: s.internalTrafficPolicy,
    },
    status: { loadBalancer: {} },
  };
}

/** kubectl's answer to a `get` of many objects. */
export function v1List<T>(items: T[]): V1List<T> {
  return { apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } };
}
