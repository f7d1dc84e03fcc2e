// Every shared conformance case, in simulate mode: the engine's entries, looked up as the
// datapath would, must reproduce every non-loopback expectation.
import { join } from 'node:path';
import { conformanceDir } from '../shared/paths.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCases } from './runner.js';
import { simulateProberFactory } from './simulate.js';

for (const suite of ['netpol', 'cnp']) {
  test(`${suite} conformance cases pass in simulate mode`, async () => {
    const report = await runCases({
      casesDir: join(conformanceDir, suite, 'cases'),
      mode: 'simulate',
      proberFactory: simulateProberFactory(),
    });
    assert.ok(report.cases.length > 20);
    const failures = report.cases
      .filter((c) => c.pass !== true)
      .map(
        (c) =>
          `${c.id} ${c.error ?? ''} ${c.mismatches
            .slice(0, 5)
            .map((m) => `${m.from}->${m.to} ${m.protocol}/${m.port} got ${m.allowed}`)
            .join('; ')}`,
      );
    assert.deepEqual(failures, []);
    for (const c of report.cases) assert.ok(c.counts.compared > 0, `${c.id} compared nothing`);
  });
}
