// The pending policy diff on the web UI's service map, in a real browser (Debian's Chromium driven
// by playwright-core): a lab with its agent, pods and a policy in force; the page posts a changed
// policy (pasted as YAML) to `weir ui`, which asks the agent's policy diff; the map then draws the
// connections that would be allowed (added) and denied (removed) as their own dashed edges in
// their own colours, the summary counts them, bad YAML shows apply's error and no edges, Clear
// removes them — and nothing was applied (real traffic keeps the old verdicts).
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from '../../src/shared/paths.js';
import { cli, ok, weir } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-uidiff');
const shots = join(repoRoot, 'test', 'e2e', 'screenshots');

const pods = `
apiVersion: v1
kind: Namespace
metadata: { name: app }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app, labels: { role: client } }
spec: { containers: [{ name: c, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: other, namespace: app, labels: { role: other } }
spec: { containers: [{ name: o, ports: [{ containerPort: 80 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: app, labels: { role: server } }
spec: { containers: [{ name: s, ports: [{ containerPort: 80 }, { containerPort: 53, protocol: UDP }] }] }
`;

const policy = (from: string) => `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: server-ingress, namespace: app }
spec:
  podSelector: { matchLabels: { role: server } }
  policyTypes: [Ingress]
  ingress: [{ from: [{ podSelector: { matchLabels: { role: ${from} } } }] }]
`;

/** Chromium's computed colours of --added and --removed in src/ui/static/style.css. */
const BLUE = 'rgb(9, 105, 218)';
const PURPLE = 'rgb(130, 80, 223)';

async function probe(from: string, to: string): Promise<boolean> {
  const r = await cli(
    ['lab', 'probe', '--from', from, '--to', to, '--port', '80/TCP', '--timeout', '800'],
    LAB,
  );
  return r.code === 0;
}

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

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const edgeSel = (from: string, to: string, cls: string) =>
  `g.edge[data-from="${from}"][data-to="${to}"][data-verdict="${cls}"]`;
const style = (selector: string, prop: 'stroke' | 'strokeDasharray') =>
  `getComputedStyle(document.querySelector(${JSON.stringify(selector + ' path')})).${prop}`;

describe('ui: a pending policy diff on the service map', { timeout: 180_000 }, () => {
  let dir: string;
  let ui: ChildProcessWithoutNullStreams | undefined;
  let context: BrowserContext | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-uidiff-'));
    await mkdir(shots, { recursive: true });
    await writeFile(join(dir, 'pods.yaml'), pods);
    await writeFile(join(dir, 'policy.yaml'), policy('client'));
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up'], LAB);
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB);
    await ok(['apply', '-f', join(dir, 'policy.yaml')], LAB);
  });
  after(async () => {
    await context?.close();
    ui?.kill('SIGTERM');
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('draws the edges that would appear and vanish, applies nothing', async () => {
    assert.equal(await probe('app/client', 'app/server'), true);
    assert.equal(await probe('app/other', 'app/server'), false);
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
        '--no-first-run',
        '--disable-background-networking',
      ],
    });
    const page: Page = context.pages()[0] ?? (await context.newPage());
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(started.url);
    await page.locator('g.node[data-node="app/server"]').waitFor({ timeout: 10_000 });

    // The server's ingress moves from client to other.
    await page.locator('#pending summary').click();
    await page.fill('#pending-form textarea', policy('other'));
    await page.click('#pending-form button[type="submit"]');
    const added = page.locator(edgeSel('app/other', 'app/server', 'added'));
    const removed = page.locator(edgeSel('app/client', 'app/server', 'removed'));
    await until(
      'the pending edges',
      async () => (await added.count()) === 1 && (await removed.count()) === 1,
    );
    // Each pair: both ports of the server (80/TCP, 53/UDP) change.
    assert.equal(await added.getAttribute('data-count'), '2');
    assert.equal(await removed.getAttribute('data-count'), '2');
    assert.match(
      (await removed.locator('title').textContent()) ?? '',
      /would be denied \(53\/UDP, 80\/TCP\)/,
    );
    assert.equal(await page.evaluate(style(edgeSel('app/other', 'app/server', 'added'), 'stroke')), BLUE);
    assert.equal(
      await page.evaluate(style(edgeSel('app/client', 'app/server', 'removed'), 'stroke')),
      PURPLE,
    );
    assert.notEqual(
      await page.evaluate(style(edgeSel('app/other', 'app/server', 'added'), 'strokeDasharray')),
      'none',
    );
    // Only the pairs that change: nothing for client -> other, other -> client.
    assert.equal(
      await page.locator('g.edge[data-verdict="added"], g.edge[data-verdict="removed"]').count(),
      2,
    );
    assert.match(
      (await page.locator('#pending-summary').textContent()) ?? '',
      /^4 connections would change: 2 allowed \(\+\), 2 denied \(\u2212\); \d+ unchanged$/,
    );
    assert.equal(
      await page
        .locator('g.edge-label[data-from="app/other"][data-to="app/server"][data-verdict="added"] text')
        .textContent(),
      '+ 2 \u00b7 53/UDP, 80/TCP',
    );
    await page.screenshot({ path: join(shots, 'diff-1-pending.png') });
    // Nothing was applied.
    assert.equal(await probe('app/client', 'app/server'), true);
    assert.equal(await probe('app/other', 'app/server'), false);

    // Bad input: the API's error, no pending edges.
    await page.fill(
      '#pending-form textarea',
      policy('other').replace('namespace: app', 'namespace: nowhere'),
    );
    await page.click('#pending-form button[type="submit"]');
    await until(
      'the error',
      async () => (await page.locator('#pending-summary').getAttribute('data-state')) === 'error',
    );
    assert.match((await page.locator('#pending-summary').textContent()) ?? '', /nowhere/);
    // The map is redrawn on the next animation frame.
    await until(
      'no pending edges after the error',
      async () =>
        (await page.locator('g.edge[data-verdict="added"], g.edge[data-verdict="removed"]').count()) === 0,
    );

    // Clear.
    await page.fill('#pending-form textarea', policy('other'));
    await page.click('#pending-form button[type="submit"]');
    await until('the pending edges again', async () => (await added.count()) === 1);
    await page.click('#pending-form button[type="reset"]');
    await until('no pending edges', async () => (await added.count()) === 0 && (await removed.count()) === 0);
    assert.deepEqual(errors, []);
  });
});
