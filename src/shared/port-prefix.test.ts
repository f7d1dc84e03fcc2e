import assert from 'node:assert/strict';
import { test } from 'node:test';
import { portRangePrefixes } from './port-prefix.js';

test('port ranges decompose into the fewest aligned LPM blocks', () => {
  assert.deepEqual(portRangePrefixes(80, 81), [{ port: 80, portPrefixLen: 15 }]);
  assert.deepEqual(portRangePrefixes(80, 80), [{ port: 80, portPrefixLen: 16 }]);
  assert.deepEqual(portRangePrefixes(79, 80), [
    { port: 79, portPrefixLen: 16 },
    { port: 80, portPrefixLen: 16 },
  ]);
  assert.deepEqual(portRangePrefixes(8080, 8090), [
    { port: 8080, portPrefixLen: 13 },
    { port: 8088, portPrefixLen: 15 },
    { port: 8090, portPrefixLen: 16 },
  ]);
  assert.deepEqual(portRangePrefixes(0, 65535), [{ port: 0, portPrefixLen: 0 }]);
  assert.equal(portRangePrefixes(1, 65535).length, 16);
  // Every port of a range is covered exactly once, nothing outside it.
  const blocks = portRangePrefixes(1000, 2000);
  for (let p = 990; p <= 2010; p++) {
    const n = blocks.filter((b) => p >>> (16 - b.portPrefixLen) === b.port >>> (16 - b.portPrefixLen)).length;
    assert.equal(n, p >= 1000 && p <= 2000 ? 1 : 0, `port ${p}`);
  }
});

test('a range outside 0..65535 or reversed is refused', () => {
  for (const [a, b] of [
    [10, 5],
    [-1, 5],
    [0, 65536],
    [1.5, 2],
  ] as const)
    assert.throws(() => portRangePrefixes(a, b), { code: 'ERR_PORT_RANGE' });
});
