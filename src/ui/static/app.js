// The page's glue: filters <-> URL, the Server-Sent Events stream, and drawing. What flows mean
// and how the map is laid out lives in the typed modules under /view/ (src/ui/view/*.ts).
import { flowRow, isDrop } from '/view/flow.js';
import { ServiceMap, edgeClass, renderSvg } from '/view/service-map.js';

const MAX_ROWS = 500;
const FILTERS = [
  'node',
  'namespace',
  'pod',
  'from-pod',
  'to-pod',
  'verdict',
  'protocol',
  'port',
  'type',
  'label',
  'http-method',
  'http-status',
  'http-path',
];
const COLUMNS = [
  'time',
  'node',
  'source',
  'destination',
  'port',
  'verdict',
  'dropReason',
  'policy',
  'direction',
  'type',
  'summary',
];

const $ = (id) => document.getElementById(id);
const form = $('filters');
const tbody = $('flows').querySelector('tbody');
const map = new ServiceMap();
// Labels are placed by their width in the page's own font (the SVG's edge-label text, style.css).
const ruler = document.createElement('canvas').getContext('2d');
ruler.font = '12px system-ui, sans-serif';
const measure = (text) => Math.ceil(ruler.measureText(text).width) + 1;
let source;
let seen = 0;
let dropped = 0;
const lost = new Map();
let drawPending = false;

function filtersFromForm() {
  const q = new URLSearchParams();
  for (const name of FILTERS) {
    const v = String(new FormData(form).get(name) ?? '').trim();
    if (v) q.set(name, v);
  }
  return q;
}

function formFromUrl() {
  const q = new URLSearchParams(location.search);
  for (const name of FILTERS) if (form.elements[name]) form.elements[name].value = q.get(name) ?? '';
}

function drawMap() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    $('map').innerHTML = renderSvg(map.layout({ measure }));
  });
}

// Hovering an edge or its label shows which is which (and the <title> lists everything).
function hoverEdge(e, on) {
  const g = e.target.closest?.('g.edge, g.edge-label');
  if (!g) return;
  const sel = ['from', 'to', 'verdict']
    .map((k) => `[data-${k}="${CSS.escape(g.dataset[k] ?? '')}"]`)
    .join('');
  for (const el of $('map').querySelectorAll(`g.edge${sel}, g.edge-label${sel}`))
    el.classList.toggle('hover', on);
}
$('map').addEventListener('mouseover', (e) => hoverEdge(e, true));
$('map').addEventListener('mouseout', (e) => hoverEdge(e, false));

function drawStatus(state) {
  const stream = state ?? $('status').dataset.state ?? 'connecting';
  $('status').dataset.state = stream;
  $('status').dataset.seen = String(seen);
  $('status').textContent = `${stream} · ${seen} flows seen · ${dropped} dropped`;
  const total = [...lost.values()].reduce((a, b) => a + b, 0);
  $('lost').hidden = total === 0;
  $('lost').dataset.lost = String(total);
  $('lost').textContent = `EVENTS LOST: ${total} (${[...lost].map(([s, n]) => `${s}: ${n}`).join(', ')})`;
}

function addRow(flow) {
  const row = flowRow(flow);
  const cls = edgeClass(row.verdict);
  const tr = document.createElement('tr');
  tr.className = cls;
  tr.dataset.verdict = row.verdict;
  for (const col of COLUMNS) {
    const td = document.createElement('td');
    td.className = col === 'dropReason' ? 'reason' : col;
    if (col === 'verdict') {
      const span = document.createElement('span');
      span.className = `verdict verdict-${cls}`;
      const symbol = { forwarded: '\u2713', dropped: '\u2717', audit: '!' }[cls] ?? '\u2022';
      span.textContent = `${symbol} ${row.verdict}`;
      td.append(span);
    } else {
      td.textContent = row[col];
      // Long cells are cut with an ellipsis; the full text shows on hover.
      if (row[col]) td.title = row[col];
    }
    tr.append(td);
  }
  // Newest on top, by the flow's time: the proxy's L7 records reach the agent a little after the
  // datapath's events of the same moment, so arrival order is not quite time order.
  const t = Date.parse(flow.time ?? '') || 0;
  tr.dataset.t = String(t);
  let before = tbody.firstElementChild;
  while (before && Number(before.dataset.t) > t) before = before.nextElementSibling;
  tbody.insertBefore(tr, before);
  while (tbody.rows.length > MAX_ROWS) tbody.lastElementChild.remove();
}

