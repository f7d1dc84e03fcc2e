// The agent's persisted state: the policy objects applied to it, the identity allocator's state and
// the endpoint ids it handed out. Saved atomically (tmp + rename) after every change, so a restarted
// agent resumes with the same identities and endpoint ids and rewrites nothing in the kernel.
// `revision` counts changes made through the Store's methods, so callers can skip saving when
// nothing changed (the state can be large: every CIDR identity and policy object).
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LbMode } from '../datapath/loader.js';
import { WeirError } from '../shared/errors.js';
import { privateDirSync, privateFileMode } from '../shared/private-fs.js';

export interface StoredObject {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  /** The file it was applied from, for error messages and `weir get`. */
  file?: string;
  object: unknown;
}

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
  /**
   * Ports of the node proxy's listeners (Cilium's proxy port range, 10000-20000): the HTTP ingress
   * listener takes the first, the HTTP egress listener the second; policy entries name them.
   */
  proxyPortRange: string;
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
  proxyPortRange: '10000-20000',
};

export interface AgentState {
  version: 1;
  settings?: AgentSettings;
  objects: StoredObject[];
  identities: unknown;
  /** "namespace/pod" -> endpoint id */
  endpointIds: Record<string, number>;
  nextEndpointId: number;
  /** Service load balancing's stable ids: backend "addr:port/PROTO" and frontend -> number. */
  lb?: { backends: Record<string, number>; revNat: Record<string, number> };
}

export const objectKey = (o: { kind: string; namespace?: string; name: string }) =>
  `${o.kind}/${o.namespace ? `${o.namespace}/` : ''}${o.name}`;

export class Store {
  state: AgentState;
  #revision = 0;

  /** Advances on every change made through settings(), endpointId() and releaseEndpoint(). */
  get revision(): number {
    return this.#revision;
  }

  constructor(readonly path: string) {
    this.state = Store.read(path);
  }

  private static read(path: string): AgentState {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return { version: 1, objects: [], identities: undefined, endpointIds: {}, nextEndpointId: 1 };
      throw err;
    }
    try {
      const state = JSON.parse(text) as AgentState;
      if (state.version !== 1) throw new Error(`unknown version ${String(state.version)}`);
      return state;
    } catch (err) {
      throw new WeirError('ERR_AGENT_STATE', `cannot read agent state ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  save(): void {
    privateDirSync(dirname(this.path));
    const tmp = `${this.path}.tmp`;
    rmSync(tmp, { force: true }); // a leftover would keep its old mode
    writeFileSync(tmp, JSON.stringify(this.state), { mode: privateFileMode });
    renameSync(tmp, this.path);
  }

  /** The stored settings, overridden by those given (which are then stored). */
  settings(given: Partial<AgentSettings>): AgentSettings {
    const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
    this.state.settings = { ...defaultSettings, ...this.state.settings, ...defined };
    this.#revision++;
    return this.state.settings;
  }

  endpointId(podKey: string): number {
    let id = this.state.endpointIds[podKey];
    if (id === undefined) {
      id = this.state.nextEndpointId++;
      this.state.endpointIds[podKey] = id;
      this.#revision++;
    }
    return id;
  }

  releaseEndpoint(podKey: string): void {
    delete this.state.endpointIds[podKey];
    this.#revision++;
  }
}
