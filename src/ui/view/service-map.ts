// The live service map's model: peers (pods, world, host, CIDRs) and the flows between them folded
// into edges per (source, destination, verdict class), laid out deterministically (namespaces as
// columns in name order, pods in name order, outside peers in a last column) and drawn as SVG text.
// L7 flows (HTTP through the node proxy) fold into the same edges, which then also count their
// exchanges by method, path and status ("GET /public 200 ×5"). In a lab of several nodes each pod's
// box names the node it runs on (a second line and a stripe in that node's colour), and an edge
// between pods of different nodes says so (data-from-node / data-to-node, class cross-node).
//
// Labels are placed, never just drawn: each edge's label is tried at spots along its own path
// (the middle of its longest segment first; above or below a segment that runs across, beside one
// that runs down). A spot must overlap no pod box, drop badge, column title or label placed before
// it; among those, the first one that no other edge's line crosses wins (a label between other
// lines would be read as theirs), else the one crossed by the fewest. An edge with no free spot
// lists its label below the map instead, naming its pair. So no two labels overlap, and no label
// covers a box. The page gives the text measure of its own font (canvas measureText); the default
// estimates it.
// Pure: the page calls it, unit tests call it, nothing here touches the DOM.
import { httpKey, isDrop, peerOf, portProto, verdictOf, type Flow, type Peer } from './flow.js';

/**
 * How an edge is drawn: observed traffic (forwarded, dropped, audited: policy would deny it but
 * the endpoint audits, other verdicts), or a pending policy change (`policy diff`): connections
 * that would be allowed (added) or denied (removed) if the change were applied.
 */
export type EdgeClass = 'forwarded' | 'dropped' | 'audit' | 'added' | 'removed' | 'other';

export function edgeClass(verdict: string): EdgeClass {
  if (verdict === 'FORWARDED' || verdict === 'REDIRECTED') return 'forwarded';
  if (verdict === 'AUDIT') return 'audit';
  return isDrop(verdict) ? 'dropped' : 'other';
}

/** One connection of a pending diff (the agent's /v1/policy/diff, `weir policy diff -o json`). */
export interface PendingChange {
  from: string;
  to: string;
  port: number;
  protocol: string;
  before: 'allowed' | 'denied';
  after: 'allowed' | 'denied';
}

interface EdgeAgg {
  from: string;
  to: string;
  cls: EdgeClass;
  count: number;
  ports: Set<string>;
  /** HTTP exchanges (L7 responses) by "METHOD /path STATUS". */
  l7: Map<string, number>;
}

export interface NodeBox {
  peer: Peer;
  /** The node the pod runs on (a lab of several nodes), and that node's place in name order. */
  nodeName?: string;
  nodeIndex?: number;
  x: number;
  y: number;
  w: number;
  h: number;
  drops: number;
  flows: number;
}

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface EdgeLabel extends Rect {
  text: string;
  /** Listed below the map (no free spot along the edge); the text names the pair. */
  overflow: boolean;
}

export interface EdgeLine {
  from: string;
  to: string;
  cls: EdgeClass;
  count: number;
  ports: string[];
  /** HTTP exchanges, most frequent first: [method path status, count]. */
  l7: [string, number][];
  /** The nodes of the two pods, when both are known. */
  fromNode?: string;
  toNode?: string;
  /** SVG path data. */
  d: string;
  label: EdgeLabel;
}

export interface MapLayout {
  width: number;
  height: number;
  /** The height of the columns (the rest, below, lists labels that found no room). */
  bodyHeight: number;
  columns: { title: string; x: number; w: number }[];
  nodes: NodeBox[];
  edges: EdgeLine[];
}

export interface LayoutOptions {
  /** Width in px of a label's text at the labels' font (12px); default: an estimate. */
  measure?: (text: string) => number;
}

