// The web UI end to end, in a real browser: a lab with its agent, pods and policies; real allowed
// and denied connections between pods; `weir ui` on a free loopback port; Debian's Chromium
// (headless, driven by playwright-core, no browser download) shows the pods and one edge per flow
// pair coloured by verdict, lists the flows with verdicts and policy names, narrows the table with
// a filter, and shows new traffic live. Screenshots land in test/e2e/screenshots/ (gitignored).
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from '../../src/shared/paths.js';
import { cli, ok, weir } from '../support/cli.js';

const LAB = `t-ui-${process.pid % 100000}`;
const shots = join(repoRoot, 'test', 'e2e', 'screenshots');

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
`;

/** Chromium's computed colours of the palette in src/ui/static/style.css. */
const GREEN = 'rgb(26, 127, 55)';
const RED = 'rgb(207, 34, 46)';

async function probe(from: string, to: string): Promise<boolean> {
  const r = await cli(
    ['lab', 'probe', '--from', from, '--to', to, '--port', '80/TCP', '--timeout', '800'],
    LAB,
  );
  return r.code === 0;
}

/** Starts `weir ui` on a free loopback port; resolves with its URL. */
function startUi(): Promise<{ child: ChildProcessWithoutNullStreams; url: string }> {
  const child = spawn(weir, ['ui', '--lab', LAB, '--listen', '127.0.0.1:0']);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`weir ui did not start: ${out} ${err}`)), 15_000);
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
    child.on('exit', (code) => reject(new Error(`weir ui exited ${code}: ${err}`)));
  });
}

interface Row {
  time: string;
  source: string;
  destination: string;
  port: string;
  verdict: string;
  reason: string;
  policy: string;
  direction: string;
}

function rows(page: Page): Promise<Row[]> {
  return page.$$eval('#flows tbody tr', (trs) =>
    trs.map((tr) => {
      const c = [...tr.querySelectorAll('td')].map((td) => (td.textContent ?? '').trim());
      return {
        time: c[0] ?? '',
        source: c[1] ?? '',
        destination: c[2] ?? '',
        port: c[3] ?? '',
        verdict: (c[4] ?? '').replace(/^\S+\s/, ''),
        reason: c[5] ?? '',
        policy: c[6] ?? '',
        direction: c[7] ?? '',
      };
    }),
  );
}

// Page-side code as text: the tests compile without the DOM library.
const edgeSelector = (from: string, to: string, verdict: string) =>
  `g.edge[data-from="${from}"][data-to="${to}"][data-verdict="${verdict}"]`;
const strokeOf = (selector: string) =>
  `getComputedStyle(document.querySelector(${JSON.stringify(selector + ' path')})).stroke`;

/** Polls `check` (bounded) until it holds; the page's CSP forbids Playwright's eval-based waits. */
async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function edge(page: Page, from: string, to: string, verdict: 'forwarded' | 'dropped') {
  return page.locator(edgeSelector(from, to, verdict));
}

describe('ui: live service map and flow table in Chromium', { timeout: 180_000 }, () => {
  let dir: string;
  let ui: ChildProcessWithoutNullStreams | undefined;
  let context: BrowserContext | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-ui-test-'));
    await mkdir(shots, { recursive: true });
    await writeFile(join(dir, 'pods.yaml'), pods);
    await writeFile(join(dir, 'policies.yaml'), policies);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up'], LAB);
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB);
    await ok(['apply', '-f', join(dir, 'policies.yaml')], LAB);
  });

  after(async () => {
    await context?.close();
    ui?.kill('SIGTERM');
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('shows pods, verdict-coloured edges, flows with policies, filters, and live traffic', async () => {
    // Traffic before the page opens: the agent replays it when the page connects.
    assert.equal(await probe('app/client', 'app/server'), true, 'client -> server is allowed');
    assert.equal(await probe('app/intruder', 'app/server'), false, 'intruder -> server is denied');

    const started = await startUi();
    ui = started.child;
    context = await chromium.launchPersistentContext(join(dir, 'chromium-profile'), {
      executablePath: '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(started.url);

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
    assert.deepEqual(columns.slice(0, 2), ['app', 'other'], 'namespaces as columns, in name order');
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
    await page.screenshot({ path: join(shots, '3-live.png') });
    assert.deepEqual(pageErrors, [], 'no script errors on the page');
  });
});
