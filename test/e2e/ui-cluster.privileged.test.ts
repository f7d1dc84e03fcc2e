// The web UI of a lab of two nodes, in a real browser: pods on both nodes (client and other on
// node1, server on node2), real connections between them through the tunnel (client → server
// allowed, other → server dropped by node2's ingress policy); `weir ui` relays every node's flows
// as `weir observe` does. Debian's Chromium (headless, playwright-core) shows both nodes' flows
// with their node names in time order, each pod's node on the map and the edges between the
// nodes; the node menu narrows the table to one node (as `weir observe --node`); new traffic shows
// up live from both nodes; the history (/api/flows) is the cluster's, merged in time order.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { crossNodePods, serverFromClient } from '../support/cluster-pods.js';
import { testLab } from '../support/lab-name.js';
import { edgeSel, probe as labProbe, rows as tableRows, shots, UiLab } from '../support/ui-browser.js';
import { until as poll } from '../support/poll.js';

const LAB = testLab('t-uic');

const manifests = `${crossNodePods}---
${serverFromClient}`;

const probe = (from: string, to: string) => labProbe(LAB, from, to, '8080/TCP', 1500);

/** Polls `check` (bounded: 20 s) until it holds. */
const until = (what: string, check: () => Promise<boolean>) => poll(what, check, 20_000, 150);

const rows = (page: Page) =>
  tableRows(page, ['time', 'node', 'source', 'destination', 'verdict', 'direction'] as const);

describe('ui: the flows of a lab of two nodes in Chromium', { timeout: 420_000 }, () => {
  const ui = new UiLab(LAB);

  before(() => ui.up('weir-ui-cluster-test-', { 'all.yaml': manifests }, ['--nodes', '2'], 240_000));
  after(() => ui.down());

  it("shows every node's flows with their node, pods' nodes and cross-node edges; the node menu narrows", async () => {
    // Traffic before the page opens: every agent replays it when the page connects.
    assert.ok(await probe('default/client', 'default/server'), 'client -> server is allowed');
    assert.ok(!(await probe('default/other', 'default/server')), 'other -> server is denied');

    const url = await ui.startUi();
    // The history: the cluster's flows, merged in time order, each naming its node.
    const history = (
      await (await fetch(`${url}api/flows?from-pod=default/client&from-pod=default/other&last=200`)).text()
    )
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { flow: { time: string; node_name: string } }).flow);
    assert.deepEqual(
      [...new Set(history.map((f) => f.node_name))].sort(),
      ['node1', 'node2'],
      'history of both nodes',
    );
    const times = history.map((f) => f.time);
    assert.deepEqual(times, [...times].sort(), 'history in time order');
    const narrowed = await fetch(`${url}api/flows?node=node9`);
    assert.equal(narrowed.status, 400);
    assert.match(await narrowed.text(), /node9/);

    const { page, pageErrors } = await ui.browse(url);

    // The map: each pod with its node; the edges between pods of the two nodes.
    for (const [pod, node] of [
      ['default/client', 'node1'],
      ['default/other', 'node1'],
      ['default/server', 'node2'],
    ])
      await page.locator(`g.node[data-node="${pod}"][data-k8s-node="${node}"]`).waitFor({ timeout: 20_000 });
    assert.equal(
      (await page.locator('g.node[data-node="default/server"] text.node-name').textContent())?.trim(),
      'node2',
      "the server's box names its node",
    );
    const allowed = page.locator(edgeSel('default/client', 'default/server', 'forwarded'));
    const denied = page.locator(edgeSel('default/other', 'default/server', 'dropped'));
    await allowed.waitFor({ timeout: 20_000 });
    await denied.waitFor({ timeout: 20_000 });
    for (const e of [allowed, denied]) {
      assert.equal(await e.getAttribute('data-from-node'), 'node1');
      assert.equal(await e.getAttribute('data-to-node'), 'node2');
      assert.match((await e.getAttribute('class')) ?? '', /\bcross-node\b/);
    }
    // node1 let other's packets leave; node2's ingress decided: the map shows the drop only.
    assert.equal(await page.locator(edgeSel('default/other', 'default/server', 'forwarded')).count(), 0);

    // The table: flows of both nodes, each naming its node, newest on top.
    await until('rows of both nodes', async () => {
      const nodes = new Set((await rows(page)).map((r) => r.node));
      return nodes.has('node1') && nodes.has('node2');
    });
    const all = await rows(page);
    assert.ok(
      all.some((r) => r.node === 'node1' && r.source === 'default/client' && r.direction === 'EGRESS'),
      "node1's flow of client leaving",
    );
    assert.ok(
      all.some(
        (r) =>
          r.node === 'node2' &&
          r.source === 'default/other' &&
          r.verdict === 'DROPPED' &&
          r.direction === 'INGRESS',
      ),
      "node2's drop of other",
    );
    const shown = all.map((r) => r.time);
    assert.deepEqual(shown, [...shown].sort().reverse(), 'newest on top');
    assert.equal(await page.locator('#node-filter').isVisible(), true, 'the node menu is shown');
    await page.screenshot({ path: join(shots, 'cluster-1-every-node.png') });

    // The node menu narrows the flows to one node, as `weir observe --node`.
    for (const node of ['node2', 'node1']) {
      await page.selectOption('select[name="node"]', node);
      await page.waitForURL(new RegExp(`node=${node}`));
      await until(`only ${node}'s rows`, async () => {
        const r = await rows(page);
        return r.length > 0 && r.every((x) => x.node === node);
      });
    }
    // node1's own view: other's packets left it (forwarded); the drop is node2's.
    await until("node1's forwarded other -> server", async () =>
      (await rows(page)).some((r) => r.source === 'default/other' && r.verdict === 'FORWARDED'),
    );
    assert.ok((await rows(page)).every((r) => r.verdict !== 'DROPPED' || r.source !== 'default/other'));
    await page.screenshot({ path: join(shots, 'cluster-2-node1.png') });

    // Every node again; new traffic while the page is open comes live from both nodes.
    await page.selectOption('select[name="node"]', '');
    await page.waitForURL((u) => !u.search.includes('node='));
    await allowed.waitFor({ timeout: 20_000 });
    await denied.waitFor({ timeout: 20_000 });
    const before = {
      allowed: Number(await allowed.getAttribute('data-count')),
      denied: Number(await denied.getAttribute('data-count')),
    };
    assert.ok(await probe('default/client', 'default/server'));
    assert.ok(!(await probe('default/other', 'default/server')));
    await until(
      'higher counts on both cross-node edges',
      async () =>
        Number(await allowed.getAttribute('data-count')) > before.allowed &&
        Number(await denied.getAttribute('data-count')) > before.denied,
    );
    const live = await rows(page);
    assert.deepEqual([...new Set(live.map((r) => r.node))].sort(), ['node1', 'node2']);
    await page.screenshot({ path: join(shots, 'cluster-3-live.png') });
    assert.deepEqual(pageErrors, [], 'no script errors on the page');
  });
});
