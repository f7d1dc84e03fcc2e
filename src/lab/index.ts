// The lab: a one-machine stand-in for a Kubernetes node (network namespaces, veths, cgroups and a
// built-in workload), used by the CLI, the agent's tests, conformance and the benchmarks.
export {
  Lab,
  labDownAll,
  defaultLabName,
  vethName,
  podNetns,
  podReady,
  type PodInfo,
  type NodeInfo,
  type ExternalInfo,
  type ApplyOptions,
  type DeleteOptions,
  type ApplyResult,
  type LabStatus,
  type Logger,
} from './lab.js';
export { probe, resolveTarget, type ProbeOptions, type ProbeResult, type ProbeTarget } from './probe.js';
export {
  loadLabSpec,
  parseLabSpec,
  transitCidr,
  type LabSpec,
  type NodeSpec,
  type ExternalSpec,
} from './spec.js';
export { findCgroup2 } from './cgroup.js';
export { ensureProxyRouting } from './proxy-routing.js';
export { listLabs } from './state.js';
export type { LabState, PodState, NodeState, ExternalState, NamespaceState } from './state.js';
