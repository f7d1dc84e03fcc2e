// docs/grafana/weir-dashboard.json queries only metrics the agent exports, through the datasource
// variable, and the scrape-time metrics read their sources.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { repoRoot } from '../shared/paths.js';
import { AgentMetrics } from './metrics.js';

interface Panel {
  datasource: { uid: string };
  targets: { expr: string }[];
}

describe('grafana dashboard', () => {
  it('uses only metrics the agent exports, through the Prometheus datasource variable', async () => {
    const dash = JSON.parse(
      readFileSync(join(repoRoot, 'docs', 'grafana', 'weir-dashboard.json'), 'utf8'),
    ) as {
      panels: Panel[];
      templating: { list: { name: string; type: string }[] };
    };
    assert.ok(dash.templating.list.some((t) => t.name === 'datasource' && t.type === 'datasource'));
    const m = new AgentMetrics();
    const names = new Set((await m.registry.getMetricsAsJSON()).map((x) => x.name));
    for (const p of dash.panels) {
      assert.equal(p.datasource.uid, '${datasource}');
      for (const t of p.targets) {
        for (const [, metric] of t.expr.matchAll(/\b((?:weir|hubble)_\w+?)(?:_bucket)?\{/g)) {
          assert.ok(names.has(metric as string), `${metric} is not exported`);
        }
      }
    }
  });

  it('reads datapath counters and losses at scrape time', async () => {
    const m = new AgentMetrics();
    m.sources.datapathCounters = () => [
      { reason: 0, direction: 'egress', packets: 5n, bytes: 500n },
      { reason: 133, direction: 'ingress', packets: 2n, bytes: 148n },
    ];
    m.sources.lostEvents = () => ({ PERF_EVENT_RING_BUFFER: 7 });
    const text = await m.registry.metrics();
    assert.match(text, /weir_forward_count_total\{direction="EGRESS"\} 5/);
    assert.match(text, /weir_drop_bytes_total\{reason="Policy denied",direction="INGRESS"\} 148/);
    assert.match(text, /hubble_lost_events_total\{source="PERF_EVENT_RING_BUFFER"\} 7/);
    // Totals, not sums of scrapes.
    assert.match(await m.registry.metrics(), /weir_forward_count_total\{direction="EGRESS"\} 5/);
  });
});
