// The connection-rate section's reading of the agent's /metrics (Prometheus text).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { counterSum } from './connrate.js';

const text = `# HELP hubble_flows_processed_total Flows processed by the flow pipeline
# TYPE hubble_flows_processed_total counter
hubble_flows_processed_total{type="Trace",subtype="to-endpoint",verdict="FORWARDED"} 120
hubble_flows_processed_total{type="PolicyVerdict",subtype="",verdict="DROPPED"} 3
hubble_flows_processed_totally_other 99
# HELP hubble_lost_events_total Flow events lost
# TYPE hubble_lost_events_total counter
hubble_lost_events_total{source="PERF_EVENT_RING_BUFFER"} 0
hubble_lost_events_total{source="OBSERVER_EVENTS_QUEUE"} 7
weir_plain_total 5
`;

describe('counterSum', () => {
  it('adds every labelled sample of one counter, and no other metric sharing its prefix', () => {
    assert.equal(counterSum(text, 'hubble_flows_processed_total'), 123);
    assert.equal(counterSum(text, 'hubble_lost_events_total'), 7);
  });
  it('reads an unlabelled sample; an absent counter is 0', () => {
    assert.equal(counterSum(text, 'weir_plain_total'), 5);
    assert.equal(counterSum(text, 'weir_absent_total'), 0);
  });
});
