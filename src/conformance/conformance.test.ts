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

// The L7 corpus: every probe is judged in simulate mode. HTTP by the engine's L3/L4 entries and,
// where they redirect, by the proxy's matcher; DNS by the same entries, the DNS proxy's rules where
// they redirect and the lab DNS server's answer (src/dns); resolve-then-connect probes connect to
// the answer, after the addresses an allowed answer teaches are in the recomputed policy.
test('l7 conformance cases: every probe passes in simulate mode, DNS and toFQDNs included', async () => {
  const report = await runCases({
    casesDir: join(conformanceDir, 'l7', 'cases'),
    mode: 'simulate',
    proberFactory: simulateProberFactory(),
  });
  const failures = report.cases
    .filter((c) => c.pass !== true)
    .map(
      (c) =>
        `${c.id} ${c.error ?? ''} ${c.mismatches.map((m) => `${String(m.probe?.id)} ${m.result} (expected ${m.expectedResult})`).join('; ')}`,
    );
  assert.deepEqual(failures, []);
  assert.ok(report.cases.length >= 33, `${report.cases.length} cases`);
  const kinds = { http: 0, dns: 0, fqdn: 0 };
  for (const c of report.cases)
    for (const r of c.results) {
      assert.notEqual(r.result, 'skipped', `${c.id}: nothing is skipped`);
      assert.ok(['allowed', 'l7-denied', 'dropped'].includes(r.result ?? ''), `${c.id}: ${r.result}`);
      assert.equal(r.allowed, r.result === 'allowed');
      if (r.probe?.fqdn !== undefined) kinds.fqdn++;
      else if (r.probe?.dns !== undefined) kinds.dns++;
      else kinds.http++;
    }
  assert.ok(kinds.http > 100 && kinds.dns > 20 && kinds.fqdn > 20, JSON.stringify(kinds));
  // A DNS answer is compared by rcode and addresses too: a REFUSED one and a NOERROR one.
  const dnsResults = report.cases.flatMap((c) => c.results.filter((r) => r.probe?.dns !== undefined));
  assert.ok(dnsResults.some((r) => r.result === 'l7-denied' && r.dns?.rcode === 'REFUSED'));
  assert.ok(dnsResults.some((r) => r.result === 'allowed' && r.dns?.rcode === 'NOERROR' && r.dns.answers?.length));
});
