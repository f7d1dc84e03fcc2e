import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lifecycle } from './lifecycle.js';

test('hooks start in order and stop in reverse', async () => {
  const seen: string[] = [];
  const lc = new Lifecycle();
  for (const name of ['a', 'b', 'c']) {
    lc.append({
      name,
      start: () => void seen.push(`start ${name}`),
      stop: () => void seen.push(`stop ${name}`),
    });
  }
  await lc.start();
  await lc.stop();
  assert.deepEqual(seen, ['start a', 'start b', 'start c', 'stop c', 'stop b', 'stop a']);
});

test('a failed start stops what already started and rethrows', async () => {
  const seen: string[] = [];
  const lc = new Lifecycle();
  lc.append({ name: 'a', start: () => void seen.push('start a'), stop: () => void seen.push('stop a') });
  lc.append({
    name: 'b',
    start: () => {
      throw new Error('boom');
    },
    stop: () => void seen.push('stop b'),
  });
  await assert.rejects(lc.start(), /boom/);
  assert.deepEqual(seen, ['start a', 'stop a']);
});