const COL_W = 190;
const COL_GAP = 120;
const NODE_W = 150;
const NODE_H = 36;
const ROW_H = 84;
const TOP = 60;
const MARGIN = 16;
const OUTSIDE = '';
/** A label's box: text height plus padding. */
const LABEL_H = 16;
const LABEL_PAD = 4;
/** Free space kept around boxes and between labels. */
const CLEAR = 3;

/** 12px sans-serif: about 7 px a character, wider for capitals and symbols. */
export function estimateWidth(text: string): number {
  let w = 0;
  for (const ch of text) w += /[A-Z0-9×✓✗•]/.test(ch) ? 8 : /[il.,:;|!' ]/.test(ch) ? 4 : 7;
  return w;
}

export class ServiceMap {
  private readonly peers = new Map<string, Peer>();
  private readonly edges = new Map<string, EdgeAgg>();
  private readonly drops = new Map<string, number>();
  private readonly flows = new Map<string, number>();
  /** Edges of the pending diff, apart from the traffic (kept when the flows are cleared). */
  private readonly pending = new Map<string, EdgeAgg>();
  /** The node each pod runs on (from the agents' endpoints). */
  private readonly podNodes = new Map<string, string>();
  /** Whether the flows are every node's (else one node's: `node` narrows the stream). */
  private everyNode = true;

  /**
   * Shows a pending policy change: one edge per pair whose connections would change, added (they
   * would be allowed) or removed (they would be denied), with the ports. Replaces the previous one;
   * an empty list clears it. Peers the map does not show yet are added (world, host: outside).
   */
  setPending(changes: readonly PendingChange[]): void {
    this.pending.clear();
    const peer = (key: string): Peer => {
      if (key === 'world' || key === 'host') return { key, label: key, namespace: '', kind: key };
      const [ns = '', name = key] = key.split('/');
      return { key, label: name, namespace: ns, kind: 'pod' };
    };
    for (const c of changes) {
      for (const k of [c.from, c.to]) if (!this.peers.has(k)) this.peers.set(k, peer(k));
      const cls: EdgeClass = c.after === 'allowed' ? 'added' : 'removed';
      const id = `${c.from}\u0000${c.to}\u0000${cls}`;
      let e = this.pending.get(id);
      if (!e)
        this.pending.set(
          id,
          (e = { from: c.from, to: c.to, cls, count: 0, ports: new Set(), l7: new Map() }),
        );
      e.count++;
      e.ports.add(`${c.port}/${c.protocol}`);
    }
  }

  /** A pod known from an agent's endpoints, shown even before it has traffic; `node`: where it runs. */
  addPod(namespace: string, pod: string, node?: string): void {
    const key = `${namespace}/${pod}`;
    if (!this.peers.has(key)) this.peers.set(key, { key, label: pod, namespace, kind: 'pod' });
    if (node) this.podNodes.set(key, node);
  }

  /**
   * Whether the flows folded in are every node's (the default) or one node's only. With every
   * node's, a pod's packet to a pod of another node is judged by that node's ingress, whose event
   * is in the stream too, so the sender's forwarded egress is left to it as for a local pod.
   */
  setEveryNode(every: boolean): void {
    this.everyNode = every;
  }

  /**
   * Folds one flow in. A reply counts on its request's edge, so a connection draws one arrow. A
   * packet between two local pods is seen twice, leaving one and entering the other: the edge shows
   * where it was decided, so a forwarded egress towards a local endpoint is left to the ingress
   * event that follows (otherwise a pair denied at ingress would also draw a green edge). An L7
   * flow is the proxy's verdict on a request wherever it was made: it always counts, and its
   * response adds the exchange to the edge's HTTP summary.
   */
  addFlow(f: Flow): void {
    const l7 = f.Type === 'L7' || f.weir?.type === 'l7';
    const judgedAtIngress = (f.destination?.ID ?? 0) > 0 || (this.everyNode && !!f.destination?.pod_name);
    if (!l7 && f.traffic_direction === 'EGRESS' && f.verdict === 'FORWARDED' && judgedAtIngress) return;
    let src = peerOf(f.source, f.IP?.source);
    let dst = peerOf(f.destination, f.IP?.destination);
    if (f.is_reply === true) [src, dst] = [dst, src];
    for (const p of [src, dst]) if (!this.peers.has(p.key)) this.peers.set(p.key, p);
    const cls = edgeClass(verdictOf(f));
    const id = `${src.key}\u0000${dst.key}\u0000${cls}`;
    let e = this.edges.get(id);
    if (!e) {
      e = { from: src.key, to: dst.key, cls, count: 0, ports: new Set(), l7: new Map() };
      this.edges.set(id, e);
    }
    e.count++;
    const port = portProto(f);
    if (port && !f.is_reply) e.ports.add(port);
    if (l7 && f.l7?.type === 'RESPONSE') {
      const k = httpKey(f);
      if (k) e.l7.set(k, (e.l7.get(k) ?? 0) + 1);
    }
    for (const k of new Set([src.key, dst.key])) {
      this.flows.set(k, (this.flows.get(k) ?? 0) + 1);
      if (cls === 'dropped') this.drops.set(k, (this.drops.get(k) ?? 0) + 1);
    }
  }

  /** Forgets the traffic (filters changed), keeps the peers. */
  clearFlows(): void {
    this.edges.clear();
    this.drops.clear();
    this.flows.clear();
  }

  layout(o: LayoutOptions = {}): MapLayout {
    const measure = o.measure ?? estimateWidth;
    const byColumn = new Map<string, Peer[]>();
    for (const p of this.peers.values()) {
      const col = p.kind === 'pod' ? p.namespace : OUTSIDE;
      byColumn.set(col, [...(byColumn.get(col) ?? []), p]);
    }
    const titles = [...byColumn.keys()].filter((t) => t !== OUTSIDE).sort();
    if (byColumn.has(OUTSIDE)) titles.push(OUTSIDE);
    const columns = titles.map((title, i) => ({
      title: title === OUTSIDE ? 'outside the cluster' : title,
      x: MARGIN + i * (COL_W + COL_GAP),
      w: COL_W,
    }));
    const nodes: NodeBox[] = [];
    const at = new Map<string, NodeBox>();
    const nodeNames = [...new Set(this.podNodes.values())].sort();
    // One node: nothing to tell apart.
    const nodeOf = (key: string) => (nodeNames.length > 1 ? this.podNodes.get(key) : undefined);
    let rows = 0;
    titles.forEach((title, i) => {
      const peers = (byColumn.get(title) ?? []).sort((a, b) => a.label.localeCompare(b.label));
      rows = Math.max(rows, peers.length);
      peers.forEach((peer, r) => {
        const box: NodeBox = {
          peer,
          x: MARGIN + i * (COL_W + COL_GAP) + (COL_W - NODE_W) / 2,
          y: TOP + 20 + r * ROW_H,
          w: NODE_W,
          h: NODE_H,
          drops: this.drops.get(peer.key) ?? 0,
          flows: this.flows.get(peer.key) ?? 0,
        };
        const nodeName = nodeOf(peer.key);
        if (nodeName) Object.assign(box, { nodeName, nodeIndex: nodeNames.indexOf(nodeName) });
        nodes.push(box);
        at.set(peer.key, box);
      });
    });
    const height = TOP + 20 + Math.max(rows, 1) * ROW_H + MARGIN;
    const width = Math.max(MARGIN * 2 + columns.length * (COL_W + COL_GAP) - COL_GAP, 400);

    // What labels must stay clear of: boxes (and their drop badges) and the column titles.
    const obstacles: Rect[] = [];
    for (const n of nodes) {
      obstacles.push(inflate(n, CLEAR));
      if (n.drops > 0) obstacles.push(inflate({ x: n.x + n.w - 11, y: n.y - 11, w: 22, h: 22 }, CLEAR));
    }
    for (const c of columns) {
      const w = measure(c.title) + 8;
      obstacles.push({ x: c.x + c.w / 2 - w / 2, y: 14, w, h: 22 });
    }

    const aggs = [...this.edges.values(), ...this.pending.values()].sort(
      (a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to) || a.cls.localeCompare(b.cls),
    );
    const routed: { e: EdgeAgg; pts: [number, number][] }[] = [];
    aggs.forEach((e, i) => {
      const a = at.get(e.from);
      const b = at.get(e.to);
      // Edges sharing a channel or lane run a few pixels apart, so none hides another.
      if (a && b) routed.push({ e, pts: route(a, b, ((i % 7) - 3) * 6) });
    });

    // Labels: drops first (they matter most), then by pair; each takes the first free spot.
    const order = [...routed].sort(
      (x, y) =>
        CLASS_ORDER[x.e.cls] - CLASS_ORDER[y.e.cls] ||
        x.e.from.localeCompare(y.e.from) ||
        x.e.to.localeCompare(y.e.to),
    );
    const placed = new Map<EdgeAgg, EdgeLabel>();
    const taken: Rect[] = [];
    const overflow: EdgeAgg[] = [];
    const lines = routed.map(({ e, pts }) => ({ e, segs: segments(pts) }));
    let maxX = width;
    for (const { e, pts } of order) {
      const text = labelText(pick(e));
      const w = measure(text) + 2 * LABEL_PAD;
      let spot: Rect | undefined;
      let best = Infinity;
      for (const r of candidates(pts, w, LABEL_H)) {
        if (r.x < 2 || r.y < 2 || obstacles.some((o) => hit(r, o)) || taken.some((t) => hit(r, t))) continue;
        let crossed = 0;
        for (const l of lines) if (l.e !== e && l.segs.some((sg) => hit(r, sg))) crossed++;
        if (crossed < best) {
          best = crossed;
          spot = r;
          if (crossed === 0) break;
        }
      }
      if (!spot) {
        overflow.push(e);
        continue;
      }
      placed.set(e, { ...spot, text, overflow: false });
      taken.push(inflate(spot, CLEAR));
      maxX = Math.max(maxX, spot.x + spot.w + MARGIN);
    }
    // Labels without room along their edge: one row each below the map, naming their pair.
    let bottom = height - 4;
    for (const e of overflow) {
      const text = `${e.from} \u2192 ${e.to}: ${labelText(pick(e))}`;
      const w = measure(text) + 2 * LABEL_PAD;
      placed.set(e, { x: MARGIN, y: bottom, w, h: LABEL_H, text, overflow: true });
      bottom += LABEL_H + 4;
      maxX = Math.max(maxX, MARGIN + w + MARGIN);
    }
    const edges: EdgeLine[] = routed.map(({ e, pts }) => {
      const fromNode = nodeOf(e.from);
      const toNode = nodeOf(e.to);
      return {
        ...pick(e),
        ...(fromNode && toNode ? { fromNode, toNode } : {}),
        d: roundedPath(pts),
        label: placed.get(e) as EdgeLabel,
      };
    });
    return {
      width: Math.ceil(maxX),
      height: overflow.length > 0 ? bottom + MARGIN : height,
      bodyHeight: height,
      columns,
      nodes,
      edges,
    };
  }
}

const CLASS_ORDER: Record<EdgeClass, number> = {
  removed: 0,
  added: 1,
  dropped: 2,
  audit: 3,
  forwarded: 4,
  other: 5,
};

function inflate(r: Rect, d: number): Rect {
  return { x: r.x - d, y: r.y - d, w: r.w + 2 * d, h: r.h + 2 * d };
}

function hit(a: Rect, b: Rect): boolean {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

const round = (n: number) => Math.round(n * 10) / 10;

/** A polyline's segments as thin rectangles (they run across or down). */
function segments(pts: [number, number][]): Rect[] {
  const out: Rect[] = [];
  for (let i = 0; i + 1 < pts.length; i++) {
    const [x0, y0] = pts[i] as [number, number];
    const [x1, y1] = pts[i + 1] as [number, number];
    out.push({
      x: Math.min(x0, x1) - 1,
      y: Math.min(y0, y1) - 1,
      w: Math.abs(x1 - x0) + 2,
      h: Math.abs(y1 - y0) + 2,
    });
  }
  return out;
}

/**
 * Spots for a w × h label along the polyline `pts`, best first: the longest segment first, from
 * its middle outwards; above or below a segment that runs across, right or left of one that runs
 * down.
 */
function candidates(pts: [number, number][], w: number, h: number): Rect[] {
  const segs: { p: [number, number]; q: [number, number]; len: number }[] = [];
  for (let i = 0; i + 1 < pts.length; i++) {
    const p = pts[i] as [number, number];
    const q = pts[i + 1] as [number, number];
    const len = Math.hypot(q[0] - p[0], q[1] - p[1]);
    if (len >= 4) segs.push({ p, q, len });
  }
  segs.sort((a, b) => b.len - a.len);
  const out: Rect[] = [];
  for (const { p, q } of segs) {
    const across = Math.abs(q[1] - p[1]) < 1;
    for (const t of [0.5, 0.35, 0.65, 0.2, 0.8, 0.05, 0.95]) {
      const x = p[0] + (q[0] - p[0]) * t;
      const y = p[1] + (q[1] - p[1]) * t;
      if (across) {
        out.push({ x: round(x - w / 2), y: round(y - 2 - h), w, h });
        out.push({ x: round(x - w / 2), y: round(y + 2), w, h });
      } else {
        out.push({ x: round(x + 4), y: round(y - h / 2), w, h });
        out.push({ x: round(x - 4 - w), y: round(y - h / 2), w, h });
      }
    }
  }
  return out;
}

/** One line: "✓ 12 · 80/TCP", or for HTTP "✓ GET /public 200 ×5 +2" (the rest on hover). */
export function labelText(e: Pick<EdgeLine, 'cls' | 'count' | 'ports' | 'l7'>): string {
  const first = e.l7[0];
  if (first) {
    const more = e.l7.length > 1 ? ` +${e.l7.length - 1}` : '';
    return `${SYMBOL[e.cls]} ${first[0]} \u00d7${first[1]}${more}`;
  }
  const ports = e.ports.length > 2 ? `${e.ports.slice(0, 2).join(', ')}, \u2026` : e.ports.join(', ');
  return `${SYMBOL[e.cls]} ${e.count}${ports ? ` \u00b7 ${ports}` : ''}`;
}

/** The HTTP summary of an edge: "GET /public 200 ×3; GET /api/v1 200 ×1". */
export function l7Summary(e: Pick<EdgeLine, 'l7'>): string {
  return e.l7.map(([k, n]) => `${k} \u00d7${n}`).join('; ');
}

function pick(e: EdgeAgg): Omit<EdgeLine, 'd' | 'label'> {
  return {
    from: e.from,
    to: e.to,
    cls: e.cls,
    count: e.count,
    ports: [...e.ports].sort(),
    l7: [...e.l7].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])),
  };
}

