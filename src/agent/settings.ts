// The agent's settings: what the node's datapath was set up with. They are kept in the Store
// (weir/local/v1/<node>/settings): a restart without options keeps them; an option given changes
// them (the pinned maps were sized with them).
import type { LbMode } from '../datapath/loader.js';

/** Settings that must stay the same across restarts (the pinned maps were sized with them). */
export interface AgentSettings {
  policyMapMax: number;
  /** Cilium's `labels` syntax ("k8s:app k8s:!job-name"); empty = the default filter. */
  identityLabels: string;
  /** The datapath writes flow events (observability on). */
  flowEvents: boolean;
  /** Backend selection for new connections (Cilium's --bpf-lb-algorithm). */
  lbAlgorithm: 'random' | 'maglev';
  /** M, the entries of every Maglev table (a prime of Cilium's list). */
  maglevTableSize: number;
  /** Cluster-wide Maglev hash seed, 12 bytes in base64 (Cilium's --bpf-lb-maglev-hash-seed). */
  maglevSeed: string;
  /** Where ClusterIPs are allocated from. */
  serviceCIDR: string;
  /** Where IPv6 ClusterIPs are allocated from; '' = none (an IPv4-only cluster). */
  serviceCIDRv6: string;
  /** NodePort from outside: the backend sees the node (snat) or the client (dsr); --lb-mode. */
  lbMode: LbMode;
  /**
   * East-west services at the socket (cgroup hooks on the node's and every pod's cgroup; Cilium's
   * --bpf-lb-sock). Off: every packet to a ClusterIP is translated by the pods' tc programs.
   */
  socketLB: boolean;
}

export const defaultSettings: AgentSettings = {
  policyMapMax: 16384,
  identityLabels: '',
  flowEvents: true,
  lbAlgorithm: 'random',
  maglevTableSize: 16381,
  maglevSeed: 'JLfvgnHc2kaSUFaI',
  serviceCIDR: '10.96.0.0/16',
  serviceCIDRv6: 'fd00:10:96::/112',
  lbMode: 'snat',
  socketLB: true,
};

/** The stored settings, overridden by those given. */
export function mergeSettings(
  stored: Partial<AgentSettings> | undefined,
  given: Partial<AgentSettings>,
): AgentSettings {
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  return { ...defaultSettings, ...stored, ...defined };
}
