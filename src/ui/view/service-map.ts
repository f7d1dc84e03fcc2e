// The live service map's model: peers (pods, world, host, CIDRs) and the flows between them folded
// into edges per (source, destination, verdict class), laid out deterministically (namespaces as
// columns in name order, pods in name order, outside peers in a last column) and drawn as SVG text.
// Pure: the page calls it, unit tests call it, nothing here touches the DOM.
import { isDrop, peerOf, portProto, verdictOf, type Flow, type Peer } from './flow.js';

export type EdgeClass = 'forwarded' | 'dropped' | 'other';

export function edgeClass(verdict: string): EdgeClass {
  if (verdict === 'FORWARDED' || verdict === 'REDIRECTED') return 'forwarded';
  return isDrop(verdict) ? 'dropped' : 'other';
}

interface EdgeAgg {
  from: string;
  to: string;
  cls: EdgeClass;
  count: number;
  ports: Set<string>;
}

export interface NodeBox {
  peer: Peer;
  x: number;
  y: number;
  w: number;
  h: number;
  drops: number;
  flows: number;
}

export interface EdgeLine {
  from: string;
  to: string;
  cls: EdgeClass;
  count: number;
  ports: string[];
  /** SVG path data. */
  d: string;
  labelX: number;
  labelY: number;
  labelAnchor: 'middle' | 'start';
}

export interface MapLayout {
  width: number;
  height: number;
  columns: { title: string; x: number; w: number }[];
  nodes: NodeBox[];
  edges: EdgeLine[];
}

const COL_W = 220;
const COL_GAP = 40;
const NODE_W = 150;
const NODE_H = 38;
const ROW_H = 72;
const TOP = 60;
const MARGIN = 16;
const OUTSIDE = '';

export class ServiceMap {
  private readonly peers = new Map<string, Peer>();
  private readonly edges = new Map<string, EdgeAgg>();
  private readonly drops = new Map<string, number>();
  private readonly flows = new Map<string, number>();

  /** A pod known from the agent's endpoints, shown even before it has traffic. */
  addPod(namespace: string, pod: string): void {
    const key = `${namespace}/${pod}`;
    if (!this.peers.has(key)) this.peers.set(key, { key, label: pod, namespace, kind: 'pod' });
  }

  /**
   * Folds one flow in. A reply counts on its request's edge, so a connection draws one arrow. A
   * packet between two local pods is seen twice, leaving one and entering the other: the edge shows
   * where it was decided, so a forwarded egress towards a local endpoint is left to the ingress
   * event that follows (otherwise a pair denied at ingress would also draw a green edge).
   */
  addFlow(f: Flow): void {
    if (f.traffic_direction === 'EGRESS' && f.verdict === 'FORWARDED' && (f.destination?.ID ?? 0) > 0) return;
    let src = peerOf(f.source, f.IP?.source);
    let dst = peerOf(f.destination, f.IP?.destination);
    if (f.is_reply === true) [src, dst] = [dst, src];
    for (const p of [src, dst]) if (!this.peers.has(p.key)) this.peers.set(p.key, p);
    const cls = edgeClass(verdictOf(f));
    const id = `${src.key}\u0000${dst.key}\u0000${cls}`;
    let e = this.edges.get(id);
    if (!e) {
      e = { from: src.key, to: dst.key, cls, count: 0, ports: new Set() };
      this.edges.set(id, e);
    }
    e.count++;
    const port = portProto(f);
    if (port && !f.is_reply) e.ports.add(port);
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

  layout(): MapLayout {
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
        nodes.push(box);
        at.set(peer.key, box);
      });
    });
    const aggs = [...this.edges.values()].sort(
      (a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to) || a.cls.localeCompare(b.cls),
    );
    const edges: EdgeLine[] = [];
    aggs.forEach((e, i) => {
      const a = at.get(e.from);
      const b = at.get(e.to);
      // Edges sharing a channel or lane run a few pixels apart, so none hides another.
      if (a && b) edges.push({ ...route(a, b, ((i % 7) - 3) * 4), ...pick(e) });
    });
    spreadLabels(edges);
    // Room on the right for the labels of edges routed past the last column.
    const width = Math.max(MARGIN * 2 + columns.length * (COL_W + COL_GAP) - COL_GAP + 110, 400);
    const height = TOP + 20 + Math.max(rows, 1) * ROW_H + MARGIN;
    return { width, height, columns, nodes, edges };
  }
}

/** Moves labels down until none overlaps an earlier one (greedy, in the edges' fixed order). */
function spreadLabels(edges: EdgeLine[]): void {
  const placed: { x0: number; x1: number; y: number }[] = [];
  for (const e of edges) {
    // Roughly 7 px a character at the labels' 12 px font.
    const w = (labelText(e).length + 1) * 7;
    const x0 = e.labelAnchor === 'start' ? e.labelX : e.labelX - w / 2;
    while (placed.some((p) => Math.abs(p.y - e.labelY) < 14 && x0 < p.x1 && p.x0 < x0 + w)) e.labelY += 14;
    placed.push({ x0, x1: x0 + w, y: e.labelY });
  }
}

function labelText(e: { cls: EdgeClass; count: number; ports: string[] }): string {
  const ports = e.ports.length > 2 ? `${e.ports.slice(0, 2).join(', ')}, \u2026` : e.ports.join(', ');
  return `${SYMBOL[e.cls]} ${e.count}${ports ? ` \u00b7 ${ports}` : ''}`;
}

function pick(e: EdgeAgg) {
  return { from: e.from, to: e.to, cls: e.cls, count: e.count, ports: [...e.ports].sort() };
}

