// The web UI of a lab of two nodes, in a real browser: pods on both nodes (client and other on
// node1, server on node2), real connections between them through the tunnel (client → server
// allowed, other → server dropped by node2's ingress policy); `weir ui` relays every node's flows
// as `weir observe` does. Debian's Chromium (headless, playwright-core) shows both nodes' flows
// with their node names in time order, each pod's node on the map and the edges between the
// nodes; the node menu narrows the table to one node (as `weir observe --node`); new traffic shows
// up live from both nodes; the history (/api/flows) is the cluster's, merged in time order.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from '../../src/shared/paths.js';
import { cli, ok, weir } from '../support/cli.js';
import { crossNodePods } from '../support/cluster-pods.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-uic');
const shots = join(repoRoot, 'test', 'e2e', 'screenshots');

const manifests = `${crossNodePods}---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-from-client }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }]
`;

async function probe(from: string, to: string): Promise<boolean> {
  const r = await cli(
    ['lab', 'probe', '--from', from, '--to', to, '--port', '8080/TCP', '--timeout', '1500'],
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

/** Polls `check` (bounded) until it holds; the page's CSP forbids Playwright's eval-based waits. */
async function until(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

interface Row {
  time: string;
  node: string;
  source: string;
  destination: string;
  verdict: string;
  direction: string;
}

function rows(page: Page): Promise<Row[]> {
  return page.$$eval('#flows tbody tr', (trs) =>
    trs.map((tr) => {
      const c = (cls: string) => (tr.querySelector(`td.${cls}`)?.textContent ?? '').trim();
      return {
        time: c('time'),
        node: c('node'),
        source: c('source'),
        destination: c('destination'),
        verdict: c('verdict').replace(/^\S+\s/, ''),
        direction: c('direction'),
      };
    }),
  );
}

const edgeSel = (from: string, to: string, verdict: string) =>
  `g.edge[data-from="${from}"][data-to="${to}"][data-verdict="${verdict}"]`;

describe('ui: the flows of a lab of two nodes in Chromium', { timeout: 420_000 }, () => {
  let dir: string;
  let ui: ChildProcessWithoutNullStreams | undefined;
  let context: BrowserContext | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-ui-cluster-test-'));
    await mkdir(shots, { recursive: true });
    await writeFile(join(dir, 'all.yaml'), manifests);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '--nodes', '2'], LAB, 240_000);
    await ok(['apply', '-f', join(dir, 'all.yaml')], LAB);
  });

  after(async () => {
    await context?.close();
    ui?.kill('SIGTERM');
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it("shows every node's flows with their node, pods' nodes and cross-node edges; the node menu narrows", async () => {
    // Traffic before the page opens: every agent replays it when the page connects.
    assert.ok(await probe('default/client', 'default/server'), 'client -> server is allowed');
    assert.ok(!(await probe('default/other', 'default/server')), 'other -> server is denied');

    const started = await startUi();
    ui = started.child;
    // The history: the cluster's flows, merged in time order, each naming its node.
    const history = (
      await (
        await fetch(`${started.url}api/flows?from-pod=default/client&from-pod=default/other&last=200`)
      ).text()
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
    const narrowed = await fetch(`${started.url}api/flows?node=node9`);
    assert.equal(narrowed.status, 400);
    assert.match(await narrowed.text(), /node9/);

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
