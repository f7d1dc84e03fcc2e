// The web UI end to end, in a real browser: a lab with its agent, pods and policies; real allowed
// and denied connections between pods, and HTTP requests through the node proxy (L7); `weir ui` on
// a free loopback port; Debian's Chromium (headless, driven by playwright-core, no browser
// download) shows the pods and one edge per flow pair coloured by verdict, L7 edges with their
// requests (method, path, status, count), lists the flows with verdicts and policy names, narrows
// the table with a filter, and shows new traffic live. No edge label overlaps another or a pod's
// box (read from the page's SVG). Screenshots land in test/e2e/screenshots/ (gitignored).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { Lab } from '../../src/lab/index.js';
import { ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import {
  edgeSel as edgeSelector,
  probe as labProbe,
  rows as tableRows,
  shots,
  UiLab,
} from '../support/ui-browser.js';
import { until as poll } from '../support/poll.js';

const LAB = testLab('t-ui');

const pods = `
apiVersion: v1
kind: Namespace
metadata: { name: app }
---
apiVersion: v1
kind: Namespace
metadata: { name: other }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app, labels: { role: client } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: app, labels: { role: server } }
spec: { containers: [{ name: s, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: intruder, namespace: app, labels: { role: intruder } }
spec: { containers: [{ name: i, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: visitor, namespace: other, labels: { role: visitor } }
spec: { containers: [{ name: v, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: web, namespace: app, labels: { role: web } }
spec: { containers: [{ name: w, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Namespace
metadata: { name: data }
---
apiVersion: v1
kind: Pod
metadata: { name: db, namespace: data, labels: { role: db } }
spec: { containers: [{ name: d, ports: [{ containerPort: 5432 }] }] }
`;

const policies = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-allow-client, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { role: client } }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-deny-intruder, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: server } }
  ingressDeny:
    - fromEndpoints: [{ matchLabels: { role: intruder } }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: web-l7, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: web } }
  ingress:
    - fromEndpoints:
        - { matchLabels: { role: client } }
        - { matchLabels: { role: visitor, k8s:io.kubernetes.pod.namespace: other } }
      toPorts:
        - ports: [{ port: "80", protocol: TCP }]
          rules: { http: [{ method: GET, path: /public }, { method: GET, path: "/api/.*" }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: db-allow-app, namespace: data }
spec:
  endpointSelector: { matchLabels: { role: db } }
  ingress:
    - fromEndpoints:
        - { matchLabels: { role: client, k8s:io.kubernetes.pod.namespace: app } }
        - { matchLabels: { role: web, k8s:io.kubernetes.pod.namespace: app } }
      toPorts: [{ ports: [{ port: "5432", protocol: TCP }] }]
`;

/** Chromium's computed colours of the palette in src/ui/static/style.css. */
const GREEN = 'rgb(26, 127, 55)';
const RED = 'rgb(207, 34, 46)';

/** Polls `check` (bounded: 10 s by default) until it holds. */
const until = (what: string, check: () => Promise<boolean>, ms = 10_000) => poll(what, check, ms, 100);

const probe = (from: string, to: string, port = 80) => labProbe(LAB, from, to, `${port}/TCP`, 800);

/** HTTP GETs from a pod (curl, one connection each); the status codes. */
async function curl(from: string, ip: string, paths: string[]): Promise<string[]> {
  const script = paths
    .map((p) => `curl -s -o /dev/null -m 10 -w '%{http_code}\\n' http://${ip}${p}`)
    .join('; ');
  return (await ok(['lab', 'exec', from, '--', 'sh', '-c', script], LAB)).trim().split('\n');
}