function onLine(msg) {
  if (msg.flow) {
    seen++;
    if (isDrop(msg.flow.verdict ?? '')) dropped++;
    map.addFlow(msg.flow);
    addRow(msg.flow);
    drawMap();
  } else if (msg.lost_events) {
    const s = msg.lost_events.source ?? 'UNKNOWN';
    lost.set(s, (lost.get(s) ?? 0) + (msg.lost_events.num_events_lost ?? 0));
  }
  drawStatus();
}

function problem(text) {
  $('problem').hidden = !text;
  $('problem').textContent = text ?? '';
}

/** (Re)opens the stream with the form's filters; the agent replays its recent flows first. */
function connect() {
  source?.close();
  const q = filtersFromForm();
  history.replaceState(null, '', q.size ? `?${q}` : location.pathname);
  source = new EventSource(`/api/events?${q}`);
  // One node's flows: a pod's egress to another node's pod is not judged again in the stream.
  map.setEveryNode(!q.get('node'));
  source.onopen = () => {
    // Every (re)connection replays the agent's recent flows: start the view over.
    map.clearFlows();
    tbody.replaceChildren();
    seen = 0;
    dropped = 0;
    lost.clear();
    problem();
    drawStatus('live');
    drawMap();
  };
  source.onmessage = (e) => onLine(JSON.parse(e.data));
  source.addEventListener('endpoints', (e) => {
    for (const ep of JSON.parse(e.data).items ?? []) map.addPod(ep.namespace, ep.pod, ep.node);
    drawMap();
  });
  source.addEventListener('problem', (e) => {
    const p = JSON.parse(e.data);
    problem(`${p.code}: ${p.message}`);
  });
  source.onerror = () => drawStatus('reconnecting');
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  connect();
});
form.addEventListener('reset', () => setTimeout(connect));
// Menus apply at once; text fields on Enter (submit).
form.addEventListener('change', (e) => e.target instanceof HTMLSelectElement && connect());

// A pending policy change: the agent's diff of the manifests, drawn as added / removed edges.
const pendingForm = $('pending-form');
function pendingSummary(text, state) {
  $('pending-summary').textContent = text;
  $('pending-summary').dataset.state = state;
}
pendingForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const data = new FormData(pendingForm);
  pendingSummary('computing…', 'busy');
  try {
    const r = await fetch('/api/policy-diff', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ manifests: String(data.get('manifests') ?? ''), mode: data.get('mode') }),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(`${body.error?.code}: ${body.error?.message}`);
    map.setPending(body.changes);
    const added = body.changes.filter((c) => c.after === 'allowed').length;
    pendingSummary(
      `${body.changes.length} connections would change: ${added} allowed (+), ${body.changes.length - added} denied (\u2212); ${body.unchanged} unchanged`,
      'shown',
    );
  } catch (err) {
    map.setPending([]);
    pendingSummary(String(err.message ?? err), 'error');
  }
  drawMap();
});
pendingForm.addEventListener('reset', () => {
  map.setPending([]);
  pendingSummary('', 'cleared');
  drawMap();
});

fetch('/api/info')
  .then((r) => r.json())
  .then((info) => ($('lab').textContent = `lab ${info.lab}`))
  .catch(() => {});
// The node menu lists the lab's nodes (a lab of one node: just it); then the stream opens.
fetch('/api/nodes')
  .then((r) => r.json())
  .then((body) => {
    const names = (body.items ?? []).map((n) => n.name).filter(Boolean);
    for (const name of names) form.elements.node.append(new Option(name, name));
    $('node-filter').hidden = names.length < 2;
    $('key-node').hidden = names.length < 2;
    document.body.dataset.nodes = String(names.length);
  })
  .catch(() => {})
  .finally(() => {
    formFromUrl();
    connect();
  });
