// The pending policy diff on the web UI's service map, in a real browser (Debian's Chromium driven
// by playwright-core): a lab with its agent, pods and a policy in force; the page posts a changed
// policy (pasted as YAML) to `weir ui`, which asks the agent's policy diff; the map then draws the
// connections that would be allowed (added) and denied (removed) as their own dashed edges in
// their own colours, the summary counts them, bad YAML shows apply's error and no edges, Clear
// removes them — and nothing was applied (real traffic keeps the old verdicts).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { testLab } from '../support/lab-name.js';
import { edgeSel, probe as labProbe, shots, UiLab } from '../support/ui-browser.js';
import { until as poll } from '../support/poll.js';

const LAB = testLab('t-uidiff');

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

/** Polls `check` (bounded: 10 s by default) until it holds. */
const until = (what: string, check: () => Promise<boolean>, ms = 10_000) => poll(what, check, ms, 100);

const probe = (from: string, to: string) => labProbe(LAB, from, to, '80/TCP', 800);

const style = (selector: string, prop: 'stroke' | 'strokeDasharray') =>
  `getComputedStyle(document.querySelector(${JSON.stringify(selector + ' path')})).${prop}`;

describe('ui: a pending policy diff on the service map', { timeout: 180_000 }, () => {
  const ui = new UiLab(LAB);

  before(() => ui.up('weir-uidiff-', { 'pods.yaml': pods, 'policy.yaml': policy('client') }));
  after(() => ui.down());

  it('draws the edges that would appear and vanish, applies nothing', async () => {
    assert.equal(await probe('app/client', 'app/server'), true);
    assert.equal(await probe('app/other', 'app/server'), false);
    const { page, pageErrors: errors } = await ui.browse(await ui.startUi());
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