/** A polyline with rounded corners, as SVG path data. */
function roundedPath(pts: [number, number][]): string {
  const out = [`M ${round(pts[0]![0])} ${round(pts[0]![1])}`];
  for (let i = 1; i < pts.length - 1; i++) {
    const [px, py] = pts[i - 1]!;
    const [x, y] = pts[i]!;
    const [nx, ny] = pts[i + 1]!;
    const rin = Math.min(6, Math.hypot(x - px, y - py) / 2);
    const rout = Math.min(6, Math.hypot(nx - x, ny - y) / 2);
    const toward = (fx: number, fy: number, d: number): [number, number] => {
      const len = Math.hypot(fx - x, fy - y) || 1;
      return [x + ((fx - x) / len) * d, y + ((fy - y) / len) * d];
    };
    const [ax, ay] = toward(px, py, rin);
    const [bx, by] = toward(nx, ny, rout);
    out.push(`L ${round(ax)} ${round(ay)} Q ${round(x)} ${round(y)} ${round(bx)} ${round(by)}`);
  }
  const last = pts[pts.length - 1]!;
  out.push(`L ${round(last[0])} ${round(last[1])}`);
  return out.join(' ');
}

/**
 * Routes an edge through space no box uses: the channels between columns (and the margin inside a
 * column, right of its boxes) and the lanes between rows. `off` shifts it within those.
 */
