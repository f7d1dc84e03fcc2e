// Flows of several nodes merged in time order, finished and followed (Hubble Relay's behaviour).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Flow } from './flow.js';
import { FlowMerger, mergeFlows } from './merge.js';

const flow = (node: string, ns: number): Flow =>
  ({ node_name: node, time: `2026-12-03T10:00:00.${String(ns).padStart(9, '0')}Z` }) as Flow;
const names = (fs: Flow[]) => fs.map((f) => `${f.node_name}@${Number(f.time.slice(20, 29))}`);

describe('mergeFlows', () => {
  it('interleaves the nodes by time and keeps the newest --last', () => {
    const a = [flow('n1', 1), flow('n1', 5), flow('n1', 9)];
    const b = [flow('n2', 2), flow('n2', 5), flow('n2', 7)];
    assert.deepEqual(names(mergeFlows([a, b])), ['n1@1', 'n2@2', 'n1@5', 'n2@5', 'n2@7', 'n1@9']);
    assert.deepEqual(names(mergeFlows([a, b], 2)), ['n2@7', 'n1@9']);
    assert.deepEqual(mergeFlows([a, b], 0), []);
  });
});

describe('FlowMerger (follow)', () => {
  it('holds flows for the window so a late node still comes out in order', () => {
    let now = 0;
    const out: Flow[] = [];
    const m = new FlowMerger(
      (f) => out.push(f),
      300,
      () => now,
    );
    m.push(flow('n1', 10));
    now = 100;
    m.push(flow('n2', 5)); // older, arrived later
    m.push(flow('n2', 20));
    now = 300;
    m.drain(); // n1@10's window passed: it and everything not newer go out
    assert.deepEqual(names(out), ['n2@5', 'n1@10']);
    now = 350;
    m.push(flow('n1', 8)); // later than the window: still shown, at once when due
    now = 400;
    m.drain(); // n2@20 due
    assert.deepEqual(names(out), ['n2@5', 'n1@10', 'n1@8', 'n2@20']);
    m.flush();
    assert.equal(out.length, 4);
  });
});
