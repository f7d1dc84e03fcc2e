// The validated shapes of Service (v1) and EndpointSlice (discovery.k8s.io/v1): only the fields
// weir's load balancer reads, with Kubernetes' defaults filled in.

export type ServiceProtocol = 'TCP' | 'UDP';
export type ServiceType = 'ClusterIP' | 'NodePort';
export type TrafficPolicy = 'Cluster' | 'Local';
export type IPFamily = 'IPv4' | 'IPv6';
export type IPFamilyPolicy = 'SingleStack' | 'PreferDualStack' | 'RequireDualStack';

export interface ServicePort {
  /** Required (and unique) when the service has more than one port; '' otherwise. */
  name: string;
  protocol: ServiceProtocol;
  port: number;
  /** A number, or a container port NAME resolved per backend pod. Defaults to `port`. */
  targetPort: number | string;
  /** type NodePort only; allocated from 30000-32767 when absent. */
  nodePort?: number;
}

export interface Service {
  namespace: string;
  name: string;
  type: ServiceType;
  /** clusterIPs[0]: the primary address, 'None' (headless: no frontend) or undefined (to allocate). */
  clusterIP?: string;
  /**
   * One address per family, in ipFamilies' order (canonical text), or ['None'] (headless); empty
   * until allocated. The allocator fills what is missing.
   */
  clusterIPs: string[];
  /** As given, else the families of the given clusterIPs; empty: the allocator decides (IPv4 first). */
  ipFamilies: IPFamily[];
  /** Kubernetes' default: SingleStack. */
  ipFamilyPolicy: IPFamilyPolicy;
  ports: ServicePort[];
  /** Absent: backends come only from EndpointSlices applied by hand. */
  selector?: Record<string, string>;
  sessionAffinity: 'None' | 'ClientIP';
  /** sessionAffinityConfig.clientIP.timeoutSeconds (Kubernetes' default 10800). */
  affinityTimeoutSeconds: number;
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
}

export interface EndpointConditions {
  /** Kubernetes reads an absent `ready` as true. */
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

export interface SliceEndpoint {
  addresses: string[];
  conditions: EndpointConditions;
  nodeName?: string;
  /** "namespace/pod" of an endpoint derived from a lab pod (Kubernetes' targetRef). */
  pod?: string;
}

export interface SlicePort {
  name: string;
  protocol: ServiceProtocol;
  port: number;
}

export interface EndpointSlice {
  namespace: string;
  name: string;
  /** Label kubernetes.io/service-name: the service these endpoints back. */
  serviceName: string;
  addressType: IPFamily;
  endpoints: SliceEndpoint[];
  ports: SlicePort[];
}

export const serviceNameLabel = 'kubernetes.io/service-name';
export const defaultAffinityTimeout = 10800;
export const nodePortRange = { min: 30000, max: 32767 } as const;