interface Box {
  what: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

/**
 * The drawn extents of every edge label and pod box on the page (getBoundingClientRect of the SVG
 * elements), and the pairs that intersect: labels with labels, labels with boxes.
 */
async function overlaps(page: Page): Promise<{ labels: Box[]; nodes: Box[]; clashes: string[] }> {
  const boxes = (await page.evaluate(`(() => {
    const r = (el, what) => { const b = el.getBoundingClientRect(); return { what, x: b.x, y: b.y, w: b.width, h: b.height }; };
    return {
      labels: [...document.querySelectorAll('svg.service-map .edge-label text')].map((t) => r(t, t.textContent)),
      nodes: [...document.querySelectorAll('svg.service-map g.node')].map((g) => r(g.querySelector('rect'), g.dataset.node)),
      badges: [...document.querySelectorAll('svg.service-map .drop-badge circle')].map((c) => r(c, 'badge')),
    };
  })()`)) as { labels: Box[]; nodes: Box[]; badges: Box[] };
  const hit = (a: Box, b: Box) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  const clashes: string[] = [];
  boxes.labels.forEach((a, i) => {
    for (const b of boxes.labels.slice(i + 1))
      if (hit(a, b)) clashes.push(`label '${a.what}' / label '${b.what}'`);
    for (const b of [...boxes.nodes, ...boxes.badges])
      if (hit(a, b)) clashes.push(`label '${a.what}' / box ${b.what}`);
  });
  return { labels: boxes.labels, nodes: boxes.nodes, clashes };
}

const rows = (page: Page) =>
  tableRows(page, [
    'time',
    'source',
    'destination',
    'port',
    'verdict',
    'reason',
    'policy',
    'direction',
    'type',
    'summary',
  ] as const);

// Page-side code as text: the tests compile without the DOM library.
const strokeOf = (selector: string) =>
  `getComputedStyle(document.querySelector(${JSON.stringify(selector + ' path')})).stroke`;

function edge(page: Page, from: string, to: string, verdict: 'forwarded' | 'dropped') {
  return page.locator(edgeSelector(from, to, verdict));
}

describe('ui: live service map and flow table in Chromium', { timeout: 180_000 }, () => {
  const ui = new UiLab(LAB);
  let webIP = '';

  before(async () => {
    await ui.up('weir-ui-test-', { 'pods.yaml': pods, 'policies.yaml': policies });
    const lab = await Lab.open(LAB);
    webIP = (await lab.pod('app/web')).ip;
  });

  after(() => ui.down());

  it('shows pods, verdict-coloured edges, flows with policies, filters, and live traffic', async () => {
    // Traffic before the page opens: the agent replays it when the page connects.
    assert.equal(await probe('app/client', 'app/server'), true, 'client -> server is allowed');
    assert.equal(await probe('app/intruder', 'app/server'), false, 'intruder -> server is denied');
    // More pairs: across namespaces, L4 allowed and denied, and HTTP through the node proxy.
    assert.equal(await probe('app/client', 'data/db', 5432), true);
    assert.equal(await probe('app/web', 'data/db', 5432), true);
    assert.equal(await probe('app/intruder', 'data/db', 5432), false);
    assert.deepEqual(await curl('app/client', webIP, ['/public', '/public', '/api/v1', '/public']), [
      '200',
      '200',
      '200',
      '200',
    ]);
    assert.deepEqual(await curl('other/visitor', webIP, ['/public', '/admin', '/private', '/admin']), [
      '200',
      '403',
      '403',
      '403',
    ]);

    const { page, pageErrors } = await ui.browse(await ui.startUi());

    // The map: every pod, grouped by namespace; one edge per flow pair, in its verdict's colour.
    for (const pod of ['app/client', 'app/server', 'app/intruder', 'other/visitor'])
      await page.locator(`g.node[data-node="${pod}"]`).waitFor({ timeout: 10_000 });
    const allowed = edge(page, 'app/client', 'app/server', 'forwarded');
    const denied = edge(page, 'app/intruder', 'app/server', 'dropped');
    await allowed.waitFor({ timeout: 10_000 });
    await denied.waitFor({ timeout: 10_000 });
    assert.equal(await page.evaluate(strokeOf(edgeSelector('app/client', 'app/server', 'forwarded'))), GREEN);
    assert.equal(await page.evaluate(strokeOf(edgeSelector('app/intruder', 'app/server', 'dropped'))), RED);
    assert.equal(
      await edge(page, 'app/intruder', 'app/server', 'forwarded').count(),
      0,
      'no allowed intruder edge',
    );
    assert.equal(
      await edge(page, 'app/client', 'app/server', 'dropped').count(),
      0,
      'no dropped client edge',
    );
    const badge = await page.locator('g.node[data-node="app/intruder"]').getAttribute('data-drops');
    assert.ok(Number(badge) > 0, 'the intruder carries a drop badge');
    assert.equal(await page.locator('g.node[data-node="app/client"] .drop-badge').count(), 0);
    const columns = await page.$$eval('g.column', (gs) => gs.map((g) => g.getAttribute('data-namespace')));
    // kube-system: the cluster DNS `lab up` runs (kube-system/coredns).
    assert.deepEqual(
      columns.slice(0, 4),
      ['app', 'data', 'kube-system', 'other'],
      'namespaces as columns, in name order',
    );
    // L7 edges: what went through the proxy, summarised by method, path and status.
    const l7ok = edge(page, 'app/client', 'app/web', 'forwarded');
    const l7no = edge(page, 'other/visitor', 'app/web', 'dropped');
    await until('the L7 edges', async () => (await l7ok.count()) === 1 && (await l7no.count()) === 1);
    await until(
      'the HTTP summaries',
      async () => (await l7ok.getAttribute('data-l7')) === 'GET /public 200 ×3; GET /api/v1 200 ×1',
    );
    assert.equal(await l7no.getAttribute('data-l7'), 'GET /admin 403 ×2; GET /private 403 ×1');
    assert.equal(
      await page
        .locator('g.edge-label[data-from="app/client"][data-to="app/web"][data-verdict="forwarded"] text')
        .textContent(),
      '\u2713 GET /public 200 \u00d73 +1',
    );
    assert.equal(
      await edge(page, 'other/visitor', 'app/web', 'forwarded').getAttribute('data-l7'),
      'GET /public 200 ×1',
    );
    assert.equal(await edge(page, 'app/client', 'app/web', 'dropped').count(), 0);
    // Readable at a glance: no label over another label or over a pod's box.
    const o = await overlaps(page);
    assert.ok(o.labels.length >= 8, `labels drawn: ${o.labels.map((l) => l.what).join(' | ')}`);
    assert.deepEqual(o.clashes, []);
    await page.screenshot({ path: join(shots, '1-map-and-flows.png') });

    // The table: both pairs, with their verdicts and the policies that decided them.
    const all = await rows(page);
    const fromClient = all.filter((r) => r.source === 'app/client' && r.destination === 'app/server');
    const fromIntruder = all.filter((r) => r.source === 'app/intruder' && r.destination === 'app/server');
    assert.ok(
      fromClient.length > 0 && fromClient.every((r) => r.verdict === 'FORWARDED'),
      JSON.stringify(all),
    );
    // Leaving the intruder is allowed (EGRESS, FORWARDED); the server's ingress drops it.
    assert.ok(
      fromIntruder.some((r) => r.verdict === 'DROPPED' && r.direction === 'INGRESS'),
      JSON.stringify(fromIntruder),
    );
    assert.ok(
      fromClient.some((r) => r.policy.includes('allowed by app/server-allow-client')),
      JSON.stringify(fromClient),
    );
    assert.ok(
      fromIntruder.some((r) => r.policy.includes('denied by app/server-deny-intruder')),
      JSON.stringify(fromIntruder),
    );
    assert.ok(
      fromIntruder.some((r) => r.port === '80/TCP' && r.reason !== ''),
      JSON.stringify(fromIntruder),
    );
    assert.match((await page.locator('#status').textContent()) ?? '', /live · \d+ flows seen/);

    // A filter narrows the table (and the stream): only drops remain.
    await page.selectOption('select[name="verdict"]', 'DROPPED');
    await page.waitForURL(/verdict=DROPPED/);
    await until('only DROPPED rows', async () => {
      const verdicts = (await rows(page)).map((r) => r.verdict);
      return verdicts.length > 0 && verdicts.every((v) => v === 'DROPPED');
    });
    const drops = await rows(page);
    assert.ok(drops.every((r) => r.verdict === 'DROPPED'));
    assert.ok(drops.some((r) => r.source === 'app/intruder'));
    assert.equal(
      await edge(page, 'app/client', 'app/server', 'forwarded').count(),
      0,
      'the map follows the filter',
    );
    await page.screenshot({ path: join(shots, '2-filter-dropped.png') });

    // Back to every verdict; then new traffic made while the page is open shows up live.
    await page.selectOption('select[name="verdict"]', '');
    await allowed.waitFor({ timeout: 10_000 });
    const countBefore = Number(await allowed.getAttribute('data-count'));
    assert.equal(await edge(page, 'other/visitor', 'app/server', 'dropped').count(), 0);
    assert.equal(
      await probe('other/visitor', 'app/server'),
      false,
      'visitor -> server is denied (default deny)',
    );
    assert.equal(await probe('app/client', 'app/server'), true);
    await edge(page, 'other/visitor', 'app/server', 'dropped').waitFor({ timeout: 10_000 });
    await until(
      'a higher client -> server count',
      async () => Number(await allowed.getAttribute('data-count')) > countBefore,
    );
    const live = await rows(page);
    const times = live.map((r) => r.time);
    assert.deepEqual(times, [...times].sort().reverse(), 'newest on top');
    assert.ok(live.some((r) => r.source === 'other/visitor' && r.verdict === 'DROPPED'));
    assert.deepEqual((await overlaps(page)).clashes, [], 'still no overlaps after live updates');
    await page.screenshot({ path: join(shots, '3-live.png') });
    // The table shows L7 flows: their kind, verdict and summary.
    await page.selectOption('select[name="type"]', 'l7');
    await page.waitForURL(/type=l7/);
    await until('only L7 rows', async () => {
      const r = await rows(page);
      return r.length > 0 && r.every((x) => /^http-(request|response)$/.test(x.type));
    });
    const l7rows = await rows(page);
    assert.ok(
      l7rows.some(
        (r) =>
          r.type === 'http-response' &&
          r.verdict === 'DROPPED' &&
          /HTTP\/1\.1 403 \d+ms \(GET http:\/\/[\d.]+\/private\)/.test(r.summary),
      ),
      JSON.stringify(l7rows.slice(0, 5)),
    );
    assert.ok(l7rows.some((r) => r.type === 'http-request' && r.policy.includes('allowed by app/web-l7')));
    await page.screenshot({ path: join(shots, '4-l7-flows.png') });
    await page.selectOption('select[name="type"]', '');
    assert.deepEqual(pageErrors, [], 'no script errors on the page');
  });
});
