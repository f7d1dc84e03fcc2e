// Flows across the nodes of a lab, as Hubble Relay: `weir observe` without --node asks every
// node's agent and prints their flows merged in time order, each naming its node; --node narrows
// it to one node; -f follows every node at once. Each agent serves its metrics over TCP on its node
// (--prometheus-serve-addr): Debian's Prometheus, run in the lab's underlay namespace, scrapes both
// nodes and the Grafana dashboard's queries answer per node. Real traffic between pods of two nodes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repoRoot } from '../../src/shared/paths.js';
import { run } from '../../src/shared/exec.js';
import { cli, ok, weir } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { crossNodePods, serverFromClient } from '../support/cluster-pods.js';
import { probe8080 } from '../support/cluster-nodes.js';

const LAB = testLab('t-relay');

const manifests = `${crossNodePods}---
${serverFromClient}`;

interface F {
  time: string;
  node_name: string;
  verdict: string;
  source?: { pod_name?: string };
  destination?: { pod_name?: string };
}
const parse = (out: string) =>
  out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as F);

const probe = (from: string, to: string) => probe8080(LAB, from, to, 1500);

describe('weir observe across nodes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-relay-test-'));
    await writeFile(join(dir, 'all.yaml'), manifests);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '--nodes', '2', '--prometheus-serve-addr', ':9962'], LAB, 240_000);
    await ok(['apply', '-f', join(dir, 'all.yaml')], LAB);
    assert.ok(await probe('default/client', 'default/server'), 'client -> server is allowed');
    assert.ok(!(await probe('default/other', 'default/server')), 'other -> server is denied');
  });
  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it("merges every node's flows in time order, each naming its node", async () => {
    const until = new Date().toISOString();
    const q = ['--from-pod', 'default/client', '--from-pod', 'default/other', '--until', until];
    const flows = parse(await ok(['observe', ...q, '--last', '200', '-o', 'json'], LAB));
    const nodes = new Set(flows.map((f) => f.node_name));
    assert.deepEqual([...nodes].sort(), ['node1', 'node2'], 'flows of both nodes');
    const times = flows.map((f) => f.time);
    assert.deepEqual(times, [...times].sort(), 'in time order');
    // node1 saw client's connection leave; node2 judged other's SYN.
    assert.ok(
      flows.some((f) => f.node_name === 'node1' && f.source?.pod_name === 'client'),
      "node1's flows of client",
    );
    assert.ok(
      flows.some((f) => f.node_name === 'node2' && f.verdict === 'DROPPED' && f.source?.pod_name === 'other'),
      "node2's drop of other",
    );
    // --last counts the merged flows.
    const three = parse(await ok(['observe', ...q, '--last', '3', '-o', 'json'], LAB));
    assert.deepEqual(three, flows.slice(-3), 'the newest three of the cluster');
  });

  it('--node narrows to one node', async () => {
    const flows = parse(await ok(['observe', '--node', 'node2', '--last', '200', '-o', 'json'], LAB));
    assert.ok(flows.length > 0);
    assert.deepEqual([...new Set(flows.map((f) => f.node_name))], ['node2']);
    const bad = await cli(['observe', '--node', 'node9'], LAB);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /node9/);
  });

  it('-f follows every node', async () => {
    const child = spawn(
      weir,
      ['observe', '-f', '--from-pod', 'default/client', '--from-pod', 'default/other', '-o', 'json'],
      {
        env: { ...process.env, WEIR_LAB: LAB },
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    try {
      await new Promise((r) => setTimeout(r, 1500)); // both streams open
      const start = new Date().toISOString();
      assert.ok(await probe('default/client', 'default/server'));
      assert.ok(!(await probe('default/other', 'default/server')));
      const deadline = Date.now() + 20_000;
      const seen = () =>
        new Set(
          parse(out.slice(0, out.lastIndexOf('\n') + 1))
            .filter((f) => f.time >= start)
            .map((f) => f.node_name),
        );
      while (seen().size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual([...seen()].sort(), ['node1', 'node2'], 'new flows of both nodes while following');
    } finally {
      child.kill('SIGINT');
      await exited;
    }
  });

  it('Prometheus scrapes every node; the dashboard queries answer per node', async (t) => {
    if (!existsSync('/usr/bin/prometheus')) return t.skip("Debian's prometheus is not installed");
    const ns = `weir-${LAB}-underlay`;
    const nodes = { node1: '198.18.0.11:9962', node2: '198.18.0.12:9962' };
    const pdir = join(dir, 'prometheus');
    await mkdir(join(pdir, 'data'), { recursive: true });
    await writeFile(
      join(pdir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'scrape_configs:',
        '  - job_name: weir',
        '    static_configs:',
        ...Object.entries(nodes).map(([n, a]) => `      - { targets: ['${a}'], labels: { node: ${n} } }`),
        '',
      ].join('\n'),
    );
    const prom = spawn(
      'ip',
      [
        ...['netns', 'exec', ns, '/usr/bin/prometheus'],
        `--config.file=${join(pdir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(pdir, 'data')}`,
        '--web.listen-address=127.0.0.1:19090',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let promLog = '';
    prom.stderr.on('data', (d: Buffer) => (promLog += d.toString()));
    const exited = new Promise((r) => prom.on('exit', r));
    const api = async (path: string, params: Record<string, string> = {}) => {
      const args = Object.entries(params).flatMap(([k, v]) => ['--data-urlencode', `${k}=${v}`]);
      const r = await run(
        ['ip', 'netns', 'exec', ns, 'curl', '-sf', '-G', `http://127.0.0.1:19090${path}`, ...args],
        {
          check: false,
        },
      );
      return r.code === 0 ? (JSON.parse(r.stdout) as { data: unknown }).data : undefined;
    };
    const query = async (expr: string) =>
      (
        (await api('/api/v1/query', { query: expr })) as
          { result: { metric: Record<string, string> }[] } | undefined
      )?.result ?? [];
    try {
      // Both targets up.
      const deadline = Date.now() + 60_000;
      let up: { metric: Record<string, string> }[] = [];
      while (Date.now() < deadline) {
        up = await query('up == 1');
        if (up.length === 2) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.deepEqual(up.map((s) => s.metric.node).sort(), ['node1', 'node2'], `both nodes up\n${promLog}`);
      // Traffic while scraping, then a few more scrapes so rates have two points.
      assert.ok(await probe('default/client', 'default/server'));
      assert.ok(!(await probe('default/other', 'default/server')));
      await new Promise((r) => setTimeout(r, 5000));
      assert.ok(await probe('default/client', 'default/server'));
      await new Promise((r) => setTimeout(r, 4000));

      const dashboard = JSON.parse(
        readFileSync(join(repoRoot, 'docs/grafana/weir-dashboard.json'), 'utf8'),
      ) as {
        panels: { title: string; targets?: { expr: string }[] }[];
      };
      const exprs = dashboard.panels.flatMap((p) =>
        (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })),
      );
      // Each node's scraped families: a query of a family the node has must answer for the node.
      const answered: Record<string, number> = {};
      const familiesOf: Record<string, Set<string>> = {};
      const familyOf = (expr: string) => /([a-z_]+)\{instance/.exec(expr)?.[1] ?? '';
      const has = (names: Set<string>, family: string) =>
        [family, family.replace(/_(bucket|total)$/, '')].some((f) => names.has(f) || names.has(`${f}_total`));
      for (const [node, addr] of Object.entries(nodes)) {
        const names = new Set(
          ((await api('/api/v1/label/__name__/values', { 'match[]': `{node="${node}"}` })) as
            string[] | undefined) ?? [],
        );
        assert.ok(names.has('weir_endpoint') && names.has('weir_identity'), `${node}'s series are stored`);
        familiesOf[node] = names;
        for (const { title, expr } of exprs) {
          if (!has(names, familyOf(expr))) continue;
          const q = expr
            .replaceAll('$instance', addr.replaceAll('.', '\\\\.'))
            .replaceAll('$__rate_interval', '10s');
          const result = await query(q);
          assert.ok(result.length > 0, `${node}: "${title}" returns data (${q})`);
          answered[node] = (answered[node] ?? 0) + 1;
        }
      }
      // The panels every node has data for: endpoints, identities, flows, forwards, drops,
      // policy verdicts, map pressure, regenerations, map operations.
      for (const node of Object.keys(nodes))
        assert.ok((answered[node] ?? 0) >= 10, `${node}: ${answered[node]} queries`);
      // Every agent selected ($instance = All, .*): each query keeps the nodes apart, one series
      // (or set of series) per node, not one sum over the cluster.
      let apart = 0;
      for (const { title, expr } of exprs) {
        const family = familyOf(expr);
        const both = Object.keys(nodes).filter((n) => has(familiesOf[n] ?? new Set(), family));
        if (both.length < 2) continue;
        const q = expr.replaceAll('$instance', '.*').replaceAll('$__rate_interval', '10s');
        const instances = new Set((await query(q)).map((r) => r.metric.instance));
        assert.deepEqual([...instances].sort(), Object.values(nodes).sort(), `"${title}" per node (${q})`);
        apart++;
      }
      assert.ok(apart >= 10, `${apart} queries answer per node with every agent selected`);
      t.diagnostic(`dashboard queries answering per node: ${JSON.stringify(answered)} of ${exprs.length}`);
    } finally {
      prom.kill('SIGTERM');
      await exited;
    }
  });
});
