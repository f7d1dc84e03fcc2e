// The live service map's model: peers (pods, world, host, CIDRs) and the flows between them folded
// into edges per (source, destination, verdict class), laid out deterministically (namespaces as
// columns in name order, pods in name order, outside peers in a last column) and drawn as SVG text.
// Pure: the page calls it, unit tests call it, nothing here touches the DOM.
import { isDrop, peerOf, portProto, verdictOf, type Flow, type Peer } from './flow.js';

export type EdgeClass = 'forwarded' | 'dropped' | 'other';

export function edgeClass(verdict: string): EdgeClass {
  if (verdict === 'FORWARDED') return 'forwarded';
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
}

export interface MapLayout {
  width: number;
  height: number;
  columns: { title: string; x: number; w: number }[];
  nodes: NodeBox[];
  edges: EdgeLine[];
}

const COL_W = 210;
const COL_GAP = 40;
const NODE_W = 150;
const NODE_H = 38;
const ROW_H = 72;
const TOP = 44;
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

  /** Folds one flow in. A reply counts on its request's edge, so a connection draws one arrow. */
  addFlow(f: Flow): void {
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
    for (const e of aggs) {
      const a = at.get(e.from);
      const b = at.get(e.to);
      if (!a || !b) continue;
      // Opposite directions and different verdicts between one pair bend apart, so none hides another.
      const siblings = aggs.filter(
        (o) => (o.from === e.from && o.to === e.to) || (o.from === e.to && o.to === e.from),
      );
      edges.push({ ...geometry(a, b, siblings.indexOf(e), siblings.length), ...pick(e) });
    }
    const width = Math.max(MARGIN * 2 + columns.length * (COL_W + COL_GAP) - COL_GAP, 400);
    const height = TOP + 20 + Math.max(rows, 1) * ROW_H + MARGIN;
    return { width, height, columns, nodes, edges };
  }
}

function pick(e: EdgeAgg) {
  return { from: e.from, to: e.to, cls: e.cls, count: e.count, ports: [...e.ports].sort() };
}

/** Where the ray from the box's centre towards (tx, ty) leaves the box. */
function border(b: NodeBox, tx: number, ty: number): [number, number] {
  const cx = b.x + b.w / 2;
  const cy = b.y + b.h / 2;
  const dx = tx - cx;
  const dy = ty - cy;
  if (dx === 0 && dy === 0) return [cx, cy];
  const s = Math.min(
    dx === 0 ? Infinity : b.w / 2 / Math.abs(dx),
    dy === 0 ? Infinity : b.h / 2 / Math.abs(dy),
  );
  return [cx + dx * s, cy + dy * s];
}

function geometry(a: NodeBox, b: NodeBox, index: number, of: number) {
  const r = (n: number) => Math.round(n * 10) / 10;
  if (a === b) {
    // Traffic from a peer to itself: a loop on the box's right side.
    const x = a.x + a.w;
    const y = a.y + a.h / 2;
    return {
      d: `M ${r(x)} ${r(y - 8)} C ${r(x + 40)} ${r(y - 30)} ${r(x + 40)} ${r(y + 30)} ${r(x)} ${r(y + 8)}`,
      labelX: r(x + 34),
      labelY: r(y),
    };
  }
  const ax = a.x + a.w / 2;
  const ay = a.y + a.h / 2;
  const bx = b.x + b.w / 2;
  const by = b.y + b.h / 2;
  const len = Math.hypot(bx - ax, by - ay);
  // Normal to the line, fixed per unordered pair so the sign separates the two directions.
  const flip = a.peer.key < b.peer.key ? 1 : -1;
  const nx = (-(by - ay) / len) * flip;
  const ny = ((bx - ax) / len) * flip;
  const sameColumn = Math.abs(ax - bx) < 1;
  const base = sameColumn ? 46 : 14;
  const bend = (base + 22 * index) * (a.peer.key < b.peer.key ? 1 : -1) * (of > 1 || sameColumn ? 1 : 0);
  const mx = (ax + bx) / 2 + nx * bend;
  const my = (ay + by) / 2 + ny * bend;
  const [sx, sy] = border(a, mx, my);
  const [ex, ey] = border(b, mx, my);
  // The label sits on the curve's midpoint (a quadratic's t=0.5).
  const lx = 0.25 * sx + 0.5 * mx + 0.25 * ex;
  const ly = 0.25 * sy + 0.5 * my + 0.25 * ey;
  return { d: `M ${r(sx)} ${r(sy)} Q ${r(mx)} ${r(my)} ${r(ex)} ${r(ey)}`, labelX: r(lx), labelY: r(ly) };
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
    const ports = e.ports.length > 2 ? `${e.ports.slice(0, 2).join(', ')}, \u2026` : e.ports.join(', ');
    const label = `${SYMBOL[e.cls]} ${e.count}${ports ? ` \u00b7 ${ports}` : ''}`;
    out.push(
      `<g class="edge edge-${e.cls}" data-from="${esc(e.from)}" data-to="${esc(e.to)}" ` +
        `data-verdict="${e.cls}" data-count="${e.count}">` +
        `<title>${esc(`${e.from} \u2192 ${e.to}: ${e.count} ${e.cls}${ports ? ` (${e.ports.join(', ')})` : ''}`)}</title>` +
        `<path d="${e.d}" marker-end="url(#arrow-${e.cls})"/>` +
        `<text x="${e.labelX}" y="${e.labelY}" text-anchor="middle" dy="0.35em">${esc(label)}</text></g>`,
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
