// Where the inspection commands get their data: the lab's agent (endpoints, identities, pods) over
// its API, and the node's pinned maps read directly, so `weir bpf ...` works while no agent runs
// (pods are then found in the kernel: each host veth's alias names its pod).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { agentClient } from '../../agent/client.js';
import type { PodInfo } from '../../cluster/objects.js';
import type { EndpointStatus } from '../../agent/agent.js';
import { nodePinDir } from '../../agent/paths.js';
import { BpfMap, TypedMap, u32 } from '../../bpf/index.js';
import { checkKind, openPinned, policyPinName, type PinnedMapName } from '../../datapath/maps/catalog.js';
import { CtMap } from '../../datapath/maps/ct/index.js';
import { EndpointsMap } from '../../datapath/maps/endpoints/index.js';
import { IpcacheMap } from '../../datapath/maps/ipcache/index.js';
import { MetricsMap } from '../../datapath/maps/metrics/index.js';
import { PolicyMap } from '../../datapath/maps/policy/index.js';
import type { Identity } from '../../identity/allocator.js';
import { IDENTITY_ANY, reservedIdentities, reservedLabels } from '../../identity/reserved.js';
import { Lab, PodDriver, nodeNamed, type NodeInfo } from '../../lab/index.js';
import { WeirError } from '../../shared/errors.js';

export type { EndpointStatus };

const agent = (lab: string, timeoutMs?: number) => agentClient(lab, timeoutMs);

export async function agentEndpoints(lab: string): Promise<EndpointStatus[]> {
  return (await agent(lab).call<{ items: EndpointStatus[] }>('GET', '/v1/endpoints')).items;
}

/** The reserved identities, then every identity the agent has allocated. */
export async function agentIdentities(lab: string, timeoutMs?: number): Promise<Identity[]> {
  const { items } = await agent(lab, timeoutMs).call<{ items: Identity[] }>('GET', '/v1/identities');
  const reserved = [...reservedIdentities.keys()].map((id) => ({ id, labels: reservedLabels(id).sort() }));
  return [...reserved, ...items.filter((i) => !reservedIdentities.has(i.id))];
}

/**
 * Labels of the given identities: reserved ones from the table, the others from the agent when it
 * answers within a second (else they stay unknown and the caller shows the number).
 */
export async function identityLabels(lab: string, ids: Iterable<number>): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  let needAgent = false;
  for (const id of ids) {
    if (id === IDENTITY_ANY) continue;
    if (reservedIdentities.has(id)) out.set(id, reservedLabels(id).sort());
    else needAgent = true;
  }
  if (!needAgent) return out;
  try {
    for (const i of await agentIdentities(lab, 1000)) out.set(i.id, i.labels);
  } catch (err) {
    if (!(err instanceof WeirError && err.code.startsWith('ERR_AGENT_'))) throw err;
  }
  return out;
}

/** The lab's node (the pins live under the node's name): the first, or env WEIR_NODE's. */
export async function labNode(lab: string): Promise<NodeInfo> {
  const cfg = await (await Lab.open(lab)).config();
  if (!cfg) throw new WeirError('ERR_LAB_NOT_UP', `lab ${lab} has no node (run 'weir lab up --lab ${lab}')`);
  return nodeNamed(cfg, process.env.WEIR_NODE || undefined);
}

/** A pod and its host veth. */
export interface PodRef {
  namespace: string;
  name: string;
  hostIfname: string;
  hostIfindex: number;
}

/**
 * The node's pods with their host veths: from the agent when it answers, else from the kernel (the
 * veths' aliases name their pods), so `weir bpf` needs no agent.
 */
export async function labPods(lab: string): Promise<PodRef[]> {
  try {
    const node = (await labNode(lab)).name;
    const { items } = await agentClient(lab, 1000).call<{ items: PodInfo[] }>('GET', '/v1/pods');
    return items.filter((p) => p.hostIfindex > 0 && p.node === node);
  } catch (err) {
    if (!(err instanceof WeirError)) throw err;
  }
  const cfg = await (await Lab.open(lab)).config();
  if (!cfg) return [];
  return new PodDriver(cfg, nodeNamed(cfg, process.env.WEIR_NODE || undefined)).list();
}

/** What the inspection of one node knows besides its maps: the node and (when asked for) its pods. */
export interface NodeContext {
  lab: string;
  node: NodeInfo;
  pods: PodRef[];
}