const round = (n: number) => Math.round(n * 10) / 10;

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
function route(
  a: NodeBox,
  b: NodeBox,
  off: number,
): { d: string; labelX: number; labelY: number; labelAnchor: 'middle' | 'start' } {
  const ay = a.y + a.h / 2 + off / 2;
  const by = b.y + b.h / 2 + off / 2;
  let pts: [number, number][];
  if (a === b) {
    // Traffic from a peer to itself: a loop through the margin right of the box.
    const x = a.x + a.w;
    pts = [
      [x, ay - 8],
      [x + 16, ay - 8],
      [x + 16, ay + 8],
      [x, ay + 8],
    ];
  } else if (Math.abs(a.x - b.x) < 1) {
    // Same column: out of the right sides, through the column's margin.
    const x = a.x + a.w + 18 + off / 2;
    pts = [
      [a.x + a.w, ay],
      [x, ay],
      [x, by],
      [b.x + b.w, by],
    ];
  } else {
    const right = b.x > a.x;
    const sideA = right ? a.x + a.w : a.x;
    const sideB = right ? b.x : b.x + b.w;
    // The channel just past each box, towards the other (half a margin and half a gap away).
    const step = (COL_W - NODE_W) / 2 + COL_GAP / 2;
    const chanA = sideA + (right ? step : -step) + off;
    const chanB = sideB + (right ? -step : step) + off;
    if (Math.abs(chanA - chanB) < 1) {
      pts = [
        [sideA, ay],
        [chanA, ay],
        [chanA, by],
        [sideB, by],
      ];
    } else {
      // Columns apart: along the lane above the upper of the two rows.
      const lane = Math.min(a.y, b.y) - (ROW_H - NODE_H) / 2 + off / 2;
      pts = [
        [sideA, ay],
        [chanA, ay],
        [chanA, lane],
        [chanB, lane],
        [chanB, by],
        [sideB, by],
      ];
    }
  }
  // The label sits on the longest segment: above it when it runs across, beside it when it runs down.
  let best = 0;
  let bestLen = -1;
  for (let i = 0; i + 1 < pts.length; i++) {
    const len = Math.hypot(pts[i + 1]![0] - pts[i]![0], pts[i + 1]![1] - pts[i]![1]);
    if (len > bestLen) [best, bestLen] = [i, len];
  }
  const [p, q] = [pts[best]!, pts[best + 1]!];
  const across = Math.abs(q[1] - p[1]) < 1;
  return {
    d: roundedPath(pts),
    labelX: round(across ? (p[0] + q[0]) / 2 : p[0] + 5),
    labelY: round((p[1] + q[1]) / 2 - (across ? 9 : 0)),
    labelAnchor: across ? 'middle' : 'start',
  };
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const SYMBOL: Record<EdgeClass, string> = { forwarded: '\u2713', dropped: '\u2717', other: '\u2022' };

/** The map as an SVG document fragment (data-* attributes name what each shape stands for). */
export function renderSvg(m: MapLayout): string {
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="service-map" role="img" aria-label="service map" ` +
      `width="${m.width}" height="${m.height}" viewBox="0 0 ${m.width} ${m.height}">`,
    '<defs>',
    ...(['forwarded', 'dropped', 'other'] as const).map(
      (c) =>
        `<marker id="arrow-${c}" class="arrow-${c}" viewBox="0 0 10 10" refX="9" refY="5" ` +
        `markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker>`,
    ),
    '</defs>',
  );
  for (const c of m.columns)
    out.push(
      `<g class="column" data-namespace="${esc(c.title)}">` +
        `<rect x="${c.x}" y="8" width="${c.w}" height="${m.height - 16}" rx="8"/>` +
        `<text x="${c.x + c.w / 2}" y="30" text-anchor="middle">${esc(c.title)}</text></g>`,
    );
  for (const e of m.edges) {
    const label = labelText(e);
    out.push(
      `<g class="edge edge-${e.cls}" data-from="${esc(e.from)}" data-to="${esc(e.to)}" ` +
        `data-verdict="${e.cls}" data-count="${e.count}">` +
        `<title>${esc(`${e.from} \u2192 ${e.to}: ${e.count} ${e.cls}${e.ports.length ? ` (${e.ports.join(', ')})` : ''}`)}</title>` +
        `<path d="${e.d}" marker-end="url(#arrow-${e.cls})"/>` +
        `<text x="${e.labelX}" y="${e.labelY}" text-anchor="${e.labelAnchor}" dy="0.35em">${esc(label)}</text></g>`,
    );
  }
  for (const n of m.nodes) {
    const cls = `node node-${n.peer.kind}${n.drops > 0 ? ' has-drops' : ''}`;
    out.push(
      `<g class="${cls}" data-node="${esc(n.peer.key)}" data-drops="${n.drops}">` +
        `<title>${esc(`${n.peer.key}: ${n.flows} flows, ${n.drops} dropped`)}</title>` +
        `<rect x="${n.x}" y="${n.y}" width="${n.w}" height="${n.h}" rx="6"/>` +
        `<text x="${n.x + n.w / 2}" y="${n.y + n.h / 2}" text-anchor="middle" dy="0.35em">${esc(n.peer.label)}</text>`,
    );
    if (n.drops > 0)
      out.push(
        `<g class="drop-badge"><circle cx="${n.x + n.w}" cy="${n.y}" r="11"/>` +
          `<text x="${n.x + n.w}" y="${n.y}" text-anchor="middle" dy="0.35em">${n.drops > 99 ? '99+' : n.drops}</text></g>`,
      );
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('');
}
