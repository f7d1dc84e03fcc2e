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

// The L7 corpus: every HTTP probe is judged by the engine's L3/L4 entries and, where they redirect,
// by the proxy's matcher with the engine's L7 policy of that port. DNS rules and toFQDNs are
// accepted (issue 11); simulate mode sends no DNS, so a case made only of DNS and
// resolve-then-connect probes judges nothing here (pass null); every other case must pass.
test('l7 conformance cases: every HTTP probe passes in simulate mode', async () => {
  const report = await runCases({
    casesDir: join(conformanceDir, 'l7', 'cases'),
    mode: 'simulate',
    proberFactory: simulateProberFactory(),
  });
  const waiting = report.cases.filter(
    (c) =>
      c.pass === null &&
      !c.error &&
      c.results.every((r) => r.result === 'skipped' && (r.probe?.dns !== undefined || r.probe?.fqdn !== undefined)),
  );
  const failures = report.cases
    .filter((c) => !waiting.includes(c) && c.pass !== true)
    .map(
      (c) =>
        `${c.id} ${c.error ?? ''} ${c.mismatches.map((m) => `${String(m.probe?.id)} ${m.result} (expected ${m.expectedResult})`).join('; ')}`,
    );
  assert.deepEqual(failures, []);
  const passed = report.cases.filter((c) => c.pass === true);
  assert.ok(passed.length >= 17, `${passed.length} passed`);
  let httpProbes = 0;
  for (const c of passed)
    for (const r of c.results) {
      if (r.result === 'skipped') {
        assert.ok(r.probe?.dns !== undefined || r.probe?.fqdn !== undefined, `${c.id}: only DNS probes skip`);
        continue;
      }
      httpProbes++;
      assert.ok(['allowed', 'l7-denied', 'dropped'].includes(r.result ?? ''), `${c.id}: ${r.result}`);
      assert.equal(r.allowed, r.result === 'allowed');
    }
  assert.ok(httpProbes > 100, `${httpProbes} HTTP probes`);
});
