// `weir policy diff`: which connections change verdict between two computed policies (before: what
// is in force, after: with the files applied, replacing every policy, or deleted). Pure: it takes
// the engine's two outputs and the pods, and enumerates every ordered pair of pods (never a pod to
// itself) × every port the destination declares (containerPorts, TCP/UDP/SCTP); with `entities`,
// also world and host as peers (to and from every pod; towards them, every port some pod declares).
// Each connection is judged in both outputs by connectionVerdict() (the datapath's lookups: the
// source's egress, the destination's ingress); identities are each output's own, so the two
// computations need not share an allocator.
import { IDENTITY_HOST, IDENTITY_WORLD } from '../identity/reserved.js';
import type { EngineOutput } from './engine.js';
import { protocolNumbers } from './entry.js';
import { connectionVerdict, EntryIndex, verdictRule, type VerdictPeer } from './verdict.js';

export type DiffProtocol = 'TCP' | 'UDP' | 'SCTP';

export interface DiffPort {
  port: number;
  protocol: DiffProtocol;
}

/** A pod of the node: "ns/name", its endpoint id in both outputs, the ports it declares. */
export interface DiffPod {
  name: string;
  endpointId: number;
  ports: DiffPort[];
}

export interface VerdictDiffInput {
  pods: DiffPod[];
  before: EngineOutput;
  after: EngineOutput;
  /** Also world and host as peers. */
  entities?: boolean;
}

export interface VerdictChange {
  from: string;
  to: string;
  port: number;
  protocol: DiffProtocol;
  before: 'allowed' | 'denied';
  after: 'allowed' | 'denied';
  /** The rule that decides before and after (formatRuleRef, or "ingress: default deny", …). */
  beforeRule: string;
  afterRule: string;
}

export interface VerdictDiff {
  changes: VerdictChange[];
  /** Connections judged whose verdict stays the same. */
  unchanged: number;
}

interface Peer {
  name: string;
  endpointId?: number;
  /** Identity of a non-pod peer (the same in both outputs: reserved). */
  identity?: number;
  ports: DiffPort[];
}

const protoOrder: Record<DiffProtocol, number> = { TCP: 0, UDP: 1, SCTP: 2 };

function uniquePorts(ports: readonly DiffPort[]): DiffPort[] {
  const seen = new Map<string, DiffPort>();
  for (const p of ports) seen.set(`${p.protocol}/${p.port}`, { port: p.port, protocol: p.protocol });
  return [...seen.values()].sort(
    (a, b) => protoOrder[a.protocol] - protoOrder[b.protocol] || a.port - b.port,
  );
}

function peerIn(out: EngineOutput, p: Peer): VerdictPeer | undefined {
  if (p.endpointId === undefined) return { identity: p.identity ?? IDENTITY_WORLD };
  const pol = out.endpoints.get(p.endpointId);
  return pol ? { identity: pol.identity, endpointId: p.endpointId } : undefined;
}

export function verdictDiff(input: VerdictDiffInput): VerdictDiff {
  const pods: Peer[] = [...input.pods]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((p) => ({ name: p.name, endpointId: p.endpointId, ports: uniquePorts(p.ports) }));
  const peers: Peer[] = [...pods];
  if (input.entities) {
    const all = uniquePorts(pods.flatMap((p) => p.ports));
    peers.push({ name: 'host', identity: IDENTITY_HOST, ports: all });
    peers.push({ name: 'world', identity: IDENTITY_WORLD, ports: all });
  }
  // Only the identities asked about are indexed (pods, world, host), per output.
  const indexFor = (out: EngineOutput) => {
    const ids = new Set<number>(peers.map((p) => peerIn(out, p)?.identity ?? 0));
    return new EntryIndex(ids);
  };
  const ixBefore = indexFor(input.before);
  const ixAfter = indexFor(input.after);
  const changes: VerdictChange[] = [];
  let unchanged = 0;
  for (const from of peers) {
    const srcBefore = peerIn(input.before, from);
    const srcAfter = peerIn(input.after, from);
    if (!srcBefore || !srcAfter) continue;
    for (const to of peers) {
      // Pod to pod, or an entity with a pod; never a peer to itself.
      if (to === from || (from.endpointId === undefined && to.endpointId === undefined)) continue;
      const dstBefore = peerIn(input.before, to);
      const dstAfter = peerIn(input.after, to);
      if (!dstBefore || !dstAfter) continue;
      for (const { port, protocol } of to.ports) {
        const proto = protocolNumbers[protocol] as number;
        const b = connectionVerdict(input.before, srcBefore, dstBefore, proto, port, ixBefore);
        const a = connectionVerdict(input.after, srcAfter, dstAfter, proto, port, ixAfter);
        if (a.allowed === b.allowed) {
          unchanged++;
          continue;
        }
        changes.push({
          from: from.name,
          to: to.name,
          port,
          protocol,
          before: b.allowed ? 'allowed' : 'denied',
          after: a.allowed ? 'allowed' : 'denied',
          beforeRule: verdictRule(b),
          afterRule: verdictRule(a),
        });
      }
    }
  }
  return { changes, unchanged };
}