function route(a: NodeBox, b: NodeBox, off: number): [number, number][] {
  const ay = a.y + a.h / 2 + off / 2;
  const by = b.y + b.h / 2 + off / 2;
  if (a === b) {
    // Traffic from a peer to itself: a loop through the margin right of the box.
    const x = a.x + a.w;
    return [
      [x, ay - 8],
      [x + 16, ay - 8],
      [x + 16, ay + 8],
      [x, ay + 8],
    ];
  }
  if (Math.abs(a.x - b.x) < 1) {
    // Same column: out of the right sides, through the channel right of the column.
    const x = a.x + a.w + (COL_W - NODE_W) / 2 + 16 + off;
    return [
      [a.x + a.w, ay],
      [x, ay],
      [x, by],
      [b.x + b.w, by],
    ];
  }
  const right = b.x > a.x;
  const sideA = right ? a.x + a.w : a.x;
  const sideB = right ? b.x : b.x + b.w;
  // The channel just past each box, towards the other (half a margin and half a gap away).
  const step = (COL_W - NODE_W) / 2 + COL_GAP / 2;
  const chanA = sideA + (right ? step : -step) + off;
  const chanB = sideB + (right ? -step : step) + off;
  if (Math.abs(chanA - chanB) < 1)
    return [
      [sideA, ay],
      [chanA, ay],
      [chanA, by],
      [sideB, by],
    ];
  // Columns apart: along the lane above the upper of the two rows.
  const lane = Math.min(a.y, b.y) - (ROW_H - NODE_H) / 2 + off / 2;
  return [
    [sideA, ay],
    [chanA, ay],
    [chanA, lane],
    [chanB, lane],
    [chanB, by],
    [sideB, by],
  ];
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const SYMBOL: Record<EdgeClass, string> = {
  forwarded: '\u2713',
  dropped: '\u2717',
  audit: '!',
  added: '+',
  removed: '\u2212',
  other: '\u2022',
};

function edgeTitle(e: EdgeLine): string {
  const ports = e.ports.length ? ` (${e.ports.join(', ')})` : '';
  const http = e.l7.length ? `\nHTTP: ${l7Summary(e)}` : '';
  if (e.cls === 'added' || e.cls === 'removed')
    return `${e.from} \u2192 ${e.to}: pending change, ${e.count} connection${e.count === 1 ? '' : 's'} would be ${e.cls === 'added' ? 'allowed' : 'denied'}${ports}`;
  const nodes = e.fromNode && e.toNode ? ` (${e.fromNode} \u2192 ${e.toNode})` : '';
  return `${e.from} \u2192 ${e.to}${nodes}: ${e.count} flows ${e.cls}${ports}${http}`;
}

/** The map as an SVG document fragment (data-* attributes name what each shape stands for). */
export function renderSvg(m: MapLayout): string {
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="service-map" role="img" aria-label="service map" ` +
      `width="${m.width}" height="${m.height}" viewBox="0 0 ${m.width} ${m.height}">`,
    '<defs>',
    ...(['forwarded', 'dropped', 'audit', 'added', 'removed', 'other'] as const).map(
      (c) =>
        `<marker id="arrow-${c}" class="arrow-${c}" viewBox="0 0 10 10" refX="9" refY="5" ` +
        `markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker>`,
    ),
    '</defs>',
  );
  for (const c of m.columns)
    out.push(
      `<g class="column" data-namespace="${esc(c.title)}">` +
        `<rect x="${c.x}" y="8" width="${c.w}" height="${m.bodyHeight - 16}" rx="8"/>` +
        `<text x="${c.x + c.w / 2}" y="30" text-anchor="middle">${esc(c.title)}</text></g>`,
    );
  const attrs = (e: EdgeLine) =>
    `data-from="${esc(e.from)}" data-to="${esc(e.to)}" data-verdict="${e.cls}" data-count="${e.count}"` +
    (e.l7.length ? ` data-l7="${esc(l7Summary(e))}"` : '') +
    (e.fromNode && e.toNode ? ` data-from-node="${esc(e.fromNode)}" data-to-node="${esc(e.toNode)}"` : '');
  const cross = (e: EdgeLine) => (e.fromNode && e.toNode && e.fromNode !== e.toNode ? ' cross-node' : '');
  for (const e of m.edges)
    out.push(
      `<g class="edge edge-${e.cls}${e.l7.length ? ' edge-l7' : ''}${cross(e)}" ${attrs(e)}>` +
        `<title>${esc(edgeTitle(e))}</title>` +
        `<path d="${e.d}" marker-end="url(#arrow-${e.cls})"/></g>`,
    );
  for (const n of m.nodes) {
    const cls = `node node-${n.peer.kind}${n.drops > 0 ? ' has-drops' : ''}`;
    const on = n.nodeName ? ` on ${n.nodeName}` : '';
    out.push(
      `<g class="${cls}"${n.nodeName ? ` data-k8s-node="${esc(n.nodeName)}"` : ''} data-node="${esc(n.peer.key)}" data-drops="${n.drops}">` +
        `<title>${esc(`${n.peer.key}${on}: ${n.flows} flows, ${n.drops} dropped`)}</title>` +
        `<rect x="${n.x}" y="${n.y}" width="${n.w}" height="${n.h}" rx="6"/>`,
    );
    if (n.nodeName)
      // The pod's node: a stripe in the node's colour along the box's left side, and its name.
      out.push(
        `<rect class="node-stripe node-color-${(n.nodeIndex ?? 0) % 8}" x="${n.x + 1}" y="${n.y + 1}" width="5" height="${n.h - 2}" rx="2"/>` +
          `<text x="${n.x + n.w / 2}" y="${n.y + n.h / 2 - 6}" text-anchor="middle" dy="0.35em">${esc(n.peer.label)}</text>` +
          `<text class="node-name" x="${n.x + n.w / 2}" y="${n.y + n.h / 2 + 9}" text-anchor="middle" dy="0.35em">${esc(n.nodeName)}</text>`,
      );
    else
      out.push(
        `<text x="${n.x + n.w / 2}" y="${n.y + n.h / 2}" text-anchor="middle" dy="0.35em">${esc(n.peer.label)}</text>`,
      );
    if (n.drops > 0)
      out.push(
        `<g class="drop-badge"><circle cx="${n.x + n.w}" cy="${n.y}" r="11"/>` +
          `<text x="${n.x + n.w}" y="${n.y}" text-anchor="middle" dy="0.35em">${n.drops > 99 ? '99+' : n.drops}</text></g>`,
      );
    out.push('</g>');
  }
  // Labels last: no line or box is drawn over them.
  for (const e of m.edges) {
    const l = e.label;
    out.push(
      `<g class="edge-label edge-label-${e.cls}${l.overflow ? ' overflow' : ''}" ${attrs(e)}>` +
        `<title>${esc(edgeTitle(e))}</title>` +
        `<rect x="${l.x}" y="${l.y}" width="${round(l.w)}" height="${l.h}" rx="3"/>` +
        `<text x="${round(l.x + LABEL_PAD)}" y="${l.y + l.h / 2}" dy="0.35em">${esc(l.text)}</text></g>`,
    );
  }
  out.push('</svg>');
  return out.join('');
}
