// The lab: a one-machine stand-in for Kubernetes nodes (network namespaces, veths, cgroups and a
// built-in workload). `Lab` brings a node and its externals up and down; `PodDriver` is what the
// node's agent creates, updates and removes pods with; probes and exec reach inside.
export { Lab, labDownAll, defaultLabName, type LabStatus } from './lab.js';
export { PodDriver, type PodSpec, type PodRuntime } from './pod.js';
export {
  attachContainer,
  containerAddresses,
  type AttachmentSpec,
  type AttachedContainer,
} from './attachment.js';
export { isCluster, nodeNamed, nodeOf, nodesOf, routingOf, type NodeInfo, type Logger } from './node.js';
export { underlayDevice, underlayAddress, underlayGateway } from './underlay.js';
export { externalsOf, type ExternalInfo } from './external.js';
export { podRef } from './exec.js';
export {
  probe,
  resolveTarget,
  type HttpProbeRequest,
  type ProbeOptions,
  type ProbeResult,
  type ProbeTarget,
  type RequestEcho,
} from './probe.js';
export {
  loadLabSpec,
  parseLabSpec,
  withNodeCount,
  maxNodes,
  underlayCidr,
  transitCidr,
  type LabSpec,
  type NodeSpec,
  type ExternalSpec,
} from './spec.js';
export { findCgroup2 } from './cgroup.js';
export { ensureProxyRouting } from './proxy-routing.js';
export { syncGatewayAddresses, gatewayCidr } from './gateway.js';
export { listLabs, readConfig, type LabConfig } from './config.js';
export { labDir, podNetns, vethName, podVeth, nodeNetns, underlayNetns } from './names.js';
export { host4, host6, parseCidr4, parseCidr6, size4 } from './cidr.js';
export {
  ensureVxlan,
  removeVxlan,
  addTunnelRoute,
  vxlanDevice,
  VXLAN_PORT,
  VXLAN_OVERHEAD,
} from './vxlan.js';