/** The node's pinned datapath maps, opened read-write from their pins; close() releases them. */
export class NodeMaps {
  private readonly open: BpfMap[] = [];

  private constructor(
    readonly lab: string,
    readonly pinDir: string,
  ) {}

  static async forLab(
    lab: string,
    opts: { pods?: boolean } = {},
  ): Promise<{ maps: NodeMaps; ctx: NodeContext }> {
    const node = await labNode(lab);
    const pods = opts.pods ? await labPods(lab) : [];
    return { maps: new NodeMaps(lab, nodePinDir(lab, node.name)), ctx: { lab, node, pods } };
  }

  /** The pin of a catalogue map, of the declared kind; ERR_CLI_NO_DATAPATH when it is absent. */
  pin(name: PinnedMapName | `policy_${number}`): BpfMap {
    const path = join(this.pinDir, name);
    if (!existsSync(path))
      throw new WeirError(
        'ERR_CLI_NO_DATAPATH',
        `lab ${this.lab} has no pinned ${name} (${path}); the agent has not loaded the datapath`,
        { location: { file: path } },
      );
    const map = openPinned(this.pinDir, name);
    this.open.push(map);
    return map;
  }

  ipcache = () => new IpcacheMap(this.pin('weir_ipcache'));
  endpoints = () => new EndpointsMap(this.pin('weir_endpoints'));
  ct = () => new CtMap(this.pin('weir_ct'));
  metrics = () => new MetricsMap(this.pin('weir_metrics'));

  /**
   * The endpoint's policy map: its pin, or the inner map weir_policy points to. An endpoint
   * without one (no entry in weir_policy) is ERR_CLI_NOT_FOUND; a map that cannot be read is the
   * kernel's error, naming the map and the errno.
   */
  policy(endpointId: number): PolicyMap {
    const pinned = policyPinName(endpointId);
    if (existsSync(join(this.pinDir, pinned)))
      return new PolicyMap(this.pin(pinned as `policy_${number}`), endpointId);
    const mapId = new TypedMap(this.pin('weir_policy'), u32(), u32()).lookup(endpointId);
    if (mapId === undefined)
      throw new WeirError(
        'ERR_CLI_NOT_FOUND',
        `endpoint ${endpointId} has no policy map in lab ${this.lab}`,
        {
          location: { object: `endpoint ${endpointId}` },
        },
      );
    const map = BpfMap.fromId(mapId);
    this.open.push(map);
    checkKind(map, pinned, `weir_policy[${endpointId}]`);
    return new PolicyMap(map, endpointId);
  }

  close(): void {
    for (const m of this.open.splice(0)) m.close();
  }
}

/** Runs `fn` on the lab's pinned maps and closes them after; `pods` looks the node's pods up first. */
export async function withNodeMaps<T>(
  lab: string,
  fn: (maps: NodeMaps, ctx: NodeContext) => T,
  opts: { pods?: boolean } = {},
): Promise<T> {
  const { maps, ctx } = await NodeMaps.forLab(lab, opts);
  try {
    return fn(maps, ctx);
  } finally {
    maps.close();
  }
}

/**
 * An endpoint id from 'ns/pod' (the pod's host veth, looked up in weir_endpoints) or a number.
 * Reads the maps only, so it works without an agent.
 */
export function resolveEndpointId(target: string, maps: NodeMaps, ctx: NodeContext): number {
  if (/^\d+$/.test(target)) {
    const id = Number(target);
    if (id < 1 || id > 0xffff)
      throw new WeirError('ERR_CLI_ARGUMENT', `endpoint id ${target} is not within 1..65535`, {
        location: { field: 'endpoint' },
      });
    return id;
  }
  const [namespace, name] = target.includes('/') ? target.split('/', 2) : ['default', target];
  const pod = ctx.pods.find((p) => p.namespace === namespace && p.name === name);
  if (!pod)
    throw new WeirError(
      'ERR_CLI_NOT_FOUND',
      `no pod '${target}' in lab ${ctx.lab} (give ns/pod or an endpoint id)`,
      { location: { object: `pod ${target}`, field: 'endpoint' } },
    );
  const ep = maps.endpoints().get(pod.hostIfindex);
  if (!ep)
    throw new WeirError(
      'ERR_CLI_NOT_FOUND',
      `pod ${target} has no endpoint in weir_endpoints (ifindex ${pod.hostIfindex}); the agent has not attached it`,
      { location: { object: `pod ${target}` } },
    );
  return ep.endpointId;
}
