// The cluster's flows as Hubble Relay serves them, for every client of the agents' flow API (`weir
// observe`, `weir ui`): the lab's nodes as GET /v1/nodes lists them, each node's agent asked at
// once, their flows merged in time order (merge.ts). A finished query sorts everything and keeps
// the newest --last; a followed one goes through FlowMerger. One named node: only its agent. A
// node that cannot answer is reported (`onNodeError`) and the others still relayed; only when every
// node fails does the relay fail.
import { AgentClient, agentSocketOf } from '../agent/client.js';
import { DEFAULT_LAST, toSearchParams, type FlowQuery } from './filters.js';
import type { Flow, FlowsLine, LostEvents } from './flow.js';
import { FlowMerger, mergeFlows } from './merge.js';

/** A node of the lab as GET /v1/nodes lists it (the fields the relay needs). */
export interface RelayNode {
  name: string;
  status?: string;
}

/** The agent client of `node` (undefined: the lab's first node); throws ERR_LAB_NODE_NOT_FOUND. */
export function nodeClient(lab: string, node: string | undefined, timeoutMs?: number): AgentClient {
  return new AgentClient(agentSocketOf(lab, node), timeoutMs);
}

/**
 * The nodes whose agents serve flows: every node GET /v1/nodes lists, or `[undefined]` (the lab's
 * only agent) when it lists one or none.
 */
export async function clusterNodes(lab: string): Promise<(string | undefined)[]> {
  const { items } = await nodeClient(lab, undefined, 10_000).call<{ items: RelayNode[] }>('GET', '/v1/nodes');
  return items.length > 1 ? items.map((n) => n.name) : [undefined];
}

export interface RelayOptions {
  lab: string;
  /** Only this node's flows (else every node's). */
  node?: string;
  query: FlowQuery;
  signal?: AbortSignal;
  onFlow(flow: Flow): void;
  /** A node's lost events; `node` is set when several nodes are relayed. */
  onLost?(lost: LostEvents, node?: string): void;
  /** A node that could not answer (the others are still relayed). */
  onNodeError?(node: string, err: Error): void;
  /** How long a followed flow is held for older ones of slower nodes (ms). */
  windowMs?: number;
}

/** Relays the query's flows until they end (or `signal` aborts a followed query). */
export async function relayFlows(o: RelayOptions): Promise<void> {
  const nodes = o.node ? [o.node] : await clusterNodes(o.lab);
  const path = `/v1/flows?${toSearchParams(o.query).toString()}`;
  const several = nodes.length > 1;
  const onLine = (line: FlowsLine, node: string | undefined, flow: (f: Flow) => void) => {
    if ('flow' in line) flow(line.flow);
    else if ('lost_events' in line) o.onLost?.(line.lost_events, several ? node : undefined);
  };
  if (!several && o.query.follow) {
    await streamNodes(o, nodes, path, (line, node) => onLine(line, node, o.onFlow));
  } else if (o.query.follow) {
    const merger = new FlowMerger(o.onFlow, o.windowMs);
    try {
      await streamNodes(o, nodes, path, (line, node) => onLine(line, node, (f) => merger.push(f)));
    } finally {
      merger.flush();
    }
  } else {
    // One node's too: the proxy's threads hand their L7 records over in batches, so a node's own
    // flows may arrive a few milliseconds out of order.
    const perNode = nodes.map(() => [] as Flow[]);
    await streamNodes(o, nodes, path, (line, node, i) => onLine(line, node, (f) => perNode[i]?.push(f)));
    const last = several
      ? (o.query.last ?? (o.query.since === undefined ? DEFAULT_LAST : undefined))
      : undefined;
    for (const flow of mergeFlows(perNode, last)) o.onFlow(flow);
  }
}

/** Streams `path` from every node's agent at once. */
async function streamNodes(
  o: RelayOptions,
  nodes: (string | undefined)[],
  path: string,
  onLine: (line: FlowsLine, node: string | undefined, index: number) => void,
): Promise<void> {
  const results = await Promise.allSettled(
    nodes.map((node, i) =>
      nodeClient(o.lab, node).stream(
        path,
        (text) => onLine(JSON.parse(text) as FlowsLine, node, i),
        o.signal,
      ),
    ),
  );
  const failed = results.flatMap((r, i) =>
    r.status === 'rejected' ? [{ node: nodes[i], err: r.reason }] : [],
  );
  if (nodes.length === 1 && failed[0]) throw failed[0].err;
  for (const f of failed) o.onNodeError?.(f.node ?? '', f.err as Error);
  if (failed.length === nodes.length) throw failed[0]?.err;
}

/**
 * One GET of every node's agent at once (e.g. /v1/endpoints): each answer with its node, the
 * nodes that failed apart. One node: its answer with `node` undefined.
 */
export async function askEveryNode<T>(
  lab: string,
  path: string,
): Promise<{ answers: { node: string | undefined; body: T }[]; failed: { node: string; err: Error }[] }> {
  const nodes = await clusterNodes(lab);
  const results = await Promise.allSettled(nodes.map((n) => nodeClient(lab, n, 10_000).call<T>('GET', path)));
  const answers: { node: string | undefined; body: T }[] = [];
  const failed: { node: string; err: Error }[] = [];
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') answers.push({ node: nodes[i], body: r.value });
    else failed.push({ node: nodes[i] ?? '', err: r.reason as Error });
  });
  if (answers.length === 0 && failed[0]) throw failed[0].err;
  return { answers, failed };
}
